-- KEYS[1] zset, KEYS[2] overflow mark. ARGV: t, window, HyperLogLog key prefix.
return distinct_count(KEYS[1], KEYS[2], ARGV[3], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[1])
