-- KEYS[1] the episode record (JSON, as State.put writes it). ARGV: the record to open with (JSON,
-- its "last" already the signal's time), the signal's time t (as JSON writes it), the gap, the
-- TTL (seconds). Opens the episode when there is none or it closed (no signal for more than the
-- gap before t), else moves its "last" up to t; one script, so of two replicas opening one
-- episode at once the second grows what the first opened. Returns {record JSON, 1 when opened
-- here else 0}. Growing rewrites "last" in the text, so the other fields stay as they were
-- written (cjson would round their numbers to 14 digits).
local t, gap = tonumber(ARGV[2]), tonumber(ARGV[3])
local raw = redis.call('GET', KEYS[1])
local record = raw and cjson.decode(raw)
local out, opened = ARGV[1], 1
if record and t - tonumber(record['last']) <= gap then
  opened = 0
  out = raw
  if t > tonumber(record['last']) then
    out = (string.gsub(raw, '"last":[-+.%deE]+', '"last":' .. ARGV[2], 1))
  end
end
redis.call('SET', KEYS[1], out, 'EX', ARGV[4])
return {out, opened}
