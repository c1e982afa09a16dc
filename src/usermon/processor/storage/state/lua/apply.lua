-- One event's steps as one atomic script (RedisState.apply). ARGV is a sequence of steps, each
-- `op, number of keys, number of arguments, arguments...`; KEYS holds every step's keys in order.
-- Ops: c claim (KEYS dedupe map; ARGV ttl, field, cap), w add_windows (ARGV t, n, windows...),
-- d add_distinct (KEYS zset, mark; ARGV member, t, window, HyperLogLog prefix), n count (ARGV t,
-- window), k distinct count (as d without the member), i incr_fields (ARGV ttl, field, n, ...),
-- f fields, g get (a record), s fold (as fold_subject.lua). Returns one reply per step run. A
-- claim answers 1 (claimed), 0 (another report holds it: the steps after it are not run) or 2
-- (claimed without being recorded: the map is at its cap).
local out = {}
local k, a = 1, 1
while a <= #ARGV do
  local op, nk, na = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local K = {unpack(KEYS, k, k + nk - 1)}
  local A = {unpack(ARGV, a + 3, a + 2 + na)}
  k, a = k + nk, a + 3 + na
  local r
  if op == 'c' then
    r = claim(K[1], A[1], A[2], tonumber(A[3]))
    if r == 0 then
      out[#out + 1] = 0
      return out
    end
  elseif op == 'w' then
    r = add_windows(K[1], tonumber(A[1]), tonumber(A[2]), {unpack(A, 3)})
  elseif op == 'd' then
    local t, w = tonumber(A[2]), tonumber(A[3])
    add_member(K[1], K[2], A[4], A[1], t, w)
    r = distinct_count(K[1], K[2], A[4], t, w)
  elseif op == 'n' then
    r = count(K[1], tonumber(A[1]), tonumber(A[2]))
  elseif op == 'k' then
    r = distinct_count(K[1], K[2], A[3], tonumber(A[1]), tonumber(A[2]))
  elseif op == 'i' then
    r = incr_fields(K[1], A[1], {unpack(A, 2)})
  elseif op == 'f' then
    r = redis.call('HGETALL', K[1])
  elseif op == 'g' then
    r = redis.call('GET', K[1])
  elseif op == 's' then
    r = fold(K, A)
  else
    return redis.error_reply('apply.lua: unknown step ' .. tostring(op))
  end
  out[#out + 1] = r
end
return out
