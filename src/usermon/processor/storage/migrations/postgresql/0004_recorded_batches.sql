-- usermon PostgreSQL schema, version 4: which journaled batches have had their findings
-- recorded, so that recording a batch again (a replay, a replica adopting a dead one's batch)
-- changes nothing. A row lives as long as its batch is in usermon_intake: the checkpoint that
-- deletes the batch deletes it (docs/processor.md, *Findings*).
CREATE TABLE usermon_recorded_batches (
    position bigint PRIMARY KEY
);
