"""Helpers for tests and benchmarks of the engine, its detectors and its stores.

:class:`CountingState` is a real :class:`~usermon.processor.storage.state.memory.MemoryState` that
also counts every State operation asked of it, by name: how the detectors' per-event cost is pinned
in tests and reported by the benchmarks, without a mock in place of the state. :func:`random_step`
and :func:`state_contents` are how the stores' checkpoints are tested: random traffic over every
primitive, then a restored state compared with the live one.
"""

from __future__ import annotations

import marshal
import random
from collections import Counter
from typing import Any

from usermon.processor.storage.state.base import FAIL, OK, State
from usermon.processor.storage.state.memory import DEFAULT_MAX_KEYS, MemoryState

__all__ = ["STATE_OPERATIONS", "CountingState", "random_step", "state_contents"]

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


_WINDOWS = (60.0, 600.0, 3600.0, 86400.0)


def random_step(state: State, rng: random.Random, t: float) -> None:
    """One random step at time ``t`` of any State primitive that writes, on a small key space
    (40 keys of each kind) so that keys are touched again, sets grow and maps gain fields."""
    n = rng.randrange(40)
    what = rng.randrange(7)
    if what == 0:
        state.fold_subject(
            f"u:{n}",
            t,
            _WINDOWS,
            30 * 86400.0,
            rng.choice((OK, FAIL)),
            (f"10.0.0.{rng.randrange(20)}", None, "Firefox"),
            label=f"user{n}",
            service="shop",
        )
    elif what == 1:
        state.fold_subject(f"ip:{n}", t, _WINDOWS, 30 * 86400.0, FAIL, (f"u{rng.randrange(50)}",))
    elif what == 2:
        state.add_windows(f"c:{n}", t, _WINDOWS)
    elif what == 3:
        state.add_distinct(f"d:{n}", f"m{rng.randrange(30)}", t, 600.0)
    elif what == 4:
        state.incr_fields(f"f:{n}", {f"x{rng.randrange(5)}": 1}, t, 600.0)
    elif what == 5:
        state.put(f"r:{n}", {"v": rng.randrange(9)}, t, 300.0)
    elif rng.randrange(4):
        state.append_entry(f"l:{n}", [f"s{rng.randrange(9)}", t], t, 600.0, 4)
    else:
        state.remove_entries(f"l:{n}", state.entries(f"l:{n}")[:1])


def state_contents(state: MemoryState) -> tuple[Any, ...]:
    """Everything ``state`` holds and would answer from (its keys not expired yet), in their
    least-recently-touched order, as plain values: equal for two states that answer alike."""
    _, _, watermark, evicted, rows = marshal.loads(state.dump())  # noqa: S302 - our own bytes
    live = set(state.keys())
    return watermark, evicted, [row for row in rows if row[0] in live]
