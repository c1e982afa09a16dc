-- One change to the decisions or the allowlist, and its entry in the log, atomically.
-- KEYS: decisions (id -> row), log (seq -> entry), seq, allowlist (kind:value -> entry),
--       by-subject index of this decision (id -> created), removed (id -> when),
--       by-finding index of this decision (a set of ids; unused when it answers no finding).
-- ARGV: op (add, remove, allow, unallow), subject (decision id or kind:value), payload, who,
--       at, detail, how many log entries to keep, the finding it answers ('' for none).
-- Returns the change's sequence number, or 0 when nothing changed.
local op, subject = ARGV[1], ARGV[2]
if op == 'add' then
  if redis.call('HSETNX', KEYS[1], subject, ARGV[3]) == 0 then return 0 end
  redis.call('ZADD', KEYS[5], ARGV[5], subject)
  if ARGV[8] ~= '' then redis.call('SADD', KEYS[7], subject) end
elseif op == 'remove' then
  if redis.call('HEXISTS', KEYS[1], subject) == 0 then return 0 end
  if redis.call('HSETNX', KEYS[6], subject, ARGV[5]) == 0 then return 0 end
elseif op == 'allow' then
  if redis.call('HSETNX', KEYS[4], subject, ARGV[3]) == 0 then return 0 end
elseif op == 'unallow' then
  if redis.call('HDEL', KEYS[4], subject) == 0 then return 0 end
else
  return redis.error_reply('unknown decision op ' .. op)
end
local seq = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[2], seq, cjson.encode({op, subject, ARGV[4], ARGV[5], ARGV[6]}))
local old = seq - tonumber(ARGV[7])
if old > 0 then redis.call('HDEL', KEYS[2], old) end
return seq
