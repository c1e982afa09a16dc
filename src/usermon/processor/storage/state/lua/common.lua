-- Shared Lua helpers. Redis runs Lua 5.1: numbers are doubles, exact for bucket indexes here.
local B = __BUCKETS__
local CAP = __CAP__
-- Formatting or parsing a double (%.17g, tonumber, a Lua number passed to redis.call) costs
-- more than most commands: times travel as the strings Python wrote (`ts`, the same double), and
-- integers as '%d' strings.
local function fmt(x) return string.format('%.17g', x) end
local function bucket(t, res) return math.floor(t / res) end
local function bkey(prefix, b) return prefix .. string.format('%d', b) end
-- The overflow marks add_member read or wrote in this script (key -> mark, false: none), so a
-- read of the same set later in the script does not GET its mark again.
local MARKS = {}

-- Record member m at t in the windowed distinct set kept over w: the sorted set z (member ->
-- newest time), trimmed to the window and to its CAP newest members; o, the newest time trimmed
-- for the cap (the overflow mark); hp, the prefix of the per-bucket HyperLogLogs that count the
-- window while the mark is in it, seeded with the whole set when it first overflows. Returns the
-- set's newest time and its mark (nil: none) as they are after it, and the trimming bound
-- (newest - w, formatted). `ts` is t as a string; `cut` (t - w formatted) and `keep` (the TTL)
-- may be given, when several sets are kept over one window.
local function add_member(z, o, hp, m, t, w, ts, cut, keep)
  local res = w / B
  keep = keep or string.format('%d', math.ceil(w + 2 * res))
  -- Only a member newer than t makes the set's newest time another (events mostly come in
  -- order, and then nothing is read).
  local top = redis.call('ZREVRANGEBYSCORE', z, '+inf', '(' .. ts, 'WITHSCORES', 'LIMIT', 0, 1)
  local newest = t
  if top[2] ~= nil then newest = tonumber(top[2]) end
  local mark = tonumber(redis.call('GET', o) or '')
  local overflowing = mark ~= nil and mark > newest - w
  local added = 0
  if t > newest - w then
    added = redis.call('ZADD', z, 'GT', ts, m)
    if overflowing then
      local hk = bkey(hp, bucket(t, res))
      redis.call('PFADD', hk, m)
      redis.call('EXPIRE', hk, keep)
    end
  end
  if newest ~= t or not cut then cut = fmt(newest - w) end
  local removed = redis.call('ZREMRANGEBYSCORE', z, '-inf', cut)
  -- The set held at most CAP members before: only a net gain can take it past.
  local card = 0
  if added > removed then card = redis.call('ZCARD', z) end
  if card > CAP then
    if not overflowing then
      -- First overflow in this window: from now on the HyperLogLogs count, seeded with the set.
      local all = redis.call('ZRANGE', z, 0, -1, 'WITHSCORES')
      for i = 1, #all, 2 do
        local hk = bkey(hp, bucket(tonumber(all[i + 1]), res))
        redis.call('PFADD', hk, all[i])
        redis.call('EXPIRE', hk, keep)
      end
    end
    local trimmed = redis.call('ZRANGE', z, 0, card - CAP - 1, 'WITHSCORES')
    for i = 2, #trimmed, 2 do
      local s = tonumber(trimmed[i])
      if mark == nil or s > mark then mark = s end
    end
    redis.call('ZREMRANGEBYRANK', z, 0, card - CAP - 1)
    redis.call('SET', o, fmt(mark), 'EX', keep)
  end
  redis.call('EXPIRE', z, keep)
  MARKS[o] = mark or false
  return newest, mark, cut
end

-- Distinct count of zset `z` over (t - w, t] (`ts`: t as a string; `low`: t - w formatted, if
-- known), HyperLogLog-backed while the overflow mark (`mark`, nil for none) is in the window.
local function marked_count(z, mark, hp, t, w, ts, low)
  local exact = redis.call('ZCOUNT', z, '(' .. (low or fmt(t - w)), ts)
  if mark == nil or mark <= t - w then return exact end
  local res = w / B
  local bt = bucket(t, res)
  local keys = {}
  for b = bt - B, bt do keys[#keys + 1] = bkey(hp, b) end
  local est = redis.call('PFCOUNT', unpack(keys))
  if est > exact then return est end
  return exact
end

-- As marked_count, the mark read from its key `o`.
local function distinct_count(z, o, hp, t, w, ts)
  return marked_count(z, tonumber(redis.call('GET', o) or ''), hp, t, w, ts)
end
