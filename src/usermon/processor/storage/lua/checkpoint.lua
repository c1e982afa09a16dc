-- KEYS: journal hash, journal index, checkpoint hash. ARGV: position, snapshot.
local done = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for i = 1, #done, 500 do
  local chunk = {}
  for j = i, math.min(i + 499, #done) do chunk[#chunk + 1] = done[j] end
  redis.call('HDEL', KEYS[1], unpack(chunk))
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
redis.call('HSET', KEYS[3], 'position', ARGV[1], 'snapshot', ARGV[2])
return #done
