-- KEYS and ARGV as fold in steps.lua describes them.
return fold(KEYS, ARGV)
