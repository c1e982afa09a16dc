-- One subject (fold_subject) is a hash `p{k}:s` plus one sorted set per distinct set, `p{k}:z<i>`
-- with its overflow mark `p{k}:o<i>` and HyperLogLogs `p{k}:h<i>:<bucket>` (the same scheme as
-- add_distinct's). Hash fields: `f`, `l` first and last event time; `lb` label, `pk` primary key,
-- `sv` services (a JSON list); `ot`, `oi` the last success's time and address (absent `oi`: None),
-- its user agent in the string `p{k}:u` (a value over 64 bytes would turn the whole hash from
-- Redis' compact listpack into a hashtable, about 3 times larger);
-- per outcome o (0 ok, 1 fail, 2 signup) `c<o>`: either the comma-separated exact times of a
-- sparse counter, or `d` once it is dense, its rings then in `c<o>:<window>:<bucket>`,
-- `c<o>:<window>:n` and `c<o>:<window>:t` exactly as add_windows keeps them. A `p{k}:r` record
-- (what the previous version kept per user and address) seeds a new subject and is deleted.

local SPARSE_MAX = __SPARSE_MAX__

-- Dense ring of window `wname` of the counter whose fields start with `cp`: add 1 at t
-- (the steps of add_windows' script, for one window).
local function ring_add(h, cp, wname, t)
  local w = tonumber(wname)
  local res = w / B
  local bt = bucket(t, res)
  local base = cp .. ':' .. wname .. ':'
  local meta = redis.call('HMGET', h, base .. 'n', base .. 't')
  local newest = tonumber(meta[1])
  local total = tonumber(meta[2]) or 0
  if newest == nil then
    newest = bt
    total = 0
  elseif bt > newest then
    local gone = {}
    for b = newest - B, math.min(newest, bt - B - 1) do
      gone[#gone + 1] = base .. string.format('%d', b)
    end
    if #gone > 0 then
      local old = redis.call('HMGET', h, unpack(gone))
      for j = 1, #old do total = total - (tonumber(old[j]) or 0) end
      redis.call('HDEL', h, unpack(gone))
    end
    newest = bt
  end
  if bt >= newest - B then
    redis.call('HINCRBY', h, base .. string.format('%d', bt), '1')
    total = total + 1
  end
  redis.call('HSET', h, base .. 'n', string.format('%d', newest), base .. 't', string.format('%d', total))
end

-- Distinct count of (z, o, hp), a set kept over `longest`, over the window (now - w, now]: its
-- HyperLogLogs are bucketed at the set's own resolution, so a shorter window reads the buckets
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

local function present(v) return v ~= nil and v ~= cjson.null end
