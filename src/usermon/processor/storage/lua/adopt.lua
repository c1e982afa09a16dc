-- KEYS: replicas. ARGV: prefix, me, lease. Moves the journal of every replica whose heartbeat is
-- older than the lease into mine; returns the adopted batches as a flat list position, blob, ...
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (t - tonumber(ARGV[3])))
local prefix, me = ARGV[1], ARGV[2]
local adopted = {}
for _, replica in ipairs(dead) do
  if replica ~= me then
    local entries = redis.call('HGETALL', prefix .. 'journal:' .. replica)
    for i = 1, #entries, 2 do
      redis.call('HSET', prefix .. 'journal:' .. me, entries[i], entries[i + 1])
      redis.call('ZADD', prefix .. 'journal-index:' .. me, entries[i], entries[i])
      adopted[#adopted + 1] = entries[i]
      adopted[#adopted + 1] = entries[i + 1]
    end
    redis.call('DEL', prefix .. 'journal:' .. replica, prefix .. 'journal-index:' .. replica,
               prefix .. 'checkpoint:' .. replica)
    redis.call('ZREM', KEYS[1], replica)
  end
end
return adopted
