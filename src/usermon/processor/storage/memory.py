"""The ``memory://`` store: everything in this process, nothing durable (tests, demos).

This module also owns what the single-process stores share (:class:`InProcessStore`): the
:class:`~usermon.processor.storage.state.memory.MemoryState` (from which
:mod:`usermon.processor.profiles` reads the users' and addresses' profiles as of its watermark),
and findings held in a bounded map and merged with
:func:`~usermon.processor.findings.merge_finding`, and the decisions
(:class:`~usermon.processor.storage.decisions.DecisionBook`). ``memory://`` accepts ``?max_keys=N``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from usermon.processor.findings import merge_events, merge_finding
from usermon.processor.model import SEVERITY_RANK, Finding
from usermon.processor.storage.base import Health, IntakeReceipt
from usermon.processor.storage.decisions import DecisionBook, HeldDecisions
from usermon.processor.storage.errors import StoreError
from usermon.processor.storage.state.memory import DEFAULT_MAX_KEYS, MemoryState

__all__ = ["MAX_FINDINGS", "InProcessStore", "MemoryStore"]

MAX_FINDINGS = 100_000
"""Findings kept; beyond, the ones seen least recently are dropped first."""

MAX_RECORDED = 10_000
"""Batches whose findings were recorded that an in-process store remembers (the newest)."""


def url_options(url: str) -> dict[str, int]:
    """Integer options from a store URL's query string (``?max_keys=100000``)."""
    out: dict[str, int] = {}
    for name, values in parse_qs(urlsplit(url).query).items():
        if name != "max_keys":
            raise StoreError(f"unknown store option {name!r} (known: max_keys)")
        try:
            out[name] = int(values[-1])
        except ValueError:
            raise StoreError(f"store option {name} must be an integer") from None
    return out


class InProcessStore(HeldDecisions):
    """The part of a store that lives in this process's memory (decisions included)."""

    def __init__(self, url: str, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self.url = url
        self._state = MemoryState(max_keys=max_keys)
        self._findings: dict[str, Finding] = {}
        self._recorded: dict[int, set[str]] = {}  # batch -> its events recorded (bounded)
        self._position = 0
        self._book = DecisionBook()

    @property
    def state(self) -> MemoryState:
        return self._state

    # -- findings ----------------------------------------------------------------------------------

    def record_batch(self, batch: int, found: Mapping[str, Sequence[Finding]]) -> list[Finding]:
        # Only a batch processed again in this process could come twice (a replay comes after
        # a restart, with the findings as of the checkpoint and no marks): a few batches do.
        done = self._recorded.setdefault(batch, set())
        if len(self._recorded) > MAX_RECORDED:
            del self._recorded[next(iter(self._recorded))]
        deltas = merge_events(found, done)
        if deltas:
            self.record_findings(deltas)
        done.update(found)
        return deltas

    def record_findings(self, deltas: Sequence[Finding]) -> None:
        findings = self._findings
        for delta in deltas:
            findings[delta.id] = merge_finding(findings.get(delta.id), delta)
        if len(findings) > MAX_FINDINGS:
            oldest = sorted(findings.values(), key=lambda f: f.last_seen)
            for f in oldest[: len(findings) - MAX_FINDINGS]:
                del findings[f.id]

    def findings(
        self,
        *,
        kind: str | None = None,
        severity: str | None = None,
        since: float | None = None,
        subject: str | None = None,
        limit: int = 100,
    ) -> list[Finding]:
        floor = SEVERITY_RANK[severity] if severity is not None else 0
        out = [
            f
            for f in self._findings.values()
            if (kind is None or f.kind == kind)
            and SEVERITY_RANK[f.severity] >= floor
            and (since is None or f.last_seen >= since)
            and (subject is None or subject in (f.subject.id, f.subject.label))
        ]
        out.sort(key=lambda f: f.last_seen, reverse=True)
        return out[:limit]

    def finding(self, finding_id: str) -> Finding | None:
        return self._findings.get(finding_id)


class MemoryStore(InProcessStore):
    """``memory://``: nothing survives the process; intake is only counted."""

    def __init__(self, url: str = "memory://", **options: Any) -> None:
        super().__init__(url, **{**url_options(url), **options})

    def intake(self, blob: bytes, count: int) -> IntakeReceipt:
        self._position += 1
        return IntakeReceipt(self._position, count)

    def pending(self) -> Iterable[tuple[int, bytes]]:
        return ()

    def checkpoint(self, position: int, engine_snapshot: bytes) -> None:
        """Nothing to make durable."""

    def load_checkpoint(self) -> tuple[int, bytes | None]:
        return 0, None

    def health(self) -> Health:
        return Health(True, {"store": "ok"})

    def close(self) -> None:
        """Nothing to release."""
