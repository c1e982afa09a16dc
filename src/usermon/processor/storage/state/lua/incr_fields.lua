-- KEYS[1] counting map. ARGV: the map's TTL (seconds), then field, n, field, n, ... Returns the
-- fields' new values in order. A script rather than MULTI/EXEC: one command carrying every field
-- costs the client far less than queueing one HINCRBY per field (a batch's dedupe claims are
-- hundreds of fields).
local key = KEYS[1]
local values = {}
for i = 2, #ARGV, 2 do
  values[#values + 1] = redis.call('HINCRBY', key, ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', key, ARGV[1])
return values
