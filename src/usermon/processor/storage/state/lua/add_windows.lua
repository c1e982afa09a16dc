-- KEYS[1] counter hash. ARGV: t, n, then one or more window lengths (as formatted by Python, so the
-- field names of one window are always spelled the same). Returns the totals, one per window.
-- Like the memory state's ring: each series keeps its running total in `<window>:t`, so a step
-- touches a few fields; only when the newest bucket advances are the buckets leaving the kept
-- range (at most B + 1 of them) read, subtracted and deleted.
local key = KEYS[1]
local t = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local totals = {}
local ttl = 0
for i = 3, #ARGV do
  local wname = ARGV[i]
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
    redis.call('HINCRBY', key, wname .. ':' .. string.format('%d', bt), n)
    total = total + n
  end
  redis.call('HSET', key, tfield, total)
  totals[#totals + 1] = total
  local keep = math.ceil(w + 2 * res)
  if keep > ttl then ttl = keep end
end
if redis.call('TTL', key) < ttl then redis.call('EXPIRE', key, ttl) end
return totals
