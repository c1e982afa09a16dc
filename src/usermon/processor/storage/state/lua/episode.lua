-- A finding episode's step (State.open_episode), shared by open_episode.lua and apply.lua's `e`.
-- `key` the episode record (JSON, as State.put writes it); `first` the record to open with
-- (JSON, its "last" already the signal's time), `ts` the signal's time t (as JSON writes it),
-- `gap` (a number), `ttl` (seconds). Opens the episode when there is none or it closed (no signal
-- for more than the gap before t), else moves its "last" up to t; one script, so of two replicas
-- opening one episode at once the second grows what the first opened. Returns {record JSON, 1
-- when opened here else 0}. Growing rewrites "last" in the text, so the other fields stay as they
-- were written (cjson would round their numbers to 14 digits).
local function open_episode(key, first, ts, gap, ttl)
  local t = tonumber(ts)
  local raw = redis.call('GET', key)
  local record = raw and cjson.decode(raw)
  local out, opened = first, 1
  if record and t - tonumber(record['last']) <= gap then
    opened = 0
    out = raw
    if t > tonumber(record['last']) then
      out = (string.gsub(raw, '"last":[-+.%deE]+', '"last":' .. ts, 1))
    end
  end
  redis.call('SET', key, out, 'EX', ttl)
  return {out, opened}
end
