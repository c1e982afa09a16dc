-- One event's steps as one atomic script (RedisState.apply). ARGV[1] is a MessagePack array of
-- flat steps, each `[op, key, args...]`. A step on one key names it whole (already prefixed); a
-- distinct set or a subject is named by its keys' common beginning, the base `<prefix>{<key>}:`,
-- and its keys are spelled here as the other scripts are given them: a set's sorted set
-- `<base>z`, mark `<base>o` and HyperLogLogs `<base>h:<bucket>`; a subject's packed value
-- `<base>p`, per set i HyperLogLogs `<base>h<i>:<bucket>`, and the keys of the layouts before
-- it (subject.lua). The script touches only these, so it does not declare them: Redis
-- Cluster is not supported, docs/deploy.md. Ops: c claim (key: dedupe map; ttl, field, cap,
-- value), w add_windows (key: counter; t, n, windows...), d add_distinct (base; member, t,
-- window), n count (key: counter; t, window), k distinct count (base; t, window), i incr_fields
-- (key: map; ttl, field, n, ...), f fields (key: map), g get (key: record), s fold (base; how
-- many sets to read the subject back with, -1 for no read-back, and each one's limit; then
-- fold's arguments, subject.lua), e open a finding's episode (key: its record; the record to open
-- with, t, gap, ttl: episode.lua), p keep (key: kept map; field, value, ttl: HSET and EXPIRE),
-- a append_entry (key: windowed list; t, window, cap, ttl, item: entries.lua).
-- Returns one reply per step run. A claim answers 1 (claimed), 0 (another report holds it), 3
-- (this same batch holds it: a replay) or 2 (claimed without being recorded: the map is at its
-- cap); after 0 or 3 the steps after it do not run.
local plan = cmsgpack.unpack(ARGV[1])
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
  elseif op == 'a' then
    r = append_entry(key, S[3], S[4], S[5], S[6], S[7])
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
    local subject, ws, longest = fold(key, S, a0)
    r = 0
    -- A fold asked to read its subject back returns what read_subject would as of the
    -- subject's newest event, with the fold's windows, so the batch's profiles need no second
    -- read of it.
    if back >= 0 then
      r = view(subject, subject.l, subject.ls, ws, longest, {unpack(S, 4, 3 + back)}, key)
    end
  else
    return redis.error_reply('apply.lua: unknown step ' .. tostring(op))
  end
  -- One reply per step run, nil or not: RedisState.apply_many splits the replies of plans sent
  -- as one call by their steps.
  if r == nil then r = false end
  out[#out + 1] = r
end
return out
