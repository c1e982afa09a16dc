"""State steps: one State primitive call written down as a value, so that an event's steps can be
declared before they run and run together (:meth:`~usermon.processor.storage.state.base.State.
apply`). Each step is a small hashable record of a call's arguments, never changed once made
(not frozen: a frozen dataclass costs twice as much to build, and plans build a dozen steps per
event); :meth:`Step.run` makes the call on a state, and two steps are equal when they are the
same call, which is how the engine hands a detector the result of the step it declared
(docs/processor.md, *Planned steps*). A :class:`Claim` is the event's dedupe claim: unless it
answers :data:`CLAIMED`, the steps after it do not run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from usermon.processor.storage.state.base import State, SubjectView

__all__ = [
    "CLAIMED",
    "OWN",
    "TAKEN",
    "AddDistinct",
    "AddWindows",
    "Append",
    "Claim",
    "Count",
    "DistinctCount",
    "Episode",
    "Fields",
    "Fold",
    "Get",
    "IncrFields",
    "Keep",
    "Step",
    "record_json",
    "run_steps",
]


TAKEN: Final = 0
"""A :class:`Claim`'s answer: another report of the event (another batch) holds its claim."""
CLAIMED: Final = 1
"""A :class:`Claim`'s answer: this report now holds the event's claim."""
OWN: Final = 3
"""A :class:`Claim`'s answer: this same batch (``owner``) already holds the claim: a replay of a
journaled batch whose first run claimed the event (docs/processor.md, *Findings*)."""


@dataclass(slots=True, unsafe_hash=True)
class Claim:
    """Claim the event whose dedupe key is ``key`` in the dedupe map ``bucket`` for ``owner``
    (a journaled batch's position; 0 for none, which never owns a claim). The field holds
    ``owner + 1`` while claimed (1 for no owner), 0 or nothing while free (a claim given back
    is 0). Result: :data:`CLAIMED`, :data:`TAKEN` or :data:`OWN`; a refused claim leaves the
    field as it was."""

    bucket: str
    key: str
    t: float
    ttl: float
    owner: int = 0

    def run(self, state: State) -> int:
        # Two counting-map steps, atomic on a state in this process (RedisState runs its own
        # script instead): add the claim's value, which gives it back when the field was not
        # free, and read who held it from what the field then holds.
        value = self.owner + 1
        held = state.incr_fields(self.bucket, {self.key: value}, self.t, self.ttl)[0] - value
        if held == 0:
            return CLAIMED
        state.incr_fields(self.bucket, {self.key: -value}, self.t, self.ttl)
        return OWN if self.owner and held == value else TAKEN


@dataclass(slots=True, unsafe_hash=True)
class AddWindows:
    """:meth:`State.add_windows`; :meth:`State.add` is the same step with one window."""

    key: str
    t: float
    windows: tuple[float, ...]
    n: int = 1

    def run(self, state: State) -> tuple[int, ...]:
        return state.add_windows(self.key, self.t, self.windows, self.n)


@dataclass(slots=True, unsafe_hash=True)
class AddDistinct:
    key: str
    member: str
    t: float
    window: float

    def run(self, state: State) -> int:
        return state.add_distinct(self.key, self.member, self.t, self.window)


@dataclass(slots=True, unsafe_hash=True)
class Count:
    key: str
    t: float
    window: float

    def run(self, state: State) -> int:
        return state.count(self.key, self.t, self.window)


@dataclass(slots=True, unsafe_hash=True)
class DistinctCount:
    key: str
    t: float
    window: float

    def run(self, state: State) -> int:
        return state.distinct_count(self.key, self.t, self.window)


@dataclass(slots=True, unsafe_hash=True)
class IncrFields:
    """:meth:`State.incr_fields` (``fields`` as ``(field, n)`` pairs, in order);
    :meth:`State.incr_field` is the same step with one field."""

    key: str
    fields: tuple[tuple[str, int], ...]
    t: float
    ttl: float

    @classmethod
    def of(cls, key: str, fields: Mapping[str, int], t: float, ttl: float) -> IncrFields:
        return cls(key, tuple(fields.items()), t, ttl)

    def run(self, state: State) -> list[int]:
        return state.incr_fields(self.key, dict(self.fields), self.t, self.ttl)


@dataclass(slots=True, unsafe_hash=True)
class Fields:
    key: str

    def run(self, state: State) -> dict[str, int]:
        return state.fields(self.key)


@dataclass(slots=True, unsafe_hash=True)
class Get:
    key: str

    def run(self, state: State) -> dict[str, Any] | None:
        return state.get(self.key)


@dataclass(slots=True, unsafe_hash=True)
class Fold:
    """:meth:`State.fold_subject`. With ``read`` (the sets' limits), the subject is then read
    back as of its newest event (:meth:`State.read_subject` with the fold's windows) and that
    view is the result; ``read`` is no part of what the step is (equality, hash), so a fold
    asked to read back still answers the call that made it."""

    key: str
    t: float
    windows: tuple[float, ...]
    ttl: float
    outcome: int
    members: tuple[str | None, ...] = ()
    label: str | None = None
    primary_key: str | None = None
    service: str | None = None
    success: tuple[str | None, str | None] | None = None
    read: tuple[int, ...] | None = field(default=None, compare=False)

    def run(self, state: State) -> SubjectView | None:
        state.fold_subject(
            self.key,
            self.t,
            self.windows,
            self.ttl,
            self.outcome,
            self.members,
            label=self.label,
            primary_key=self.primary_key,
            service=self.service,
            success=self.success,
        )
        if self.read is None:
            return None
        return state.read_subject(self.key, None, self.windows, self.read)


def record_json(value: Mapping[str, Any]) -> str:
    """A record (or a kept map's field) as the state stores it: compact JSON."""
    return json.dumps(dict(value), separators=(",", ":"))


@dataclass(slots=True, unsafe_hash=True)
class Episode:
    """:meth:`State.open_episode` (``opening`` as its items, in order). Result: the episode's
    record and whether this step opened it."""

    key: str
    opening: tuple[tuple[str, Any], ...]
    t: float
    gap: float
    ttl: float

    def run(self, state: State) -> tuple[dict[str, Any], bool]:
        return state.open_episode(self.key, dict(self.opening), self.t, self.gap, self.ttl)


@dataclass(slots=True, unsafe_hash=True)
class Keep:
    """:meth:`State.keep`, the value as its JSON text (:func:`record_json`), which is what the
    state stores. Result: None."""

    key: str
    field: str
    value: str
    t: float
    ttl: float

    def run(self, state: State) -> None:
        state.keep(self.key, self.field, json.loads(self.value), self.t, self.ttl)


@dataclass(slots=True, unsafe_hash=True)
class Append:
    """:meth:`State.append_entry`, the entry as its JSON text
    (:func:`~usermon.processor.storage.state.base.entry_json`). Result: None."""

    key: str
    entry: str
    t: float
    window: float
    cap: int

    def run(self, state: State) -> None:
        state.append_entry(self.key, json.loads(self.entry), self.t, self.window, self.cap)


Step = (
    Claim
    | AddWindows
    | AddDistinct
    | Count
    | DistinctCount
    | IncrFields
    | Fields
    | Get
    | Fold
    | Episode
    | Keep
    | Append
)


def run_steps(state: State, steps: Sequence[Step]) -> list[Any]:
    """:meth:`State.apply` as direct calls, in order (what a state in this process does): one
    result per step, and none after a :class:`Claim` that did not answer :data:`CLAIMED`."""
    results: list[Any] = []
    for step in steps:
        result = step.run(state)
        results.append(result)
        if step.__class__ is Claim and result != CLAIMED:
            break
    return results
