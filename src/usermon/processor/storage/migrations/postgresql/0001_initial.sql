-- usermon PostgreSQL schema, version 1: the intake journal, replicas' checkpoints, findings and
-- profiles. Applied once by the first processor that starts (under an advisory lock), recorded in
-- usermon_schema_migrations.

-- What each replica took and has not yet checkpointed: a replica that dies mid-stream leaves its
-- batches here, and the next replica to start adopts them (see usermon_replicas.heartbeat).
CREATE TABLE usermon_intake (
    position   bigserial PRIMARY KEY,
    replica    text        NOT NULL,
    blob       bytea       NOT NULL,
    count      integer     NOT NULL,
    taken_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX usermon_intake_replica ON usermon_intake (replica, position);

CREATE TABLE usermon_replicas (
    replica    text PRIMARY KEY,
    heartbeat  timestamptz NOT NULL DEFAULT now(),
    position   bigint      NOT NULL DEFAULT 0,
    snapshot   bytea
);

-- A finding is merged by id (deterministic: kind, subject, opening hour), so replicas growing the
-- same finding add up instead of duplicating it.
CREATE TABLE usermon_findings (
    id             text PRIMARY KEY,
    kind           text             NOT NULL,
    severity       text             NOT NULL,
    subject_type   text             NOT NULL,
    subject_id     text             NOT NULL,
    subject_label  text,
    first_seen     double precision NOT NULL,
    last_seen      double precision NOT NULL,
    event_count    bigint           NOT NULL,
    summary        text             NOT NULL,
    evidence       jsonb            NOT NULL
);
CREATE INDEX usermon_findings_last_seen ON usermon_findings (last_seen DESC);
CREATE INDEX usermon_findings_subject ON usermon_findings (subject_id);
CREATE INDEX usermon_findings_label ON usermon_findings (subject_label);

CREATE TABLE usermon_users (
    user_hash  text PRIMARY KEY,
    last_seen  double precision NOT NULL,
    profile    jsonb            NOT NULL
);
CREATE INDEX usermon_users_last_seen ON usermon_users (last_seen DESC);

CREATE TABLE usermon_ips (
    ip         text PRIMARY KEY,
    last_seen  double precision NOT NULL,
    profile    jsonb            NOT NULL
);

CREATE FUNCTION usermon_severity_rank(severity text) RETURNS integer
    LANGUAGE sql IMMUTABLE
AS $$ SELECT array_position(ARRAY['low', 'medium', 'high', 'critical'], severity) $$;

-- The union of two evidence lists, newest first, without nulls or repeats, at most `lim` items:
-- the same rule as usermon.processor.engine.merge_finding.
CREATE FUNCTION usermon_union(newest jsonb, older jsonb, lim integer) RETURNS jsonb
    LANGUAGE sql IMMUTABLE
AS $$
    SELECT coalesce(jsonb_agg(item ORDER BY first_pos), '[]'::jsonb)
    FROM (
        SELECT item, min(pos) AS first_pos
        FROM (
            SELECT item, pos
            FROM jsonb_array_elements(coalesce(newest, '[]'::jsonb)) WITH ORDINALITY AS a(item, pos)
            UNION ALL
            SELECT item, pos + 1000000000
            FROM jsonb_array_elements(coalesce(older, '[]'::jsonb)) WITH ORDINALITY AS b(item, pos)
        ) AS both_lists
        WHERE item <> 'null'::jsonb
        GROUP BY item
        ORDER BY first_pos
        LIMIT lim
    ) AS kept
$$;
