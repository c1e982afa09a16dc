"""When a store that saves a :class:`~usermon.processor.storage.state.memory.MemoryState` writes
it whole, and when only the rows of the keys changed since its last checkpoint.

The SQLite store, and the PostgreSQL store without Redis, save the state as a whole snapshot now
and then and, in between, the rows :meth:`MemoryState.changes` gives on top of it, so that a
checkpoint's pause follows the traffic since the last one rather than the size of the state. Rows
pile up, and a restart applies every one of them: once the rows held plus those about to be
written pass a share of the state's keys, the next checkpoint writes a whole snapshot again
(cheaper to write and to load than that many rows) and the rows start again from it. The share
depends on what a row costs the backend:

* :data:`DELTA_BLOBS` (SQLite): a checkpoint's rows are one blob in ``state_deltas``, so a row
  costs its bytes alone: whole again once the rows would outnumber the keys.
* :data:`ROW_PER_KEY` (PostgreSQL): each row is a table row of ``usermon_state_rows`` (written by
  ``COPY``, read back one by one), dearer to write and to load: whole again once the rows would
  outnumber half the keys (the rule SQLite had while it, too, wrote a table row per key).

The periodic checkpoint itself is the service's (``--checkpoint-interval``).
"""

from __future__ import annotations

from typing import Final

__all__ = ["DELTA_BLOBS", "ROW_PER_KEY", "SnapshotSchedule"]

DELTA_BLOBS: Final = 1
"""Keys per row held before a whole snapshot, when rows are written as blobs (SQLite)."""

ROW_PER_KEY: Final = 2
"""Keys per row held before a whole snapshot, when each row is a table row (PostgreSQL): a whole
snapshot once the rows would outnumber half the keys."""


class SnapshotSchedule:
    """One store's side of the rule: the rows it holds on top of its last whole snapshot, and
    whether the next checkpoint writes the state whole."""

    __slots__ = ("base_missing", "keys_per_row", "rows")

    def __init__(self, keys_per_row: int) -> None:
        self.keys_per_row = keys_per_row
        self.rows = 0
        """Rows held on top of the last whole snapshot (what a restart applies)."""
        self.base_missing = True
        """No whole snapshot to put rows on (a new store, or one deleted under it)."""

    def loaded(self, rows: int) -> None:
        """A whole snapshot and ``rows`` rows on top of it were loaded."""
        self.rows = rows
        self.base_missing = False

    def whole_due(self, changed: int, keys: int) -> bool:
        """Whether the next checkpoint writes the state whole, with ``changed`` keys changed or
        dropped since the last one (:attr:`MemoryState.pending_changes`) and ``keys`` held."""
        return self.base_missing or self.rows + changed > keys // self.keys_per_row

    def saved(self, *, whole: bool, rows: int) -> None:
        """A checkpoint wrote the state whole, or ``rows`` rows on top of what was there."""
        self.rows = 0 if whole else self.rows + rows
        self.base_missing = False
