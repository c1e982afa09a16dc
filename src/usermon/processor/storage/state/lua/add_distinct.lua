-- KEYS[1] zset, KEYS[2] overflow mark. ARGV: member, t, window, HyperLogLog key prefix.
local t, w = tonumber(ARGV[2]), tonumber(ARGV[3])
local newest, mark, cut = add_member(KEYS[1], KEYS[2], ARGV[4], ARGV[1], t, w, ARGV[2])
return marked_count(KEYS[1], mark, ARGV[4], t, w, ARGV[2], newest == t and cut or nil)
