"""The interface every detector implements.

A detector is one small class with one job. It sees each enriched event once, in event-time
order per key (best effort: events may be late within the engine's lateness), reads and writes
its own counters through :class:`~usermon.processor.storage.state.base.State`, and returns the
signals that event raises. It does no I/O of its own and keeps no state outside ``state``, so
several processor replicas sharing one state backend reach the same verdicts, and a test can drive
it with a list of events and a :class:`~usermon.processor.storage.state.memory.MemoryState`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from usermon.processor.model import Event, Signal
from usermon.processor.storage.state.base import State


class Detector(Protocol):
    name: str
    """Stable name, used in the rules file's section for this detector."""

    def observe(self, event: Event, state: State) -> Iterable[Signal]:
        """Update this detector's state with ``event``; return the signals it raises (often
        none). Must not raise for any well-formed event."""
        ...
