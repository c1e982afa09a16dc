-- The steps every script shares (after common.lua and subject_common.lua): the scripts of one
-- primitive call one of these, and apply.lua calls them for a whole event's steps.

-- add_windows: counter hash `key`, add n at t; `names` the window lengths (as formatted by Python,
-- so the field names of one window are always spelled the same). Returns the totals, one per
-- window. Like the memory state's ring: each series keeps its running total in `<window>:t`, so a
-- step touches a few fields; only when the newest bucket advances are the buckets leaving the
-- kept range (at most B + 1 of them) read, subtracted and deleted.
local function add_windows(key, t, n, names)
  local totals = {}
  local ttl = 0
  local ns = string.format('%d', n)
  for i = 1, #names do
    local wname = names[i]
    local w = tonumber(wname)
    local res = w / B
    local bt = bucket(t, res)
    local nfield, tfield = wname .. ':n', wname .. ':t'
    local meta = redis.call('HMGET', key, nfield, tfield)
    local newest = tonumber(meta[1])
    local total = tonumber(meta[2]) or 0
    if newest == nil then
      newest = bt
      total = 0
      redis.call('HSET', key, nfield, string.format('%d', bt))
    elseif bt > newest then
      -- The kept range moves to [bt - B, bt]: forget the buckets that leave it.
      local gone = {}
      for b = newest - B, math.min(newest, bt - B - 1) do
        gone[#gone + 1] = wname .. ':' .. string.format('%d', b)
      end
      if #gone > 0 then
        local old = redis.call('HMGET', key, unpack(gone))
        for j = 1, #old do total = total - (tonumber(old[j]) or 0) end
        redis.call('HDEL', key, unpack(gone))
      end
      newest = bt
      redis.call('HSET', key, nfield, string.format('%d', bt))
    end
    -- An event older than the kept buckets is dropped for this window.
    if bt >= newest - B and n ~= 0 then
      redis.call('HINCRBY', key, wname .. ':' .. string.format('%d', bt), ns)
      total = total + n
    end
    redis.call('HSET', key, tfield, string.format('%d', total))
    totals[#totals + 1] = total
    local keep = math.ceil(w + 2 * res)
    if keep > ttl then ttl = keep end
  end
  if redis.call('TTL', key) < ttl then redis.call('EXPIRE', key, string.format('%d', ttl)) end
  return totals
end

-- count: the counter hash `key`'s total over (t - w, t], as RedisState's _count_from_fields reads
-- it: the series of window w, else the shortest kept one that spans it, else the longest kept.
local function count(key, t, w)
  local chosen, cname, longest, lname
  for _, f in ipairs(redis.call('HKEYS', key)) do
    if string.sub(f, -2) == ':n' then
      local name = string.sub(f, 1, -3)
      local v = tonumber(name)
      if v >= w and (chosen == nil or v < chosen) then chosen, cname = v, name end
      if longest == nil or v > longest then longest, lname = v, name end
    end
  end
  if longest == nil then return 0 end
  local span
  if chosen == nil then
    chosen, cname = longest, lname
    span = B
  else
    span = math.ceil(w / (chosen / B))
  end
  local res = chosen / B
  local head = tonumber(redis.call('HGET', key, cname .. ':n')) or 0
  local idx = math.floor(t / res)
  local lo, hi = math.max(idx - span, head - B), math.min(idx, head)
  if hi < lo then return 0 end
  local fields = {}
  for b = lo, hi do fields[#fields + 1] = cname .. ':' .. string.format('%d', b) end
  local total = 0
  for _, v in ipairs(redis.call('HMGET', key, unpack(fields))) do total = total + (tonumber(v) or 0) end
  return total
end

-- incr_fields: counting map `key`, kept ttl seconds; pairs[i], pairs[i + 1] a field and its n.
local function incr_fields(key, ttl, pairs)
  local values = {}
  for i = 1, #pairs, 2 do
    values[#values + 1] = redis.call('HINCRBY', key, pairs[i], pairs[i + 1])
  end
  redis.call('EXPIRE', key, ttl)
  return values
end

-- KEYS: [1] subject hash, [2] the previous version's record of this key, [3] the last success's
-- user agent, then per set i: [4 + 2i] sorted set, [5 + 2i] overflow mark. ARGV: [1] t, [2] TTL,
-- [3] outcome, [4] label, [5] primary key, [6] service, [7] '+' for a success, [8] its address,
-- [9] its user agent, [10] how many windows, then the windows, then per set: member, HyperLogLog
-- prefix.
-- Optional strings come tagged: '-' for none, '=' followed by the value.
local function fold(K, A)
  local h = K[1]
  local t = tonumber(A[1])
  local cp = 'c' .. A[3]
  local nw = tonumber(A[10])
  local windows = {}
  local retention = 0
  for i = 1, nw do
    windows[i] = A[10 + i]
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
    while A[a + 1] ~= nil do
      local old = {K[4 + 2 * i], K[5 + 2 * i]}
      for b = lb - B, lb do old[#old + 1] = bkey(A[a + 2], b) end
      redis.call('DEL', unpack(old))
      a = a + 2
      i = i + 1
    end
    meta[5] = false
  end
  if first == nil then
    -- A new subject: seeded from the previous version's record of this key, if there is one.
    local legacy = redis.call('GET', K[2])
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
        if present(r.ok_ua) then redis.call('SET', K[3], r.ok_ua) end
      end
      redis.call('DEL', K[2])
    end
  end
  if first == nil or t < first then set('f', A[1]) end
  if last == nil or t > last then set('l', A[1]) end
  if A[4] ~= '-' then set('lb', string.sub(A[4], 2)) end
  if A[5] ~= '-' then set('pk', string.sub(A[5], 2)) end
  if A[6] ~= '-' then
    local service = string.sub(A[6], 2)
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
  if A[7] == '+' and (ot == nil or ot <= t) then
    set('ot', A[1])
    if A[8] == '-' then gone[#gone + 1] = 'oi' else set('oi', string.sub(A[8], 2)) end
    if A[9] == '-' then
      redis.call('DEL', K[3])
    else
      redis.call('SET', K[3], string.sub(A[9], 2))
    end
  end
  -- The outcome's counter: exact times while sparse, rings once dense (the memory state's _Counter).
  local cur = meta[5]
  if not cur then
    set(cp, A[1])
  elseif cur == 'd' then
    for i = 1, nw do ring_add(h, cp, windows[i], t) end
  else
    -- The times are kept in order: only those at the ends are parsed.
    local strs = {}
    for x in string.gmatch(cur, '[^,]+') do strs[#strs + 1] = x end
    local pos = #strs + 1
    while pos > 1 and tonumber(strs[pos - 1]) > t do pos = pos - 1 end
    table.insert(strs, pos, A[1])
    local horizon = t - retention
    if pos < #strs then horizon = tonumber(strs[#strs]) - retention end
    while tonumber(strs[1]) <= horizon do table.remove(strs, 1) end
    if #strs > SPARSE_MAX then
      set(cp, 'd')
      for j = 1, #strs do
        local tj = tonumber(strs[j])
        for i = 1, nw do ring_add(h, cp, windows[i], tj) end
      end
    else
      set(cp, table.concat(strs, ','))
    end
  end
  if #upd > 0 then redis.call('HSET', h, unpack(upd)) end
  if #gone > 0 then redis.call('HDEL', h, unpack(gone)) end
  redis.call('EXPIRE', h, A[2])
  if ot ~= nil or A[7] == '+' then
    redis.call('EXPIRE', K[3], A[2])  -- nothing when there is no user agent
  end
  -- The distinct sets, over the longest window.
  local a = 10 + nw
  local i = 0
  local cut, keep
  while A[a + 1] ~= nil do
    local m = A[a + 1]
    if m ~= '-' then
      if not cut then
        cut = fmt(t - retention)
        keep = string.format('%d', math.ceil(retention + 2 * (retention / B)))
      end
      add_member(K[4 + 2 * i], K[5 + 2 * i], A[a + 2], string.sub(m, 2), t, retention, A[1], cut, keep)
    end
    a = a + 2
    i = i + 1
  end
  return 0
end

-- claim: the dedupe claim of `field` in the map `key` (kept ttl seconds) for the claim value
-- `value` (a string: the owner's batch position + 1, '1' for no owner): 1 when this report claims
-- it, 0 when another did first, 3 when the same owner did (a replay of its batch). A field given
-- back holds '0' and is free. A map holding `cap` fields takes no new one: the event is claimed
-- without being recorded (2), so a later report of it would count again (what the cap bounds
-- is the map's memory; RedisState counts these). A refused claim changes nothing.
local function claim(key, ttl, field, cap, value)
  if cap > 0 and redis.call('HLEN', key) >= cap and redis.call('HEXISTS', key, field) == 0 then
    return 2
  end
  if redis.call('HSETNX', key, field, value) == 0 then
    local held = redis.call('HGET', key, field)
    if held ~= '0' then
      if held == value and value ~= '1' then return 3 end
      return 0
    end
    redis.call('HSET', key, field, value)
  end
  redis.call('EXPIRE', key, ttl)
  return 1
end

-- read_subject: KEYS and ARGV as read_subject.lua describes them (also what a fold step of
-- apply.lua returns when it is asked to read the subject back). Times are compared as few times
-- as they can be (each one parsed or formatted costs the script more than a command): the
-- subject's newest time goes on as it is kept, and a set is read, with its times, only as far
-- as its members are listed (at least 8): a window that ends among them is counted from them (a
-- binary search, they come newest first), another by ZCOUNT.
local function read_subject(K, A)
  local h = K[1]
  local nw = tonumber(A[2])
  local fields
  local nows = A[1]
  if nw > 0 then
    fields = redis.call('HGETALL', h)
    if nows == '' then
      for i = 1, #fields, 2 do
        if fields[i] == 'l' then nows = fields[i + 1] end
      end
    end
  else
    local names = {'f', 'l', 'lb', 'pk', 'sv', 'ot', 'oi'}
    local values = redis.call('HMGET', h, unpack(names))
    fields = {}
    for i = 1, #names do
      if values[i] then
        fields[#fields + 1] = names[i]
        fields[#fields + 1] = values[i]
      end
    end
    if nows == '' then nows = values[2] end
  end
  if #fields == 0 then
    local legacy = redis.call('GET', K[2])
    if legacy then return {'r', legacy} end
    return nil
  end
  local now = tonumber(nows)
  local longest = 0
  for i = 1, nw do
    local w = tonumber(A[2 + i])
    if w > longest then longest = w end
  end
  -- The last success's user agent exists only with a last success.
  local ua = false
  for j = 1, #fields, 2 do
    if fields[j] == 'ot' then ua = redis.call('GET', K[3]) end
  end
  local out = {'s', fields, nows, ua}
  local lower = '(' .. fmt(now - longest)
  local a = 2 + nw
  local i = 0
  while A[a + 1] ~= nil do
    local z, o, hp = K[4 + 2 * i], K[5 + 2 * i], A[a + 2]
    local limit = tonumber(A[a + 1])
    local want = limit
    if want < 8 then want = 8 end
    local scored = redis.call('ZREVRANGEBYSCORE', z, nows, lower, 'WITHSCORES', 'LIMIT', 0, want)
    local n = #scored / 2
    local members = {}
    for j = 1, math.min(n, limit) do members[j] = scored[2 * j - 1] end
    local parsed = {}
    local mark = MARKS[o]
    if mark == nil then mark = tonumber(redis.call('GET', o) or '') end
    if mark == false then mark = nil end
    local counts = {}
    for j = 1, nw do
      local w = tonumber(A[2 + j])
      local low = now - w
      if n > 0 and parsed[n] == nil then parsed[n] = tonumber(scored[2 * n]) end
      local exact
      if n < want or parsed[n] <= low then
        -- How many of the members read are newer than low.
        local lo, hi = 0, n
        while lo < hi do
          local mid = math.floor((lo + hi + 1) / 2)
          local v = parsed[mid]
          if v == nil then
            v = tonumber(scored[2 * mid])
            parsed[mid] = v
          end
          if v > low then lo = mid else hi = mid - 1 end
        end
        exact = lo
      else
        exact = redis.call('ZCOUNT', z, '(' .. fmt(low), nows)
      end
      counts[j] = set_estimate(hp, mark, now, w, longest, exact)
    end
    out[#out + 1] = members
    out[#out + 1] = counts
    a = a + 2
    i = i + 1
  end
  return out
end
