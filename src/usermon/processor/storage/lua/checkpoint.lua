-- KEYS: journal hash, journal index, checkpoint hash. ARGV: position, snapshot, the prefix of the
-- marks that a batch's findings were recorded (one per position, deleted with the batch).
local done = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for i = 1, #done, 500 do
  local chunk, marks = {}, {}
  for j = i, math.min(i + 499, #done) do
    chunk[#chunk + 1] = done[j]
    marks[#marks + 1] = ARGV[3] .. done[j]
  end
  redis.call('HDEL', KEYS[1], unpack(chunk))
  redis.call('DEL', unpack(marks))
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
redis.call('HSET', KEYS[3], 'position', ARGV[1], 'snapshot', ARGV[2])
return #done
