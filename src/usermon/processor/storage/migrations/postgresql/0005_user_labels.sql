-- usermon PostgreSQL schema, version 5: user profiles indexed by label, newest first, so that a
-- lookup by label (the dashboard's /users/<label>, GET /api/users/<label>) reads one index entry
-- rather than scanning the most recently seen users, whichever state the processor runs on.
CREATE INDEX usermon_users_label ON usermon_users ((profile ->> 'label'), last_seen DESC);
