-- Append `item` ("<t> <entry JSON>", `ts` its t as Python spells it) to the windowed list k, as
-- MemoryState.append_entry does: the items appended at a time more than the window `w` before t
-- go, the item is appended, the last `cap` are kept, the list expires `ttl` seconds on. Items
-- are mostly in time order, so the ones that go are mostly the first: only others make the list
-- be written again. Returns the list's length.
local function append_entry(k, ts, w, cap, ttl, item)
  local t = tonumber(ts)
  w, cap = tonumber(w), tonumber(cap)
  local items = redis.call('LRANGE', k, 0, -1)
  local kept, head = {}, 0
  for i = 1, #items do
    local it = items[i]
    if t - tonumber(string.sub(it, 1, string.find(it, ' ', 1, true) - 1)) <= w then
      kept[#kept + 1] = it
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
  redis.call('RPUSH', k, item)
  if #kept >= cap then redis.call('LTRIM', k, -cap, -1) end
  redis.call('EXPIRE', k, ttl)
  if #kept >= cap then return cap end
  return #kept + 1
end
