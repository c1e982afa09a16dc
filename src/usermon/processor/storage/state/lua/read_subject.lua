-- KEYS as for the fold. ARGV: [1] t ('' for the subject's own newest event), [2] how many
-- windows, then the windows, then per set: how many members to list, HyperLogLog prefix.
-- Returns nil for no subject; {'r', record JSON} for a subject of the previous version; else
-- {'s', hash fields (flat), t used, last success's user agent, then per set: members (most recent
-- first), counts}.
local h = KEYS[1]
local nw = tonumber(ARGV[2])
local fields
if nw > 0 then
  fields = redis.call('HGETALL', h)
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
end
if #fields == 0 then
  local legacy = redis.call('GET', KEYS[2])
  if legacy then return {'r', legacy} end
  return nil
end
local now = tonumber(ARGV[1])
if now == nil then now = tonumber(redis.call('HGET', h, 'l')) end
local longest = 0
for i = 1, nw do
  local w = tonumber(ARGV[2 + i])
  if w > longest then longest = w end
end
local out = {'s', fields, fmt(now), redis.call('GET', KEYS[3])}
local a = 2 + nw
local i = 0
while ARGV[a + 1] ~= nil do
  local z, o, hp = KEYS[4 + 2 * i], KEYS[5 + 2 * i], ARGV[a + 2]
  local limit = tonumber(ARGV[a + 1])
  local members = {}
  if limit > 0 then
    local low = '(' .. fmt(now - longest)
    members = redis.call('ZREVRANGEBYSCORE', z, fmt(now), low, 'LIMIT', 0, limit)
  end
  local counts = {}
  for j = 1, nw do counts[j] = set_count(z, o, hp, now, tonumber(ARGV[2 + j]), longest) end
  out[#out + 1] = members
  out[#out + 1] = counts
  a = a + 2
  i = i + 1
end
return out
