-- One fold called on its own (RedisState.fold_subject). ARGV: the subject's base (its keys'
-- common beginning), then fold's arguments (subject.lua).
fold(ARGV[1], ARGV, 1)
return 0
