-- usermon PostgreSQL schema, version 4: which events of each journaled batch have had their
-- findings recorded (their dedupe keys), so that recording the batch again (a replay, a replica
-- adopting it, two replicas at once) records each event once. A row lives as long as its batch
-- is in usermon_intake: the checkpoint that deletes the batch deletes it (docs/processor.md,
-- *Findings*).
CREATE TABLE usermon_recorded_batches (
    position bigint PRIMARY KEY,
    events   text[] NOT NULL DEFAULT '{}'
);
