-- usermon PostgreSQL schema, version 6: address profiles indexed by last_seen, newest first, as
-- user profiles are since version 1, so that the recently seen addresses (GET /api/ips?sort=recent,
-- the dashboard's Sources page) read a page of the index whichever state the processor runs on.
CREATE INDEX usermon_ips_last_seen ON usermon_ips (last_seen DESC);
