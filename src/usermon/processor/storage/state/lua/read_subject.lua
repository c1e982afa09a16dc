-- One subject read on its own (RedisState.read_subject). ARGV: the subject's base, t ('' for its
-- newest event), how many windows, the windows, then each set's limit. Returns read_subject's
-- reply (subject.lua).
local nw = tonumber(ARGV[3])
return read_subject(ARGV[1], ARGV[2], {unpack(ARGV, 4, 3 + nw)}, {unpack(ARGV, 4 + nw)})
