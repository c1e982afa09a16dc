"""Helpers for tests and benchmarks of the engine and its detectors.

:class:`CountingState` is a real :class:`~usermon.processor.state_memory.MemoryState` that also
counts every State operation asked of it, by name: how the detectors' per-event cost is pinned in
tests and reported by the benchmarks, without a mock in place of the state.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from usermon.processor.state import State
from usermon.processor.state_memory import DEFAULT_MAX_KEYS, MemoryState

__all__ = ["STATE_OPERATIONS", "CountingState"]

STATE_OPERATIONS = frozenset(
    name for name, value in vars(State).items() if callable(value) and not name.startswith("_")
)
"""The operations of the State protocol, read from it so a new one is counted too."""


class CountingState(MemoryState):
    """A real MemoryState that also counts the operations asked of it, in :attr:`calls`."""

    def __init__(self, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        super().__init__(max_keys)
        self.calls: Counter[str] = Counter()

    def __getattribute__(self, name: str) -> Any:
        if name in STATE_OPERATIONS:
            object.__getattribute__(self, "calls")[name] += 1
        return object.__getattribute__(self, name)
