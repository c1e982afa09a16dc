"""The interface every detector implements.

A detector is one small class with one job. It sees each enriched event once, in event-time
order per key (best effort: events may be late within the engine's lateness), reads and writes
its own counters through :class:`~usermon.processor.storage.state.base.State`, and returns the
signals that event raises. It does no I/O of its own and keeps no state outside ``state``, so
several processor replicas sharing one state backend reach the same verdicts, and a test can drive
it with a list of events and a :class:`~usermon.processor.storage.state.memory.MemoryState`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final, Protocol, runtime_checkable

from usermon.processor.model import Event, Signal
from usermon.processor.storage.state.base import State
from usermon.processor.storage.state.steps import Step


class Detector(Protocol):
    name: str
    """Stable name, used in the rules file's section for this detector."""

    def observe(self, event: Event, state: State) -> Iterable[Signal]:
        """Update this detector's state with ``event``; return the signals it raises (often
        none). Must not raise for any well-formed event."""
        ...


OUTCOMES: Final = ("success", "failure", "signup")
"""What an event is, to :class:`Selective`: a successful login, a failed one, a signup."""


def outcome_of(event: Event) -> str:
    """The :data:`OUTCOMES` entry of ``event``."""
    return "signup" if event.kind == "signup" else "success" if event.success else "failure"


@runtime_checkable
class Selective(Protocol):
    """A detector that sees only some outcomes (:func:`outcome_of`): for an event of another,
    :meth:`Detector.observe` and :meth:`Planned.plan` return nothing and change nothing, so
    the engine does not call them."""

    outcomes: frozenset[str]


@runtime_checkable
class Planned(Protocol):
    """A detector that declares, from the event alone, the State steps :meth:`Detector.observe`
    will make for it, so that the engine runs them with the event's other steps (one script
    per event on Redis) and ``observe`` finds their results there. Every write ``observe``
    makes for the event must be declared (it is made once, by the plan); reads may be declared
    whether or not ``observe`` makes them."""

    def plan(self, event: Event) -> Sequence[Step]: ...


@runtime_checkable
class PlannedAfter(Protocol):
    """A detector whose writes depend on what the plan read (suspicious login learns a path
    from the user's profile): declared once the event's plan has run, reading through
    ``state`` (which answers the plan's reads), and run in a second pipelined step."""

    def plan_after(self, event: Event, state: State) -> Sequence[Step]: ...

    def writes_after(self, event: Event) -> Sequence[str]:
        """The keys :meth:`plan_after` may write for ``event``: a later event of the same
        round trip that reads one of them waits for the next."""
        ...
