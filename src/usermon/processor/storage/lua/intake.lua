-- KEYS: seq, journal hash, journal index. ARGV: blob. Returns the new position.
local pos = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], pos, ARGV[1])
redis.call('ZADD', KEYS[3], pos, pos)
return pos
