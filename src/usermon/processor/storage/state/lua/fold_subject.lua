-- KEYS: [1] subject hash, [2] the previous version's record of this key, [3] the last success's
-- user agent, then per set i: [4 + 2i] sorted set, [5 + 2i] overflow mark. ARGV: [1] t, [2] TTL,
-- [3] outcome, [4] label, [5] primary key, [6] service, [7] '+' for a success, [8] its address,
-- [9] its user agent, [10] how many windows, then the windows, then per set: member, HyperLogLog
-- prefix.
-- Optional strings come tagged: '-' for none, '=' followed by the value.
local h = KEYS[1]
local t = tonumber(ARGV[1])
local cp = 'c' .. ARGV[3]
local nw = tonumber(ARGV[10])
local windows = {}
local retention = 0
for i = 1, nw do
  windows[i] = ARGV[10 + i]
  local w = tonumber(windows[i])
  if w > retention then retention = w end
end
local meta = redis.call('HMGET', h, 'f', 'l', 'sv', 'ot', cp)
local upd = {}
local function set(f, v) upd[#upd + 1] = f; upd[#upd + 1] = v end
local first, last, sv, ot = tonumber(meta[1]), tonumber(meta[2]), meta[3], tonumber(meta[4])
if last ~= nil and t - last > __IDLE__ * retention then
  -- Idle for longer than SUBJECT_IDLE_WINDOWS longest windows: as of this event, nothing of its
  -- counters and sets is in any window. Drop them, so that they restart as a new subject's
  -- would: every counter field (they start with 'c'), each set's sorted set and mark, and the
  -- HyperLogLogs of its last window (those of older overflows have expired by their TTL).
  local stale = {}
  for _, f in ipairs(redis.call('HKEYS', h)) do
    if string.sub(f, 1, 1) == 'c' then stale[#stale + 1] = f end
  end
  if #stale > 0 then redis.call('HDEL', h, unpack(stale)) end
  local lb = bucket(last, retention / B)
  local a = 10 + nw
  local i = 0
  while ARGV[a + 1] ~= nil do
    local old = {KEYS[4 + 2 * i], KEYS[5 + 2 * i]}
    for b = lb - B, lb do old[#old + 1] = bkey(ARGV[a + 2], b) end
    redis.call('DEL', unpack(old))
    a = a + 2
    i = i + 1
  end
  meta[5] = false
end
if first == nil then
  -- A new subject: seeded from the previous version's record of this key, if there is one.
  local legacy = redis.call('GET', KEYS[2])
  if legacy then
    local r = cjson.decode(legacy)
    first, last = r.first_seen, r.last_seen
    set('f', fmt(first))
    set('l', fmt(last))
    if present(r.label) then set('lb', r.label) end
    if present(r.primary_key) then set('pk', r.primary_key) end
    if present(r.services) and #r.services > 0 then
      sv = cjson.encode(r.services)
      set('sv', sv)
    end
    if present(r.ok_time) then
      ot = r.ok_time
      set('ot', fmt(ot))
      if present(r.ok_ip) then set('oi', r.ok_ip) end
      if present(r.ok_ua) then redis.call('SET', KEYS[3], r.ok_ua) end
    end
    redis.call('DEL', KEYS[2])
  end
end
if first == nil or t < first then set('f', fmt(t)) end
if last == nil or t > last then set('l', fmt(t)) end
if ARGV[4] ~= '-' then set('lb', string.sub(ARGV[4], 2)) end
if ARGV[5] ~= '-' then set('pk', string.sub(ARGV[5], 2)) end
if ARGV[6] ~= '-' then
  local service = string.sub(ARGV[6], 2)
  local list = {}
  if sv then list = cjson.decode(sv) end
  local known = false
  for i = 1, #list do if list[i] == service then known = true end end
  if not known and #list < __MAX_SERVICES__ then
    list[#list + 1] = service
    set('sv', cjson.encode(list))
  end
end
local gone = {}
if ARGV[7] == '+' and (ot == nil or ot <= t) then
  set('ot', fmt(t))
  if ARGV[8] == '-' then gone[#gone + 1] = 'oi' else set('oi', string.sub(ARGV[8], 2)) end
  if ARGV[9] == '-' then
    redis.call('DEL', KEYS[3])
  else
    redis.call('SET', KEYS[3], string.sub(ARGV[9], 2))
  end
end
-- The outcome's counter: exact times while sparse, rings once dense (the memory state's _Counter).
local cur = meta[5]
if not cur then
  set(cp, fmt(t))
elseif cur == 'd' then
  for i = 1, nw do ring_add(h, cp, windows[i], t) end
else
  local ts, strs = {}, {}
  for x in string.gmatch(cur, '[^,]+') do
    ts[#ts + 1] = tonumber(x)
    strs[#strs + 1] = x
  end
  local pos = #ts + 1
  while pos > 1 and ts[pos - 1] > t do pos = pos - 1 end
  table.insert(ts, pos, t)
  table.insert(strs, pos, fmt(t))
  local horizon = ts[#ts] - retention
  while ts[1] <= horizon do
    table.remove(ts, 1)
    table.remove(strs, 1)
  end
  if #ts > SPARSE_MAX then
    set(cp, 'd')
    for j = 1, #ts do
      for i = 1, nw do ring_add(h, cp, windows[i], ts[j]) end
    end
  else
    set(cp, table.concat(strs, ','))
  end
end
if #upd > 0 then redis.call('HSET', h, unpack(upd)) end
if #gone > 0 then redis.call('HDEL', h, unpack(gone)) end
redis.call('EXPIRE', h, ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[2])  -- nothing when there is no user agent
-- The distinct sets, over the longest window.
local a = 10 + nw
local i = 0
while ARGV[a + 1] ~= nil do
  local m = ARGV[a + 1]
  if m ~= '-' then
    add_member(KEYS[4 + 2 * i], KEYS[5 + 2 * i], ARGV[a + 2], string.sub(m, 2), t, retention)
  end
  a = a + 2
  i = i + 1
end
return 0
