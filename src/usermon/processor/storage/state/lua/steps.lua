-- The steps every script shares (after common.lua; subject.lua, after this file, has the folds): the scripts of one
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
