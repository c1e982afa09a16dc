-- One event's steps as one atomic script (RedisState.apply). ARGV[1] is a JSON array of flat
-- steps, each `[op, key, args...]`. A step on one key names it whole (already prefixed); a
-- distinct set or a subject is named by its keys' common beginning, the base `<prefix>{<key>}:`,
-- and its keys are spelled here as the other scripts are given them: a set's sorted set
-- `<base>z`, mark `<base>o` and HyperLogLogs `<base>h:<bucket>`; a subject's hash `<base>s`,
-- previous record `<base>r`, user agent `<base>u`, per set i `<base>z<i>`, `<base>o<i>`,
-- `<base>h<i>:<bucket>`. The script touches only these, so it does not declare them: Redis
-- Cluster is not supported, docs/deploy.md. Ops: c claim (key: dedupe map; ttl, field, cap,
-- value), w add_windows (key: counter; t, n, windows...), d add_distinct (base; member, t,
-- window), n count (key: counter; t, window), k distinct count (base; t, window), i incr_fields
-- (key: map; ttl, field, n, ...), f fields (key: map), g get (key: record), s fold (base; how
-- many sets to read the subject back with, -1 for no read-back, and each one's limit; then
-- fold_subject.lua's ARGV up to its windows, then each set's member), e open a finding's episode
-- (key: its record; the record to open with, t, gap, ttl: episode.lua), p keep (key: kept map;
-- field, value, ttl: HSET and EXPIRE).
-- Returns one reply per step run. A claim answers 1 (claimed), 0 (another report holds it), 3
-- (this same batch holds it: a replay) or 2 (claimed without being recorded: the map is at its
-- cap); after 0 or 3 the steps after it do not run.
local plan = cjson.decode(ARGV[1])
local out = {}
for s = 1, #plan do
  local S = plan[s]
  local op, key = S[1], S[2]
  local r
  if op == 'c' then
    r = claim(key, S[3], S[4], S[5], S[6])
    if r == 0 or r == 3 then
      out[#out + 1] = r
      return out
    end
  elseif op == 'e' then
    r = open_episode(key, S[3], S[4], tonumber(S[5]), S[6])
  elseif op == 'p' then
    redis.call('HSET', key, S[3], S[4])
    r = redis.call('EXPIRE', key, S[5])
  elseif op == 'w' then
    r = add_windows(key, tonumber(S[3]), S[4], {unpack(S, 5)})
  elseif op == 'd' then
    local t, w = tonumber(S[4]), tonumber(S[5])
    local z, hp = key .. 'z', key .. 'h:'
    local newest, mark, cut = add_member(z, key .. 'o', hp, S[3], t, w, S[4])
    r = marked_count(z, mark, hp, t, w, S[4], newest == t and cut or nil)
  elseif op == 'n' then
    r = count(key, tonumber(S[3]), tonumber(S[4]))
  elseif op == 'k' then
    r = distinct_count(key .. 'z', key .. 'o', key .. 'h:', tonumber(S[3]), tonumber(S[4]), S[3])
  elseif op == 'i' then
    r = incr_fields(key, S[3], {unpack(S, 4)})
  elseif op == 'f' then
    r = redis.call('HGETALL', key)
  elseif op == 'g' then
    r = redis.call('GET', key)
  elseif op == 's' then
    local back = S[3]
    local a0 = 3
    if back > 0 then a0 = 3 + back end
    local nw = tonumber(S[a0 + 10])
    local A = {unpack(S, a0 + 1, a0 + 10 + nw)}
    local K = {key .. 's', key .. 'r', key .. 'u'}
    local m0 = a0 + 10 + nw
    local i = 0
    while S[m0 + i + 1] ~= nil do
      local n = tostring(i)
      K[4 + 2 * i] = key .. 'z' .. n
      K[5 + 2 * i] = key .. 'o' .. n
      A[11 + nw + 2 * i] = S[m0 + i + 1]
      A[12 + nw + 2 * i] = key .. 'h' .. n .. ':'
      i = i + 1
    end
    r = fold(K, A)
    -- A fold asked to read its subject back returns what read_subject would as of the
    -- subject's newest event, with the fold's windows, so the batch's profiles need no second
    -- read of it.
    if back >= 0 then
      local R = {'', A[10]}
      for j = 1, nw do R[2 + j] = A[10 + j] end
      for j = 1, back do
        R[#R + 1] = S[3 + j]
        R[#R + 1] = A[12 + nw + 2 * (j - 1)]
      end
      r = read_subject(K, R) or false
    end
  else
    return redis.error_reply('apply.lua: unknown step ' .. tostring(op))
  end
  out[#out + 1] = r
end
return out
