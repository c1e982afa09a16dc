-- usermon PostgreSQL schema, version 3: protection decisions, the allowlist and their audit log,
-- shared by every replica (docs/protection.md).

-- Every decision ever made, until it is trimmed; the active set is the rows not removed whose
-- "until" is still ahead. Times are seconds since the epoch, as for findings.
CREATE TABLE usermon_decisions (
    id       text             PRIMARY KEY,
    action   text             NOT NULL,
    scope    text             NOT NULL,
    value    text             NOT NULL,
    until    double precision NOT NULL,
    reason   text             NOT NULL,
    origin   text             NOT NULL,
    created  double precision NOT NULL,
    finding  text,
    removed  double precision
);
CREATE INDEX usermon_decisions_subject ON usermon_decisions (scope, value, created);
CREATE INDEX usermon_decisions_finding ON usermon_decisions (finding);

-- One row per change (a decision added or removed, an allowlist entry added or removed): the
-- audit log, and what the decision stream reads after a cursor. Writers hold an advisory lock
-- while they change anything, so sequence numbers commit in order and a reader that has seen
-- one has seen every smaller one.
CREATE TABLE usermon_decision_log (
    seq      bigserial        PRIMARY KEY,
    op       text             NOT NULL,
    subject  text             NOT NULL,
    who      text             NOT NULL,
    at       double precision NOT NULL,
    detail   text             NOT NULL
);

CREATE TABLE usermon_allowlist (
    kind     text             NOT NULL,
    value    text             NOT NULL,
    who      text             NOT NULL,
    created  double precision NOT NULL,
    PRIMARY KEY (kind, value)
);

-- The id of this database's sequence: a cursor from another database (or one rebuilt) means
-- nothing here.
CREATE TABLE usermon_decision_epoch (
    id     integer PRIMARY KEY CHECK (id = 1),
    epoch  text    NOT NULL
);
INSERT INTO usermon_decision_epoch (id, epoch) VALUES (1, md5(random()::text || clock_timestamp()::text));
