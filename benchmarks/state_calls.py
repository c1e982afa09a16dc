"""What the engine's State calls cost on the memory state: recorded once, then replayed alone.

Run by hand (see docs/performance.md, "Processor ingest"):

    python benchmarks/state_calls.py --rounds 5

bench_ingest.py's traffic (``--events``, batches of 512, as ``ab_detection.py`` decodes it) goes
once through the engine on a ``MemoryState`` that records every State call it is asked (the
operation, its arguments, its answer, and the module that asked). The calls are then replayed in
the same order on a fresh ``MemoryState``, with no engine and no detector around them (checked to
give every answer again), and timed against the engine itself, alternated, best of ``--rounds``,
CPU time per event, at ``usermon serve``'s garbage collector thresholds. The replay is the most
that cutting calls could save; the engine's time less the replay is the Python around the calls
(detectors, aggregation's arguments, the engine's loop). A last replay times each call alone
(the thread's CPU clock read around it, the reading's own cost taken off) to split the calls'
time by operation and by the module that asked: those add up to more than the replay in one
piece (a clock read costs about as much as a small call), so read them as shares.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

# bench_ingest's traffic (ab_detection.py), and the State's operations (a test helper's).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ab_detection import _ingest_events
from tests.support.state import STATE_OPERATIONS

from usermon.processor.detectors import default_detectors
from usermon.processor.engine import Engine
from usermon.processor.storage.state.memory import MemoryState

# operation, arguments, keyword arguments, the module that asked, answer
Call = tuple[str, tuple[Any, ...], dict[str, Any], str, Any]


def _frozen(value: Any) -> Any:
    # A mapping argument is copied as it was at the call (the caller may change it later).
    return dict(value) if isinstance(value, Mapping) else value


class RecordingState(MemoryState):
    """A real MemoryState that records every State operation asked of it from outside (not the
    calls it makes on itself), in :attr:`calls`."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self._inside = False

    def __getattribute__(self, name: str) -> Any:
        attr = object.__getattribute__(self, name)
        if name not in STATE_OPERATIONS or object.__getattribute__(self, "_inside"):
            return attr
        asker = Path(sys._getframe(1).f_code.co_filename).stem
        calls = object.__getattribute__(self, "calls")

        def record(*args: Any, **kwargs: Any) -> Any:
            frozen = tuple(_frozen(a) for a in args)
            kept = {k: _frozen(v) for k, v in kwargs.items()}
            object.__setattr__(self, "_inside", True)
            try:
                answer = attr(*args, **kwargs)
            finally:
                object.__setattr__(self, "_inside", False)
            calls.append((name, frozen, kept, asker, _frozen(answer)))
            return answer

        return record


def run_engine(events: list[Any], state: MemoryState, detectors: bool) -> None:
    engine = Engine(state, default_detectors() if detectors else ())
    for i in range(0, len(events), 512):
        engine.process(events[i : i + 512])


def timed(fn: Callable[[], Any]) -> float:
    gc.collect()
    started = time.thread_time()
    fn()
    return time.thread_time() - started


def replay(calls: list[Call]) -> Callable[[], None]:
    """A function that replays ``calls`` on a fresh state (bound beforehand, not timed)."""
    state = MemoryState()
    bound = [(getattr(state, name), args, kwargs) for name, args, kwargs, _, _ in calls]

    def run() -> None:
        for method, args, kwargs in bound:
            method(*args, **kwargs)

    return run


def loop_only(calls: list[Call]) -> Callable[[], None]:
    """The replay's loop without the calls: its own cost."""
    bound = [(name, args, kwargs) for name, args, kwargs, _, _ in calls]

    def run() -> None:
        for _method, _args, _kwargs in bound:
            pass

    return run


def check(calls: list[Call]) -> None:
    """The replay answers every call as the engine's state did."""
    state = MemoryState()
    for i, (name, args, kwargs, _, answer) in enumerate(calls):
        again = _frozen(getattr(state, name)(*args, **kwargs))
        if again != answer:
            raise SystemExit(f"call {i} ({name}) answered {again!r} in the replay, {answer!r}")


def split(calls: list[Call]) -> tuple[Counter[str], Counter[str]]:
    """Seconds per operation and per asking module, each call timed alone, the timer's own
    cost (its median with nothing between its two reads) taken off."""
    state = MemoryState()
    clock = time.thread_time  # CPU time: another process taking the core does not count
    by_op: Counter[str] = Counter()
    by_asker: Counter[str] = Counter()

    overhead = _timer_cost(clock)
    gc.collect()
    for name, args, kwargs, asker, _ in calls:
        method = getattr(state, name)
        started = clock()
        method(*args, **kwargs)
        spent = clock() - started - overhead
        by_op[name] += spent
        by_asker[asker] += spent
    return by_op, by_asker


def _timer_cost(clock: Callable[[], float]) -> float:
    spans = []
    for _ in range(100_000):
        started = clock()
        spans.append(clock() - started)
    spans.sort()
    return spans[len(spans) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20480)
    parser.add_argument("--rounds", type=int, default=5, help="alternated timed runs of each")
    args = parser.parse_args()

    events = _ingest_events(args.events)
    n = len(events)
    gc.set_threshold(100_000, 50, 100)  # as usermon serve sets them
    recorded: dict[str, list[Call]] = {}
    for label, detectors in (("with default detectors", True), ("no detectors", False)):
        state = RecordingState()
        run_engine(events, state, detectors)
        recorded[label] = state.calls
        check(state.calls)
    print(f"{n} events of bench_ingest's traffic in batches of 512; every replay answered alike")

    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for label, detectors in (("with default detectors", True), ("no detectors", False)):
            calls = recorded[label]
            for part, fn in (
                ("engine", lambda d=detectors: run_engine(events, MemoryState(), d)),
                ("replay", replay(calls)),
                ("loop", loop_only(calls)),
            ):
                spent = timed(fn)
                key = f"{label}/{part}"
                best[key] = min(best.get(key, float("inf")), spent)

    print(f"CPU µs per event, best of {args.rounds} alternated rounds:")
    print(f"  {'':24s} {'engine':>8s} {'State calls':>12s} {'calls/event':>12s} {'the rest':>9s}")
    for label, calls in recorded.items():
        engine = best[f"{label}/engine"] / n * 1e6
        alone = max(0.0, best[f"{label}/replay"] - best[f"{label}/loop"]) / n * 1e6
        print(
            f"  {label:24s} {engine:8.1f} {alone:12.1f} {len(calls) / n:12.2f} "
            f"{engine - alone:9.1f}"
        )
    calls = recorded["with default detectors"]
    by_op, by_asker = split(calls)
    ops = Counter(name for name, *_ in calls)
    askers = Counter(asker for _, _, _, asker, _ in calls)
    print("with default detectors, each call timed alone (µs per event, calls per event):")
    for title, spent, counted in (("operation", by_op, ops), ("asked by", by_asker, askers)):
        print(f"  by {title}:")
        for name, seconds in spent.most_common():
            print(f"    {name:24s} {seconds / n * 1e6:6.2f} µs  {counted[name] / n:6.2f} calls")


if __name__ == "__main__":
    main()
