-- KEYS[1] a windowed list. ARGV: t, window, cap, TTL, the entry as "<t> <JSON>" (t as Python
-- spells it). As MemoryState.append_entry: the items appended at a time more than the window
-- before t go, the entry is appended, the last cap are kept. Items are mostly in time order, so
-- the ones that go are mostly the first: only others make the list be written again.
local k = KEYS[1]
local t, w, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local items = redis.call('LRANGE', k, 0, -1)
local kept, head = {}, 0
for i = 1, #items do
  local item = items[i]
  if t - tonumber(string.sub(item, 1, string.find(item, ' ', 1, true) - 1)) <= w then
    kept[#kept + 1] = item
  elseif #kept == 0 then
    head = i
  end
end
if #items - #kept > head then
  redis.call('DEL', k)
  if #kept > 0 then redis.call('RPUSH', k, unpack(kept)) end
elseif head > 0 then
  redis.call('LTRIM', k, head, -1)
end
redis.call('RPUSH', k, ARGV[5])
if #kept >= cap then redis.call('LTRIM', k, -cap, -1) end
redis.call('EXPIRE', k, ARGV[4])
return #kept + 1
