-- usermon PostgreSQL schema, version 2: incremental checkpoints of a replica's in-memory state
-- (a postgresql store without Redis), as the SQLite store has them: a whole snapshot now and then,
-- in between only the rows of the keys that changed, so that a checkpoint costs what changed
-- rather than the size of the state.
--
-- From this version usermon_replicas.snapshot holds only the engine's snapshot. Before it, a
-- replica without Redis kept a pickle of (engine snapshot, whole state) there; the store still
-- reads that (state_header is NULL then) and moves it to the tables below at its next checkpoint.

-- The state's own fields without its keys (watermark, evictions), written with every checkpoint
-- of an in-memory state; NULL when the checkpoint saved no state here (Redis holds it, or the
-- checkpoint predates this version).
ALTER TABLE usermon_replicas ADD COLUMN state_header bytea;

-- The last whole snapshot of each replica's state.
CREATE TABLE usermon_state_base (
    replica  text  PRIMARY KEY,
    data     bytea NOT NULL
);

-- The rows written on top of it, in order: one per key changed since the checkpoint before,
-- least recently touched first, and NULL (a tombstone) for a key that expired or was evicted.
-- Appended with COPY, never updated: a key changed at several checkpoints has several rows and
-- the last one wins on load. Cleared by the next whole snapshot.
CREATE TABLE usermon_state_rows (
    replica  text      NOT NULL,
    seq      bigserial,
    key      text      NOT NULL,
    row      bytea,
    PRIMARY KEY (replica, seq)
);
