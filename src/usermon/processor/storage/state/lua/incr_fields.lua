-- KEYS[1] counting map. ARGV: the map's TTL (seconds), then field, n, field, n, ... Returns the
-- fields' new values in order. A script rather than MULTI/EXEC: one command carrying every field
-- costs the client far less than queueing one HINCRBY per field (a batch's dedupe claims are
-- hundreds of fields).
return incr_fields(KEYS[1], ARGV[1], {unpack(ARGV, 2)})
