-- KEYS[1] a windowed list. ARGV: t, window, cap, TTL, the entry as "<t> <JSON>" (entries.lua).
return append_entry(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
