"""Decisions, the allowlist and their audit log held in this process (the memory and SQLite stores).

:class:`DecisionBook` implements :class:`~usermon.processor.storage.base.DecisionStore` on
dictionaries. Every change (a decision added or removed, an allowlist entry added or removed) takes
the next sequence number and is appended to a bounded log (:data:`MAX_LOG`, oldest dropped), which
is both the audit log and what the decision stream reads from a cursor; a cursor older than the
log's first entry gets ``None`` (the reader takes the full set). A store that keeps the book on
disk passes a ``persist`` callback, called with each change before it is applied in memory, so a
change the disk refused is not applied either. Decisions that ended (expired or removed) more
than :data:`DECISION_RETENTION` ago are forgotten (:meth:`DecisionBook.purge`), by such a store
on disk first (its ``discard`` callback); their audit entries stay in the log.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from usermon.processor.model import Decision
from usermon.processor.storage.base import AllowEntry, AuditEntry, DecisionChanges
from usermon.processor.storage.errors import StoreError

__all__ = [
    "DECISION_RETENTION",
    "MAX_DECISIONS_KEPT",
    "MAX_LOG",
    "PURGE_INTERVAL",
    "DecisionBook",
    "Discard",
    "HeldDecisions",
    "Persist",
    "PurgeSchedule",
]

logger = logging.getLogger(__name__)

MAX_LOG = 100_000
"""Changes kept in the log (audit and stream); a cursor older than them gets the full set."""

MAX_DECISIONS_KEPT = 200_000
"""Decisions kept, active or not; beyond, inactive ones are forgotten oldest first (escalation
then counts fewer repeats for them)."""

DECISION_RETENTION = 30 * 86_400.0
"""Seconds a store keeps a decision after it ended (its ``until`` passed, or it was removed);
then the store deletes it. Its entries in the audit log stay (the log is bounded by
:data:`MAX_LOG`, not by this). Escalation counts decisions created within the rules'
``recidive_window``: a window longer than this counts only the decisions still kept."""

PURGE_INTERVAL = 3600.0
"""A store deletes the decisions past :data:`DECISION_RETENTION` when it adds decisions, at most
this often (seconds, per process; the first time it adds after it opened, always)."""


class PurgeSchedule:
    """When a store deletes the decisions past :data:`DECISION_RETENTION`: after it adds
    decisions, the first time since it opened and then at most every :data:`PURGE_INTERVAL`. A
    purge that fails is logged and waits its turn: the decisions it followed were added."""

    def __init__(self) -> None:
        self._last: float | None = None

    def ran(self) -> None:
        """A purge starts now (by schedule or asked for)."""
        self._last = time.monotonic()

    def after_adding(self, purge: Callable[[], object]) -> None:
        if self._last is not None and time.monotonic() - self._last < PURGE_INTERVAL:
            return
        try:
            purge()
        except StoreError as exc:
            logger.warning("cannot delete decisions past their retention: %s", exc)


Discard = Callable[[Sequence[str]], None]
"""Called with the ids of decisions being forgotten, before they are forgotten in memory."""

Persist = Callable[[AuditEntry, dict[str, Any]], None]
"""Called with each change and what it changes (``decision`` row, ``removed`` time, or the
allowlist ``entry``), before it applies in memory."""


class DecisionBook:
    """The decisions of one store in this process (see the module docstring)."""

    def __init__(
        self,
        epoch: str | None = None,
        persist: Persist | None = None,
        discard: Discard | None = None,
    ) -> None:
        self.epoch = epoch or uuid.uuid4().hex
        self.persist = persist
        self.discard = discard
        self.purges = PurgeSchedule()
        self.seq = 0
        self.items: dict[str, Decision] = {}
        self.removed: dict[str, float] = {}  # id -> when
        # (scope, value) -> ids: what the service asks for every finding it answers
        self.by_subject: dict[tuple[str, str], list[str]] = {}
        # finding id -> ids: what the findings API asks for every finding it lists
        self.by_finding: dict[str, list[str]] = {}
        self.allowed: dict[tuple[str, str], AllowEntry] = {}
        self.log: deque[AuditEntry] = deque(maxlen=MAX_LOG)
        self.lock = threading.RLock()  # the engine's thread and the API's threads share it

    # -- loading (a store that kept the book on disk) ---------------------------------------------

    def load(
        self,
        seq: int,
        decisions: Sequence[tuple[Decision, float | None]],
        allowed: Sequence[AllowEntry],
        log: Sequence[AuditEntry],
    ) -> None:
        self.seq = seq
        for decision, removed in decisions:
            self._index(decision)
            if removed is not None:
                self.removed[decision.id] = removed
        for entry in allowed:
            self.allowed[(entry.kind, entry.value)] = entry
        self.log.extend(log)

    # -- changes ----------------------------------------------------------------------------------

    def _change(self, op: str, subject: str, who: str, at: float, detail: str) -> AuditEntry:
        return AuditEntry(self.seq + 1, op, subject, who, at, detail)

    def _commit(self, entry: AuditEntry, payload: dict[str, Any]) -> None:
        if self.persist is not None:
            self.persist(entry, payload)
        self.seq = entry.seq
        self.log.append(entry)

    def decision_epoch(self) -> str:
        return self.epoch

    def add_decisions(self, decisions: Sequence[Decision], who: str) -> list[Decision]:
        added = []
        for decision in decisions:
            if decision.id in self.items:
                continue
            detail = f"{decision.action} {decision.scope} {decision.value}: {decision.reason}"
            entry = self._change("add", decision.id, who, decision.created, detail)
            self._commit(entry, {"decision": decision})
            self._index(decision)
            added.append(decision)
        if len(self.items) > MAX_DECISIONS_KEPT:
            self._forget()
        if added:
            self.purges.after_adding(self.purge)
        return added

    def purge(self, now: float | None = None) -> list[str]:
        """Forget the decisions that ended more than :data:`DECISION_RETENTION` before ``now``
        (the clock by default), on disk first through ``discard``; returns their ids."""
        self.purges.ran()
        before = (time.time() if now is None else now) - DECISION_RETENTION
        ended = [
            d.id
            for d in self.items.values()
            if min(d.until, self.removed.get(d.id, d.until)) < before
        ]
        if ended:
            if self.discard is not None:
                self.discard(ended)
            for decision_id in ended:
                self._unindex(self.items[decision_id])
        return ended

    def _index(self, decision: Decision) -> None:
        self.items[decision.id] = decision
        self.by_subject.setdefault((decision.scope, decision.value), []).append(decision.id)
        if decision.finding is not None:
            self.by_finding.setdefault(decision.finding, []).append(decision.id)

    def _unindex(self, decision: Decision) -> None:
        del self.items[decision.id]
        self.removed.pop(decision.id, None)
        subject = (decision.scope, decision.value)
        _drop(self.by_subject, subject, decision.id)
        if decision.finding is not None:
            _drop(self.by_finding, decision.finding, decision.id)

    def _forget(self) -> None:
        gone = sorted(
            (d for d in self.items.values() if d.id in self.removed), key=lambda d: d.created
        )
        for decision in gone[: len(self.items) - MAX_DECISIONS_KEPT]:
            self._unindex(decision)

    def remove_decisions(self, ids: Sequence[str], who: str, now: float | None = None) -> list[str]:
        at = time.time() if now is None else now
        done = []
        for decision_id in ids:
            if decision_id not in self.items or decision_id in self.removed:
                continue
            entry = self._change("remove", decision_id, who, at, "")
            self._commit(entry, {"removed": at})
            self.removed[decision_id] = at
            done.append(decision_id)
        return done

    def set_allowed(self, kind: str, value: str, who: str, *, allowed: bool = True) -> bool:
        key = (kind, value)
        if (key in self.allowed) == allowed:
            return False
        at = time.time()
        allow = AllowEntry(kind, value, who, at)
        entry = self._change("allow" if allowed else "unallow", f"{kind}:{value}", who, at, "")
        self._commit(entry, {"entry": allow})
        if allowed:
            self.allowed[key] = allow
        else:
            del self.allowed[key]
        return True

    # -- reading ----------------------------------------------------------------------------------

    def decisions(
        self,
        *,
        now: float,
        include_inactive: bool = False,
        scope: str | None = None,
        value: str | None = None,
        finding: str | None = None,
        ids: Sequence[str] | None = None,
        limit: int = 1000,
    ) -> list[Decision]:
        pool: Iterable[Decision] = self.items.values()
        if ids is not None:
            pool = [self.items[i] for i in dict.fromkeys(ids) if i in self.items]
        elif scope is not None and value is not None:
            pool = [self.items[i] for i in self.by_subject.get((scope, value), ())]
        elif finding is not None:
            pool = [self.items[i] for i in self.by_finding.get(finding, ())]
        out = [
            d
            for d in pool
            if (include_inactive or (d.id not in self.removed and d.until > now))
            and (scope is None or d.scope == scope)
            and (value is None or d.value == value)
            and (finding is None or d.finding == finding)
        ]
        out.sort(key=lambda d: (-d.created, d.id))
        return out[:limit]

    def count_decisions(self, scope: str, value: str, since: float) -> int:
        ids = self.by_subject.get((scope, value), ())
        return sum(1 for i in ids if self.items[i].created >= since)

    def decision_sequence(self) -> int:
        return self.seq

    def decision_changes(self, after: int, now: float) -> DecisionChanges | None:
        if after > self.seq or (self.log and after < self.log[0].seq - 1):
            return None
        if not self.log and after != self.seq:
            return None
        new: dict[str, Decision] = {}
        deleted: list[str] = []
        for entry in self.log:
            if entry.seq <= after:
                continue
            if entry.op == "add":
                decision = self.items.get(entry.subject)
                if (
                    decision is not None
                    and entry.subject not in self.removed
                    and decision.until > now
                ):
                    new[decision.id] = decision
            elif entry.op == "remove":
                new.pop(entry.subject, None)
                deleted.append(entry.subject)
        return DecisionChanges(self.seq, list(new.values()), deleted)

    def allowlist(self) -> list[AllowEntry]:
        return sorted(self.allowed.values(), key=lambda e: (e.kind, e.value))

    def audit(self, limit: int = 100) -> list[AuditEntry]:
        return list(reversed(self.log))[:limit]


def _drop(index: dict[Any, list[str]], key: Any, decision_id: str) -> None:
    ids = index.get(key, [])
    if decision_id in ids:
        ids.remove(decision_id)
    if not ids:
        index.pop(key, None)


class HeldDecisions:
    """The :class:`~usermon.processor.storage.base.DecisionStore` methods of a store whose
    decisions are a :class:`DecisionBook` in ``self._book``, each under the book's lock."""

    _book: DecisionBook

    def decision_epoch(self) -> str:
        with self._book.lock:
            return self._book.epoch

    def add_decisions(self, decisions: Sequence[Decision], who: str) -> list[Decision]:
        with self._book.lock:
            return self._book.add_decisions(decisions, who)

    def remove_decisions(self, ids: Sequence[str], who: str) -> list[str]:
        with self._book.lock:
            return self._book.remove_decisions(ids, who)

    def purge_decisions(self, now: float | None = None) -> list[str]:
        """Delete the decisions past :data:`DECISION_RETENTION` now (the store does it by
        itself as well); returns their ids."""
        with self._book.lock:
            return self._book.purge(now)

    def decisions(
        self,
        *,
        now: float,
        include_inactive: bool = False,
        scope: str | None = None,
        value: str | None = None,
        finding: str | None = None,
        ids: Sequence[str] | None = None,
        limit: int = 1000,
    ) -> list[Decision]:
        with self._book.lock:
            return self._book.decisions(
                now=now,
                include_inactive=include_inactive,
                scope=scope,
                value=value,
                finding=finding,
                ids=ids,
                limit=limit,
            )

    def count_decisions(self, scope: str, value: str, since: float) -> int:
        with self._book.lock:
            return self._book.count_decisions(scope, value, since)

    def decision_changes(self, after: int, now: float) -> DecisionChanges | None:
        with self._book.lock:
            return self._book.decision_changes(after, now)

    def decision_sequence(self) -> int:
        with self._book.lock:
            return self._book.seq

    def set_allowed(self, kind: str, value: str, who: str, *, allowed: bool = True) -> bool:
        with self._book.lock:
            return self._book.set_allowed(kind, value, who, allowed=allowed)

    def allowlist(self) -> list[AllowEntry]:
        with self._book.lock:
            return self._book.allowlist()

    def audit(self, limit: int = 100) -> list[AuditEntry]:
        with self._book.lock:
            return self._book.audit(limit)
