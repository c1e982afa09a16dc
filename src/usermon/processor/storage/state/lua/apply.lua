-- One event's steps as one atomic script (RedisState.apply). ARGV[1] is a JSON array of steps,
-- each `[op, keys, args]` (the keys already prefixed; the script touches only those and the
-- HyperLogLogs named from their prefixes, so it does not declare them: Redis Cluster is not
-- supported, docs/deploy.md). Ops: c claim (keys: dedupe map; args: ttl, field, cap, value),
-- w add_windows (t, n, windows...), d add_distinct (keys: zset, mark; args: member, t, window,
-- HyperLogLog prefix), n count (t, window), k distinct count (as d without the member),
-- i incr_fields (ttl, field, n, ...), f fields, g get (a record), s fold (as fold_subject.lua;
-- with a fourth element, each set's limit, the subject read back as read_subject.lua reads it).
-- Returns one reply per step run. A claim answers 1 (claimed), 0 (another report holds it), 3
-- (this same batch holds it: a replay) or 2 (claimed without being recorded: the map is at its
-- cap); after 0 or 3 the steps after it do not run.
local plan = cjson.decode(ARGV[1])
local out = {}
for s = 1, #plan do
  local op, K, A = plan[s][1], plan[s][2], plan[s][3]
  local r
  if op == 'c' then
    r = claim(K[1], A[1], A[2], tonumber(A[3]), A[4])
    if r == 0 or r == 3 then
      out[#out + 1] = r
      return out
    end
  elseif op == 'w' then
    r = add_windows(K[1], tonumber(A[1]), tonumber(A[2]), {unpack(A, 3)})
  elseif op == 'd' then
    local t, w = tonumber(A[2]), tonumber(A[3])
    local newest, mark, cut = add_member(K[1], K[2], A[4], A[1], t, w, A[2])
    r = marked_count(K[1], mark, A[4], t, w, A[2], newest == t and cut or nil)
  elseif op == 'n' then
    r = count(K[1], tonumber(A[1]), tonumber(A[2]))
  elseif op == 'k' then
    r = distinct_count(K[1], K[2], A[3], tonumber(A[1]), tonumber(A[2]), A[1])
  elseif op == 'i' then
    r = incr_fields(K[1], A[1], {unpack(A, 2)})
  elseif op == 'f' then
    r = redis.call('HGETALL', K[1])
  elseif op == 'g' then
    r = redis.call('GET', K[1])
  elseif op == 's' then
    r = fold(K, A)
    -- A fold asked to read its subject back (a fourth element: how many members of each set
    -- to list) returns what read_subject would as of the subject's newest event, with the
    -- fold's windows, so the batch's profiles need no second read of it.
    local back = plan[s][4]
    if back then
      local nw = tonumber(A[10])
      local R = {'', A[10]}
      for j = 1, nw do R[2 + j] = A[10 + j] end
      for j = 1, #back do
        R[#R + 1] = back[j]
        R[#R + 1] = A[10 + nw + 2 * j]
      end
      r = read_subject(K, R) or false
    end
  else
    return redis.error_reply('apply.lua: unknown step ' .. tostring(op))
  end
  out[#out + 1] = r
end
return out
