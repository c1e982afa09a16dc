-- One subject (a Fold step) is one string `<base>p`: a MessagePack map (cmsgpack) read once by a
-- fold, changed as a Lua table, written once with the subject's TTL, and read back from the same
-- table. Its fields: `f`, `l` the first and last event time, `fs`, `ls` the same times as Python
-- spelled them (formatting a double costs more than keeping its text); `lb` label, `pk` primary
-- key, `sv` services (a list); `ot`, `os` the last success's time and its text, `oi` its address,
-- `ou` its user agent (absent: None). Per outcome o (0 ok, 1 fail, 2 signup) `c<o>`: a sparse
-- counter's exact times in order, with `t<o>` the same as comma-separated text (which a read
-- returns as it is), or once dense `{r = {['w' .. window name] = ring}}` (the `w`: cmsgpack would
-- pack a table keyed by numbers as text, like `1.0`, as a list), a ring being `{newest bucket,
-- total, a count per bucket of [newest - B, newest] (bucket b at 3 + b % (B + 1)), the window's
-- length}`, what add_windows keeps in a hash. Per distinct set i `z<i>` = `{members, times}`,
-- ordered as a sorted set orders them (by time, then by the member's bytes), and `o<i>` its
-- overflow mark; only an overflowing set's HyperLogLogs `<base>h<i>:<bucket>` are keys of their
-- own. The layouts before are read and converted: the hash `<base>s` with `<base>u`, `<base>z<i>`,
-- `<base>o<i>` (before the packed subject) and the record `<base>r` (before subject aggregates);
-- a fold deletes them (docs/deploy.md, *Redis*). A numbered table packs no faster here.

local SPARSE_MAX = __SPARSE_MAX__
local SLOTS = B + 1
local ZN = {[0] = 'z0', 'z1', 'z2', 'z3'}
local ON = {[0] = 'o0', 'o1', 'o2', 'o3'}
local CN = {[0] = 'c0', 'c1', 'c2'}
local TN = {[0] = 't0', 't1', 't2'}
local EMPTY = {}
-- The windows' lengths by name, parsed once per script call (a plan's folds share them).
local WNUM = {}
local function wnum(name)
  local v = WNUM[name]
  if v == nil then
    v = tonumber(name)
    WNUM[name] = v
  end
  return v
end

local function present(v) return v ~= nil and v ~= cjson.null end

-- a < b by their bytes, as a sorted set orders members of one score (Lua's own comparison of
-- strings follows the server's locale).
local function bytes_before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- Drop the first k entries of the parallel lists M and T (n long).
local function drop_front(M, T, k, n)
  if k <= 0 then return end
  for j = 1, n - k do
    M[j] = M[j + k]
    T[j] = T[j + k]
  end
  for j = n - k + 1, n do
    M[j] = nil
    T[j] = nil
  end
end

-- Of the ordered times T, how many are in (lows[j], now] for each window j, written to
-- out[k + j]; `lowest` is the smallest of lows. Returns how many are at most now. One pass from
-- the newest (a function call per window costs more than the comparisons).
local function window_counts(T, now, lows, lowest, out, k)
  local nw = #lows
  for j = 1, nw do out[k + j] = 0 end
  local i = #T
  while i >= 1 and T[i] > now do i = i - 1 end
  local top = i
  while i >= 1 do
    local x = T[i]
    if x <= lowest then break end
    for j = 1, nw do
      if x > lows[j] then out[k + j] = out[k + j] + 1 end
    end
    i = i - 1
  end
  return top
end

-- A dense counter's ring of window w (nil: none yet) with n added at t (as add_windows keeps
-- one window): the buckets leaving [newest - B, newest] are subtracted and emptied; an event
-- older than them is dropped.
local function ring_add(ring, w, t, n)
  local bt = bucket(t, w / B)
  if ring == nil then
    ring = {bt, 0}
    for j = 3, SLOTS + 2 do ring[j] = 0 end
    ring[SLOTS + 3] = w
  elseif bt > ring[1] then
    local head = ring[1]
    for b = head - B, math.min(head, bt - B - 1) do
      local j = 3 + b % SLOTS
      ring[2] = ring[2] - ring[j]
      ring[j] = 0
    end
    ring[1] = bt
  end
  if bt >= ring[1] - B then
    local j = 3 + bt % SLOTS
    ring[j] = ring[j] + n
    ring[2] = ring[2] + n
  end
  return ring
end

-- A dense counter's total over (t - w, t], as RedisState's _count_from_fields reads a counter:
-- the ring of window w, else the shortest kept one that spans it, else the longest kept.
local function ring_count(rings, t, w)
  local chosen, cname, longest, lname
  for name, ring in pairs(rings) do
    local v = ring[SLOTS + 3]
    if v >= w and (chosen == nil or v < chosen) then chosen, cname = v, name end
    if longest == nil or v > longest then longest, lname = v, name end
  end
  if longest == nil then return 0 end
  local span
  if chosen == nil then
    chosen, cname = longest, lname
    span = B
  else
    span = math.ceil(w / (chosen / B))
  end
  local ring = rings[cname]
  local head = ring[1]
  local idx = math.floor(t / (chosen / B))
  local total = 0
  for b = math.max(idx - span, head - B), math.min(idx, head) do
    total = total + ring[3 + b % SLOTS]
  end
  return total
end

-- Distinct count of a set kept over `longest`, over the window (now - w, now]: its HyperLogLogs
-- (prefix hp) are bucketed at the set's own resolution, so a shorter window reads the buckets
-- that cover it (up to one bucket more, as the memory state's overflow counter does). `exact`
-- is the set's own count in the window, `mark` its overflow mark (nil: none).
local function set_estimate(hp, mark, now, w, longest, exact)
  if mark == nil or mark <= now - w then return exact end
  local res = longest / B
  local bt = bucket(now, res)
  local keys = {}
  for b = math.max(bucket(now - w, res), bt - B), bt do keys[#keys + 1] = bkey(hp, b) end
  local est = redis.call('PFCOUNT', unpack(keys))
  if est > exact then return est end
  return exact
end

-- The subject at `base` in the layout before this one (a hash and a key per part), as this
-- layout's table; nil when there is none. `sets`: how many distinct sets to take.
local function from_hash(base, sets)
  local flat = redis.call('HGETALL', base .. 's')
  if #flat == 0 then return nil end
  local F = {}
  for j = 1, #flat, 2 do F[flat[j]] = flat[j + 1] end
  local S = {f = tonumber(F.f), fs = F.f, l = tonumber(F.l), ls = F.l, lb = F.lb, pk = F.pk}
  if F.sv then S.sv = cjson.decode(F.sv) end
  if F.ot then
    S.ot, S.os, S.oi = tonumber(F.ot), F.ot, F.oi
    S.ou = redis.call('GET', base .. 'u') or nil
  end
  for o = 0, 2 do
    local cp = CN[o]
    local cur = F[cp]
    if cur == 'd' then
      local rings = {}
      for name, v in pairs(F) do
        local wname = string.match(name, '^' .. cp .. ':(.+):n$')
        if wname then
          local head = tonumber(v)
          local ring = {head, tonumber(F[cp .. ':' .. wname .. ':t']) or 0}
          for j = 3, SLOTS + 2 do ring[j] = 0 end
          ring[SLOTS + 3] = tonumber(wname)
          for b = head - B, head do
            ring[3 + b % SLOTS] = tonumber(F[cp .. ':' .. wname .. ':' .. string.format('%d', b)]) or 0
          end
          rings['w' .. wname] = ring
        end
      end
      S[cp] = {r = rings}
    elseif cur then
      local T = {}
      for x in string.gmatch(cur, '[^,]+') do T[#T + 1] = tonumber(x) end
      S[cp], S[TN[o]] = T, cur
    end
  end
  for i = 0, sets - 1 do
    local all = redis.call('ZRANGE', base .. ZN[i], 0, -1, 'WITHSCORES')
    if #all > 0 then
      local M, T = {}, {}
      for j = 1, #all, 2 do
        M[#M + 1] = all[j]
        T[#T + 1] = tonumber(all[j + 1])
      end
      S[ZN[i]] = {M, T}
    end
    S[ON[i]] = tonumber(redis.call('GET', base .. ON[i]) or '')
  end
  return S
end

-- Record member m at t (`ts` its text) in distinct set i of subject S, kept over w: the same
-- answers as add_member (common.lua) gives a sorted set, its mark and HyperLogLogs (the subject's
-- `base`), `cut` being t - w.
local function set_add(S, i, base, m, t, w, cut, keep)
  local set = S[ZN[i]]
  if set == nil then
    set = {{}, {}}
    S[ZN[i]] = set
  end
  local M, T = set[1], set[2]
  local n = #T
  local newest = t
  if n > 0 and T[n] > t then newest = T[n] end
  local mark = S[ON[i]]
  local overflowing = mark ~= nil and mark > newest - w
  if t > newest - w then
    local j
    for k = n, 1, -1 do
      if M[k] == m then
        j = k
        break
      end
    end
    if j == nil or T[j] < t then
      if j ~= nil then
        table.remove(M, j)
        table.remove(T, j)
        n = n - 1
      end
      local pos = n + 1
      while pos > 1 and (T[pos - 1] > t or (T[pos - 1] == t and bytes_before(m, M[pos - 1]))) do
        pos = pos - 1
      end
      table.insert(M, pos, m)
      table.insert(T, pos, t)
      n = n + 1
    end
    if overflowing then
      keep = keep or string.format('%d', math.ceil(w + 2 * (w / B)))
      local hk = bkey(base .. 'h' .. i .. ':', bucket(t, w / B))
      redis.call('PFADD', hk, m)
      redis.call('EXPIRE', hk, keep)
    end
  end
  if newest ~= t then cut = newest - w end
  local gone = 0
  while gone < n and T[gone + 1] <= cut do gone = gone + 1 end
  drop_front(M, T, gone, n)
  n = n - gone
  if n > CAP then
    local res = w / B
    local hp = base .. 'h' .. i .. ':'
    keep = keep or string.format('%d', math.ceil(w + 2 * (w / B)))
    if not overflowing then
      -- First overflow in this window: from now on the HyperLogLogs count, seeded with the set.
      local by = {}
      for k = 1, n do
        local hk = bkey(hp, bucket(T[k], res))
        local list = by[hk]
        if list == nil then
          list = {}
          by[hk] = list
        end
        list[#list + 1] = M[k]
      end
      for hk, list in pairs(by) do
        redis.call('PFADD', hk, unpack(list))
        redis.call('EXPIRE', hk, keep)
      end
    end
    for k = 1, n - CAP do
      if mark == nil or T[k] > mark then mark = T[k] end
    end
    drop_front(M, T, n - CAP, n)
    n = CAP
    S[ON[i]] = mark
  end
  if n == 0 then S[ZN[i]] = nil end
end

-- fold: subject `base`, the fold's arguments in P from P[a + 1]: t, TTL, outcome, label, primary
-- key, service, '+' for a success, its address, its user agent, how many windows, the windows,
-- then each set's member (optional strings tagged: '-' for none, '=' followed by the value).
-- Returns the subject's table, its windows (numbers) and the longest, for a read-back.
local function fold(base, P, a)
  local ts = P[a + 1]
  local t = tonumber(ts)
  local outcome = tonumber(P[a + 3])
  local cp, tp = CN[outcome], TN[outcome]
  local nw = tonumber(P[a + 10])
  local names, ws = {}, {}
  local retention = 0
  for i = 1, nw do
    local name = P[a + 10 + i]
    local w = wnum(name)
    names[i], ws[i] = name, w
    if w > retention then retention = w end
  end
  local m0 = a + 10 + nw
  local sets = 0
  while P[m0 + sets + 1] ~= nil do sets = sets + 1 end
  local key = base .. 'p'
  local raw = redis.call('GET', key)
  local S
  if raw then
    S = cmsgpack.unpack(raw)
  else
    S = from_hash(base, sets)
    if S then
      local old = {base .. 's', base .. 'u'}
      for i = 0, sets - 1 do
        old[#old + 1] = base .. ZN[i]
        old[#old + 1] = base .. ON[i]
      end
      redis.call('DEL', unpack(old))
    else
      S = {}
    end
  end
  local last = S.l
  if last ~= nil and t - last > __IDLE__ * retention then
    -- Idle for longer than SUBJECT_IDLE_WINDOWS longest windows: as of this event, nothing of its
    -- counters and sets is in any window. Drop them, so that they restart as a new subject's
    -- would, with the HyperLogLogs of its last window (those of older overflows have expired).
    S.c0, S.c1, S.c2, S.t0, S.t1, S.t2 = nil, nil, nil, nil, nil, nil
    local lb = bucket(last, retention / B)
    local old = {}
    for i = 0, sets - 1 do
      S[ZN[i]], S[ON[i]] = nil, nil
      for b = lb - B, lb do old[#old + 1] = bkey(base .. 'h' .. i .. ':', b) end
    end
    if #old > 0 then redis.call('DEL', unpack(old)) end
  end
  if S.f == nil then
    -- A new subject: seeded from the previous version's record of this key, if there is one.
    local legacy = redis.call('GET', base .. 'r')
    if legacy then
      local r = cjson.decode(legacy)
      S.f, S.fs, S.l, S.ls = r.first_seen, fmt(r.first_seen), r.last_seen, fmt(r.last_seen)
      if present(r.label) then S.lb = r.label end
      if present(r.primary_key) then S.pk = r.primary_key end
      if present(r.services) and #r.services > 0 then S.sv = r.services end
      if present(r.ok_time) then
        S.ot, S.os = r.ok_time, fmt(r.ok_time)
        if present(r.ok_ip) then S.oi = r.ok_ip end
        if present(r.ok_ua) then S.ou = r.ok_ua end
      end
      redis.call('DEL', base .. 'r')
    end
  end
  if S.f == nil or t < S.f then S.f, S.fs = t, ts end
  if S.l == nil or t > S.l then S.l, S.ls = t, ts end
  local v = P[a + 4]
  if v ~= '-' then S.lb = string.sub(v, 2) end
  v = P[a + 5]
  if v ~= '-' then S.pk = string.sub(v, 2) end
  v = P[a + 6]
  if v ~= '-' then
    local service = string.sub(v, 2)
    local list = S.sv or {}
    local known = false
    for i = 1, #list do if list[i] == service then known = true end end
    if not known and #list < __MAX_SERVICES__ then
      list[#list + 1] = service
      S.sv = list
    end
  end
  if P[a + 7] == '+' and (S.ot == nil or S.ot <= t) then
    S.ot, S.os = t, ts
    v = P[a + 8]
    if v == '-' then S.oi = nil else S.oi = string.sub(v, 2) end
    v = P[a + 9]
    if v == '-' then S.ou = nil else S.ou = string.sub(v, 2) end
  end
  -- The outcome's counter: exact times while sparse, rings once dense (the memory state's _Counter).
  local c = S[cp]
  if c == nil then
    S[cp], S[tp] = {t}, ts
  elseif c.r ~= nil then
    local rings = c.r
    for i = 1, nw do
      local r = 'w' .. names[i]
      rings[r] = ring_add(rings[r], ws[i], t, 1)
    end
  else
    local n = #c
    local pos = n + 1
    while pos > 1 and c[pos - 1] > t do pos = pos - 1 end
    table.insert(c, pos, t)
    n = n + 1
    local text = S[tp]
    if pos == n then
      text = text .. ',' .. ts
    else
      local strs = {}
      for x in string.gmatch(text, '[^,]+') do strs[#strs + 1] = x end
      table.insert(strs, pos, ts)
      text = table.concat(strs, ',')
    end
    local horizon = c[n] - retention
    local gone = 0
    while c[gone + 1] <= horizon do gone = gone + 1 end
    if gone > 0 then
      for j = 1, n - gone do c[j] = c[j + gone] end
      for j = n - gone + 1, n do c[j] = nil end
      n = n - gone
      local at = 0
      for _ = 1, gone do at = string.find(text, ',', at + 1, true) end
      text = string.sub(text, at + 1)
    end
    S[tp] = text
    if n > SPARSE_MAX then
      local rings = {}
      for j = 1, n do
        for i = 1, nw do
          local r = 'w' .. names[i]
          rings[r] = ring_add(rings[r], ws[i], c[j], 1)
        end
      end
      S[cp], S[tp] = {r = rings}, nil
    end
  end
  -- The distinct sets, over the longest window.
  if sets > 0 then
    local cut = t - retention
    for i = 0, sets - 1 do
      local m = P[m0 + i + 1]
      if m ~= '-' then
        set_add(S, i, base, string.sub(m, 2), t, retention, cut)
      end
    end
  end
  redis.call('SET', key, cmsgpack.pack(S), 'EX', P[a + 2])
  return S, ws, retention
end

-- view: what RedisState._view reads of subject S (a table as fold keeps it) as of `now`, over
-- the windows ws (numbers; `longest` the longest) and with limits[i] members of set i - 1
-- listed, as one flat list (a nested table costs the reply more than its elements): 's', first
-- and last time, label, primary key, the last success's time, address and user agent (false:
-- none), now as text, how many services and each, then per outcome its sparse times as text
-- (counted by the caller), its counts over each window (a list: dense) or false (none), then per
-- set its count over each window, then per set how many members are listed and each (most
-- recent first). `base` names the sets' HyperLogLogs.
local function view(S, now, nows, ws, longest, limits, base)
  local out = {'s', S.fs, S.ls, S.lb or false, S.pk or false, S.os or false, S.oi or false,
    S.ou or false, nows}
  local sv = S.sv or EMPTY
  out[10] = #sv
  for j = 1, #sv do out[10 + j] = sv[j] end
  local nw = #ws
  local lows = {}
  for j = 1, nw do lows[j] = now - ws[j] end
  local lowest = now - longest
  for o = 0, 2 do
    local c = S[CN[o]]
    if c == nil then
      out[#out + 1] = false
    elseif c.r ~= nil then
      local counts = {}
      for j = 1, nw do counts[j] = ring_count(c.r, now, ws[j]) end
      out[#out + 1] = counts
    else
      out[#out + 1] = S[TN[o]]
    end
  end
  local listed = {}
  for i = 0, #limits - 1 do
    local set = S[ZN[i]]
    local M, T = EMPTY, EMPTY
    if set ~= nil then M, T = set[1], set[2] end
    local k = #out
    local top = window_counts(T, now, lows, lowest, out, k)
    local members = {}
    local limit = tonumber(limits[i + 1])
    local m = top
    while m >= 1 and #members < limit and T[m] > lowest do
      members[#members + 1] = M[m]
      m = m - 1
    end
    listed[i + 1] = members
    local mark = S[ON[i]]
    if mark ~= nil then
      for j = 1, nw do
        if mark > lows[j] then
          out[k + j] = set_estimate(base .. 'h' .. i .. ':', mark, now, ws[j], longest, out[k + j])
        end
      end
    end
  end
  for i = 1, #limits do
    local members = listed[i]
    local k = #out
    out[k + 1] = #members
    for j = 1, #members do out[k + 1 + j] = members[j] end
  end
  return out
end

-- read_subject: subject `base` as of t ('' for its own newest event), over the window names
-- given, with limits[i] members of set i - 1: view's reply; {'r', record JSON} for a subject of
-- the version before subjects; nil for none.
local function read_subject(base, ts, names, limits)
  local raw = redis.call('GET', base .. 'p')
  local S
  if raw then
    S = cmsgpack.unpack(raw)
  else
    S = from_hash(base, #limits)
    if S == nil then
      local legacy = redis.call('GET', base .. 'r')
      if legacy then return {'r', legacy} end
      return nil
    end
  end
  local ws = {}
  local longest = 0
  for j = 1, #names do
    ws[j] = wnum(names[j])
    if ws[j] > longest then longest = ws[j] end
  end
  if ts == '' then return view(S, S.l, S.ls, ws, longest, limits, base) end
  return view(S, tonumber(ts), ts, ws, longest, limits, base)
end
