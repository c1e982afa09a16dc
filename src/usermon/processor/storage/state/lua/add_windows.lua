-- KEYS[1] counter hash. ARGV: t, n, then one or more window lengths (see add_windows in
-- steps.lua). Returns the totals, one per window.
return add_windows(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), {unpack(ARGV, 3)})
