"""How the engine runs a batch's State steps together: each event's steps are declared up front
(its dedupe claim, aggregation's folds, what the detectors declare with
:meth:`~usermon.processor.detectors.base.Planned.plan`), run as one atomic
:meth:`~usermon.processor.storage.state.base.State.apply` per event, a segment of events at a time
(:meth:`~usermon.processor.storage.state.base.PipelinedState.apply_many`: one round trip on
Redis), and the detectors then judge each event in order through a :class:`PlanView`, which
answers every call the plan made from its results. What a plan cannot declare goes to the state
directly, except records written (``put``), which are kept here and sent with the next segment's
round trip; reads of them are answered from here meanwhile. docs/processor.md (*Planned steps*)
gives the rules that keep the findings those of one event at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from usermon.processor.storage.state.base import PipelinedState, State, SubjectView, entry_json
from usermon.processor.storage.state.steps import (
    AddDistinct,
    AddWindows,
    Append,
    Count,
    DistinctCount,
    Fields,
    Fold,
    Get,
    IncrFields,
    Step,
)

__all__ = ["READS", "PlanView", "run_plans"]

READS: Final = (Count, DistinctCount, Fields, Get)
"""The steps that only read: a plan may declare them whether or not they are used."""

_MISSING: Final[Any] = object()


def run_plans(
    state: State,
    plans: Sequence[Sequence[Step]],
    records: Sequence[tuple[str, Mapping[str, Any], float, float]] = (),
    appends: Sequence[Step] = (),
) -> list[list[Any]]:
    """``records`` put, ``appends`` (:class:`Append` steps) applied as one plan, then each plan
    applied: one pipelined round trip on a :class:`PipelinedState`, direct calls otherwise."""
    if appends:
        return run_plans(state, [appends, *plans], records)[1:]
    if isinstance(state, PipelinedState):
        return state.apply_many(plans, records) if plans or records else []
    for key, value, t, ttl in records:
        state.put(key, value, t, ttl)
    return [state.apply(steps) for steps in plans]


class PlanView:
    """The :class:`State` the detectors see while an event is judged: the results of the
    event's plan (:attr:`answers`, step -> result) answer the calls that made them; records
    put are held (:attr:`records`) until :meth:`take_records`, entries appended
    (:attr:`appends`) until :meth:`take_appends`; every other call goes to the state, counted
    in :attr:`direct` (a round trip each on Redis)."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.answers: dict[Step, Any] = {}
        self.records: dict[str, tuple[dict[str, Any], float, float]] = {}
        self.appends: list[Step] = []
        self.direct = 0

    def take_records(self) -> Sequence[tuple[str, Mapping[str, Any], float, float]]:
        """The records put since the last call, to be written, in the order first put."""
        records = [(key, value, t, ttl) for key, (value, t, ttl) in self.records.items()]
        self.records = {}
        return records

    def _answer(self, step: Step) -> Any:
        return self.answers.get(step, _MISSING)

    # -- counters ----------------------------------------------------------------------------------

    def add(self, key: str, t: float, window: float, n: int = 1) -> int:
        result = self._answer(AddWindows(key, t, (window,), n))
        if result is _MISSING:
            self.direct += 1
            return self.state.add(key, t, window, n)
        return int(result[0])

    def add_windows(
        self, key: str, t: float, windows: tuple[float, ...], n: int = 1
    ) -> tuple[int, ...]:
        result = self._answer(AddWindows(key, t, windows, n))
        if result is _MISSING:
            self.direct += 1
            return self.state.add_windows(key, t, windows, n)
        return tuple(result)

    def count(self, key: str, t: float, window: float) -> int:
        result = self._answer(Count(key, t, window))
        if result is _MISSING:
            self.direct += 1
            return self.state.count(key, t, window)
        return int(result)

    # -- distinct sets -----------------------------------------------------------------------------

    def add_distinct(self, key: str, member: str, t: float, window: float) -> int:
        result = self._answer(AddDistinct(key, member, t, window))
        if result is _MISSING:
            self.direct += 1
            return self.state.add_distinct(key, member, t, window)
        return int(result)

    def distinct_count(self, key: str, t: float, window: float) -> int:
        result = self._answer(DistinctCount(key, t, window))
        if result is _MISSING:
            self.direct += 1
            return self.state.distinct_count(key, t, window)
        return int(result)

    def distinct_members(self, key: str, t: float, window: float, limit: int = 64) -> list[str]:
        self.direct += 1
        return self.state.distinct_members(key, t, window, limit)

    # -- counting maps -----------------------------------------------------------------------------

    def incr_field(self, key: str, field: str, t: float, ttl: float, n: int = 1) -> int:
        result = self._answer(IncrFields(key, ((field, n),), t, ttl))
        if result is _MISSING:
            self.direct += 1
            return self.state.incr_field(key, field, t, ttl, n)
        return int(result[0])

    def incr_fields(self, key: str, fields: Mapping[str, int], t: float, ttl: float) -> list[int]:
        result = self._answer(IncrFields.of(key, fields, t, ttl))
        if result is _MISSING:
            self.direct += 1
            return self.state.incr_fields(key, fields, t, ttl)
        return list(result)

    def fields(self, key: str) -> dict[str, int]:
        result = self._answer(Fields(key))
        if result is _MISSING:
            self.direct += 1
            return self.state.fields(key)
        return dict(result)

    # -- records -----------------------------------------------------------------------------------

    def get(self, key: str) -> dict[str, Any] | None:
        held = self.records.get(key)
        if held is not None:
            return dict(held[0])
        result = self._answer(Get(key))
        if result is _MISSING:
            self.direct += 1
            return self.state.get(key)
        return None if result is None else dict(result)

    def put(self, key: str, value: Mapping[str, Any], t: float, ttl: float) -> None:
        self.records[key] = (dict(value), t, ttl)

    def open_episode(
        self, key: str, opening: Mapping[str, Any], t: float, gap: float, ttl: float
    ) -> tuple[dict[str, Any], bool]:
        held = self.records.get(key)
        if held is None:
            self.direct += 1
            return self.state.open_episode(key, opening, t, gap, ttl)
        # This replica put the record since the last round trip: the state would be asked
        # about a value it has not been sent yet, so the step runs on the held copy.
        record, _, _ = held
        if t - float(record["last"]) <= gap:
            record["last"] = max(t, float(record["last"]))
            opened = False
        else:
            record = {**opening, "last": t}
            opened = True
        self.records[key] = (record, float(record["last"]), ttl)
        return dict(record), opened

    # -- kept maps ---------------------------------------------------------------------------------

    def keep(self, key: str, field: str, value: Mapping[str, Any], t: float, ttl: float) -> None:
        self.direct += 1
        self.state.keep(key, field, value, t, ttl)

    def kept(self, key: str) -> dict[str, dict[str, Any]]:
        self.direct += 1
        return self.state.kept(key)

    def drop(self, key: str) -> None:
        self.direct += 1
        self.state.drop(key)

    # -- windowed lists ----------------------------------------------------------------------------

    # Appends are held like records and sent with them (:meth:`take_appends`, one plan in the
    # next round trip, not a round trip per success), or before the list is read or changed
    # otherwise, so that every read sees them, in order.

    def append_entry(
        self, key: str, entry: Sequence[Any], t: float, window: float, cap: int
    ) -> None:
        self.appends.append(Append(key, entry_json(entry), t, window, cap))

    def take_appends(self) -> Sequence[Step]:
        """The entries appended since the last call (:class:`Append` steps, in order), to be
        applied as one plan (:func:`run_plans`' ``appends``)."""
        appends, self.appends = self.appends, []
        return appends

    def _send_appends(self) -> None:
        if self.appends:
            self.direct += 1
            self.state.apply(self.take_appends())

    def entries(self, key: str) -> list[tuple[float, list[Any]]]:
        self._send_appends()
        self.direct += 1
        return self.state.entries(key)

    def remove_entries(self, key: str, entries: Sequence[tuple[float, Sequence[Any]]]) -> None:
        self._send_appends()
        self.direct += 1
        self.state.remove_entries(key, entries)

    # -- subject aggregates ------------------------------------------------------------------------

    def fold_subject(
        self,
        key: str,
        t: float,
        windows: tuple[float, ...],
        ttl: float,
        outcome: int,
        members: tuple[str | None, ...] = (),
        *,
        label: str | None = None,
        primary_key: str | None = None,
        service: str | None = None,
        success: tuple[str | None, str | None] | None = None,
    ) -> None:
        step = Fold(key, t, windows, ttl, outcome, members, label, primary_key, service, success)
        if step not in self.answers:
            self.direct += 1
            step.run(self.state)

    def read_subject(
        self,
        key: str,
        t: float | None,
        windows: tuple[float, ...] = (),
        limits: tuple[int, ...] = (),
    ) -> SubjectView | None:
        self.direct += 1
        return self.state.read_subject(key, t, windows, limits)

    def apply(self, steps: Sequence[Step]) -> list[Any]:
        self.direct += 1
        return self.state.apply(steps)
