-- State.open_episode (episode.lua). KEYS[1] the episode record; ARGV: the record to open with, the
-- signal's time, the gap, the TTL.
return open_episode(KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4])
