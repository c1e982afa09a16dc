"""The ``redis://`` store: everything in one Redis, shared by processor replicas.

This module owns the Redis layout of a deployment that wants no PostgreSQL: the windowed state is
a :class:`~usermon.processor.storage.state.redis.RedisState`; next to it, under the same prefix,

* the **intake journal**, one per replica: ``<p>journal:<replica>`` (a hash position → batch) and
  ``<p>journal-index:<replica>`` (a sorted set of positions), written by one script per batch
  with positions from ``<p>journal:seq``; :meth:`RedisStore.checkpoint` deletes what the replica
  processed, and a replica that starts adopts the journal of every replica whose heartbeat in
  ``<p>replicas`` (a sorted set, renewed every ``lease / 3`` seconds) is older than the lease;
* **findings**, one JSON string per finding (``<p>finding:<id>``) merged by id under
  ``WATCH``/``MULTI`` with :func:`~usermon.processor.findings.merge_finding`, indexed by
  ``last_seen`` in ``<p>findings``; a batch's in one transaction with the set of its events
  recorded, ``<p>recorded:<position>`` (deleted by the checkpoint that covers the batch);
* **decisions** (the store is a :class:`~usermon.processor.storage.base.DecisionStore`): rows in
  ``<p>decisions``, removal times in ``<p>decisions-removed``, the allowlist in ``<p>allowlist``,
  an index per subject (``<p>decisions-by:<scope>|<value>``) and the change log
  (``<p>decision-log``, numbered by ``<p>decision-seq``), the decisions of each finding
  (``<p>decisions-of:<finding id>``), each change by one script
  (``lua/decision.lua``); decisions past their retention are deleted with their index entries;
* an index of users and addresses by ``last_seen`` (``<p>users``, ``<p>ips``), capped at
  ``max_profiles`` each (the store is an :class:`~usermon.processor.storage.base.ActivityIndex`);
  the profiles themselves are read from the state when asked (:mod:`usermon.processor.profiles`).

Durability is Redis' own: run it with ``appendonly yes`` (``appendfsync always`` to survive a
power loss, ``everysec`` loses at most a second of acknowledged batches). URL:
``redis://[[user]:password@]host[:port][/db]?prefix=usermon:&replica=NAME&lease=30``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis
import redis.exceptions
from redis.commands.core import Script

from usermon.processor.findings import merge_events, merge_finding
from usermon.processor.model import SEVERITY_RANK, Decision, Finding
from usermon.processor.storage.base import (
    AllowEntry,
    AuditEntry,
    DecisionChanges,
    Health,
    IntakeReceipt,
    redact,
)
from usermon.processor.storage.decisions import DECISION_RETENTION, MAX_LOG, PurgeSchedule
from usermon.processor.storage.errors import StoreError
from usermon.processor.storage.redis_common import lua_script, unavailable_as_store_error
from usermon.processor.storage.repair import scrub
from usermon.processor.storage.state.base import State
from usermon.processor.storage.state.redis import DEFAULT_PREFIX, RedisState

__all__ = ["RedisStore"]

log = logging.getLogger(__name__)

DEFAULT_LEASE = 30.0
DEFAULT_MAX_PROFILES = 1_000_000
RECORDED_TTL = 86_400
"""Seconds the set of a batch's events whose findings are recorded outlives its batch at most
(the checkpoint that removes the batch from the journal deletes it)."""
_OUR_OPTIONS = {"prefix", "replica", "lease", "max_profiles"}


def _finding_to_json(f: Finding) -> str:
    return json.dumps(f.to_json(), separators=(",", ":"))


def _finding_from_json(raw: str) -> Finding:
    loaded = json.loads(raw)
    # A "\ud800" escape reads back as a lone surrogate: walked only when the text has an escape
    # of a surrogate (ours are ASCII-only; what the client reads that is not UTF-8 is U+FFFD).
    if "\\ud" in raw or "\\uD" in raw:
        loaded = scrub(loaded)
    return Finding.from_json(loaded)


class RedisStore:
    """The ``redis://`` store (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str | None = None,
        replica: str | None = None,
        lease: float | None = None,
        max_profiles: int | None = None,
        max_keys: int | None = None,  # accepted for symmetry; Redis' maxmemory bounds the state
        **options: Any,
    ) -> None:
        if options:
            raise StoreError(f"unknown redis store options: {', '.join(sorted(options))}")
        self.url = redact(url)
        parts = urlsplit(url)
        ours = dict(parse_qsl(parts.query))
        rest = [(k, v) for k, v in parse_qsl(parts.query) if k not in _OUR_OPTIONS]
        client_url = parts._replace(query=urlencode(rest)).geturl()
        self.prefix = prefix or ours.get("prefix", DEFAULT_PREFIX)
        self.replica = (
            replica
            or ours.get("replica")
            or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        )
        try:
            self.lease = float(lease if lease is not None else ours.get("lease", DEFAULT_LEASE))
            self.max_profiles = int(
                max_profiles
                if max_profiles is not None
                else ours.get("max_profiles", DEFAULT_MAX_PROFILES)
            )
        except ValueError:
            raise StoreError("lease and max_profiles must be numbers") from None
        # What another writer left in Redis that is not UTF-8 reads as U+FFFD, and a lone
        # surrogate is written as "?": neither can fail a read or a batch.
        try:
            self._state = RedisState.from_url(
                client_url, prefix=self.prefix, encoding_errors="replace"
            )
        except ValueError as exc:  # a malformed URL
            raise StoreError(f"cannot open the store {self.url}: {exc}") from None
        self._redis = self._state.client
        try:
            self._state.ping()
        except StoreError as exc:
            raise StoreError(f"cannot open the store {self.url}: {exc}") from exc
        self._intake = self._script("intake.lua")
        self._checkpoint = self._script("checkpoint.lua")
        self._adopt = self._script("adopt.lua")
        self._heartbeat_script = self._script("heartbeat.lua")
        self._decision_script = self._script("decision.lua")
        self._purges = PurgeSchedule()  # of decisions past their retention
        self._redis.set(self._k("decision-epoch"), uuid.uuid4().hex, nx=True)
        self._beat_once()
        self._closing = threading.Event()
        self._heartbeat = threading.Thread(
            target=self._beat, name=f"usermon-heartbeat-{self.replica}", daemon=True
        )
        self._heartbeat.start()

    def _script(self, name: str) -> Script:
        """The script ``lua/<name>`` (see :mod:`usermon.processor.storage.redis_common`)."""
        return self._redis.register_script(lua_script("usermon.processor.storage", name))

    def _k(self, name: str) -> str:
        return f"{self.prefix}{name}"

    @unavailable_as_store_error
    def _beat_once(self) -> None:
        self._heartbeat_script(keys=[self._k("replicas")], args=[self.replica])

    def _beat(self) -> None:
        while not self._closing.wait(self.lease / 3):
            try:
                self._beat_once()
            except StoreError as exc:
                log.warning("usermon heartbeat failed (will retry): %s", exc)

    @property
    def state(self) -> State:
        return self._state

    # -- intake ------------------------------------------------------------------------------------

    @unavailable_as_store_error
    def intake(self, blob: bytes, count: int) -> IntakeReceipt:
        # Stored as latin-1 text: the client decodes responses, and latin-1 maps bytes 1:1.
        position = self._intake(
            keys=[
                self._k("journal:seq"),
                self._k(f"journal:{self.replica}"),
                self._k(f"journal-index:{self.replica}"),
            ],
            args=[blob.decode("latin-1")],
        )
        return IntakeReceipt(int(cast("int", position)), count)

    @unavailable_as_store_error
    def adopt_orphans(self) -> list[tuple[int, bytes]]:
        """Take over the unprocessed batches of every replica whose heartbeat is older than the
        lease, and return exactly those, oldest first (see the PostgreSQL store's)."""
        flat = cast(
            "list[str]",
            self._adopt(keys=[self._k("replicas")], args=[self.prefix, self.replica, self.lease]),
        )
        adopted = sorted(
            (int(flat[i]), flat[i + 1].encode("latin-1")) for i in range(0, len(flat), 2)
        )
        if adopted:
            log.warning("adopted %d unprocessed batches of dead replicas", len(adopted))
        return adopted

    @unavailable_as_store_error
    def pending(self) -> Iterable[tuple[int, bytes]]:
        """This replica's unprocessed batches, after adopting those of dead replicas. Call it at
        startup, before taking new batches."""
        self.adopt_orphans()
        positions = cast(
            "list[str]", self._redis.zrange(self._k(f"journal-index:{self.replica}"), 0, -1)
        )
        if not positions:
            return []
        blobs = cast(
            "list[str | None]",
            self._redis.hmget(self._k(f"journal:{self.replica}"), positions),
        )
        return [
            (int(p), b.encode("latin-1"))
            for p, b in zip(positions, blobs, strict=True)
            if b is not None
        ]

    @unavailable_as_store_error
    def checkpoint(self, position: int, engine_snapshot: bytes) -> None:
        self._checkpoint(
            keys=[
                self._k(f"journal:{self.replica}"),
                self._k(f"journal-index:{self.replica}"),
                self._k(f"checkpoint:{self.replica}"),
            ],
            args=[position, engine_snapshot.decode("latin-1"), self._k("recorded:")],
        )

    @unavailable_as_store_error
    def load_checkpoint(self) -> tuple[int, bytes | None]:
        position, snapshot = cast(
            "list[str | None]",
            self._redis.hmget(self._k(f"checkpoint:{self.replica}"), ["position", "snapshot"]),
        )
        if position is None:
            return 0, None
        return int(position), None if snapshot is None else snapshot.encode("latin-1")

    # -- findings ----------------------------------------------------------------------------------

    @unavailable_as_store_error
    def record_findings(self, deltas: Sequence[Finding]) -> None:
        for delta in deltas:  # one finding per transaction: fewer retries under contention
            key = self._k(f"finding:{delta.id}")
            # Optimistic: another replica changing the finding in between makes us retry.
            with self._redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        pipe.watch(key)  # type: ignore[no-untyped-call]
                        self._merge(pipe, [key], [delta])
                        pipe.execute()
                        break
                    except redis.exceptions.WatchError:
                        continue

    @unavailable_as_store_error
    def record_batch(self, batch: int, found: Mapping[str, Sequence[Finding]]) -> list[Finding]:
        if not found:
            return []
        mark = self._k(f"recorded:{batch}")  # the set of the batch's events recorded
        with self._redis.pipeline(transaction=True) as pipe:
            while True:  # optimistic, as above, over the mark and the findings together
                try:
                    pipe.watch(mark)  # type: ignore[no-untyped-call]
                    done = cast("set[str]", pipe.smembers(mark))
                    new = [key for key in found if key not in done]
                    if not new:
                        pipe.unwatch()
                        return []
                    deltas = merge_events(found, done)
                    keys = [self._k(f"finding:{delta.id}") for delta in deltas]
                    if keys:
                        pipe.watch(*keys)  # type: ignore[no-untyped-call]
                    self._merge(pipe, keys, deltas)
                    pipe.sadd(mark, *new)
                    # Deleted by the checkpoint that covers the batch; the expiry only bounds
                    # what a journal never checkpointed would leave.
                    pipe.expire(mark, RECORDED_TTL)
                    pipe.execute()
                    return deltas
                except redis.exceptions.WatchError:
                    continue

    def _merge(self, pipe: Any, keys: Sequence[str], deltas: Sequence[Finding]) -> None:
        """Read the watched findings ``keys``, then queue (MULTI) each merged with its delta."""
        raws = cast("list[str | None]", pipe.mget(keys)) if keys else []
        merged = [
            merge_finding(None if raw is None else _finding_from_json(raw), delta)
            for raw, delta in zip(raws, deltas, strict=True)
        ]
        pipe.multi()
        for key, finding in zip(keys, merged, strict=True):
            pipe.set(key, _finding_to_json(finding))
            pipe.zadd(self._k("findings"), {finding.id: finding.last_seen})

    @unavailable_as_store_error
    def findings(
        self,
        *,
        kind: str | None = None,
        severity: str | None = None,
        since: float | None = None,
        subject: str | None = None,
        limit: int = 100,
    ) -> list[Finding]:
        if severity is not None and severity not in SEVERITY_RANK:
            raise StoreError(f"unknown severity {severity!r}")
        floor = SEVERITY_RANK[severity] if severity is not None else 0
        low = "-inf" if since is None else repr(float(since))
        out: list[Finding] = []
        offset, chunk = 0, 500
        while len(out) < limit:
            ids = cast(
                "list[str]",
                self._redis.zrevrangebyscore(
                    self._k("findings"), "+inf", low, start=offset, num=chunk
                ),
            )
            if not ids:
                break
            offset += len(ids)
            raws = cast(
                "list[str | None]", self._redis.mget([self._k(f"finding:{i}") for i in ids])
            )
            for raw in raws:
                if raw is None:
                    continue
                f = _finding_from_json(raw)
                if (
                    (kind is None or f.kind == kind)
                    and SEVERITY_RANK[f.severity] >= floor
                    and (subject is None or subject in (f.subject.id, f.subject.label))
                ):
                    out.append(f)
        out.sort(key=lambda f: (-f.last_seen, f.id))
        return out[:limit]

    @unavailable_as_store_error
    def finding(self, finding_id: str) -> Finding | None:
        raw = self._redis.get(self._k(f"finding:{finding_id}"))
        return None if raw is None else _finding_from_json(cast("str", raw))

    # -- decisions (DecisionStore) -----------------------------------------------------------------

    @unavailable_as_store_error
    def decision_epoch(self) -> str:
        return str(self._redis.get(self._k("decision-epoch")) or "")

    def _decision_change(
        self,
        op: str,
        subject: str,
        payload: str,
        who: str,
        at: float,
        detail: str,
        index: str,
        finding: str | None = None,
    ) -> int:
        keys = [
            self._k("decisions"),
            self._k("decision-log"),
            self._k("decision-seq"),
            self._k("allowlist"),
            self._k(f"decisions-by:{index}"),
            self._k("decisions-removed"),
            self._k(f"decisions-of:{finding or ''}"),
        ]
        args: list[str | int] = [
            op,
            subject,
            payload,
            who,
            repr(at),
            detail,
            MAX_LOG,
            finding or "",
        ]
        return int(cast("int", self._decision_script(keys=keys, args=args)))

    @unavailable_as_store_error
    def add_decisions(self, decisions: Sequence[Decision], who: str) -> list[Decision]:
        added = []
        for d in decisions:
            row = json.dumps(d.to_row(), separators=(",", ":"))
            detail = f"{d.action} {d.scope} {d.value}: {d.reason}"
            index = f"{d.scope}|{d.value}"
            if self._decision_change("add", d.id, row, who, d.created, detail, index, d.finding):
                added.append(d)
        if added:
            self._purges.after_adding(self.purge_decisions)
        return added

    @unavailable_as_store_error
    def purge_decisions(self, now: float | None = None) -> list[str]:
        """Delete the decisions that ended (expired or removed) more than DECISION_RETENTION
        before ``now`` (the clock by default), with their index entries, in one transaction;
        returns their ids. Their log entries stay. The store does it by itself when it adds
        decisions (PurgeSchedule)."""
        self._purges.ran()
        before = (time.time() if now is None else now) - DECISION_RETENTION
        ended = [
            d
            for d, removed_at in self._decisions_ended()
            if (d.until if removed_at is None else min(d.until, removed_at)) < before
        ]
        if ended:
            ids = [d.id for d in ended]
            pipe = self._redis.pipeline(transaction=True)
            pipe.hdel(self._k("decisions"), *ids)
            pipe.hdel(self._k("decisions-removed"), *ids)
            for d in ended:
                pipe.zrem(self._k(f"decisions-by:{d.scope}|{d.value}"), d.id)
                if d.finding is not None:
                    pipe.srem(self._k(f"decisions-of:{d.finding}"), d.id)
            pipe.execute()
        return sorted(d.id for d in ended)

    def _decisions_ended(self) -> list[tuple[Decision, float | None]]:
        """Every decision with its removal time (None: not removed)."""
        rows = cast("dict[str, str]", self._redis.hgetall(self._k("decisions")))
        gone = cast("dict[str, str]", self._redis.hgetall(self._k("decisions-removed")))
        return [
            (Decision.from_row(json.loads(raw)), float(gone[i]) if i in gone else None)
            for i, raw in rows.items()
        ]

    @unavailable_as_store_error
    def remove_decisions(self, ids: Sequence[str], who: str) -> list[str]:
        at = time.time()
        return [i for i in ids if self._decision_change("remove", i, "", who, at, "", "-")]

    def _decisions_of(self, ids: Sequence[str] | None) -> list[tuple[Decision, bool]]:
        """``(decision, removed)`` for these ids (every decision for ``None``)."""
        if ids is None:
            rows = cast("dict[str, str]", self._redis.hgetall(self._k("decisions")))
            gone = cast("dict[str, str]", self._redis.hgetall(self._k("decisions-removed")))
            return [(Decision.from_row(json.loads(raw)), i in gone) for i, raw in rows.items()]
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        raws = cast("list[str | None]", self._redis.hmget(self._k("decisions"), wanted))
        removed = cast("list[str | None]", self._redis.hmget(self._k("decisions-removed"), wanted))
        return [
            (Decision.from_row(json.loads(raw)), gone is not None)
            for raw, gone in zip(raws, removed, strict=True)
            if raw is not None
        ]

    @unavailable_as_store_error
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
        if scope is not None and value is not None and ids is None:
            # The service asks this for every finding it answers: the subject's index, not all.
            ids = cast(
                "list[str]", self._redis.zrange(self._k(f"decisions-by:{scope}|{value}"), 0, -1)
            )
        elif finding is not None and ids is None:  # the findings API, for every finding listed
            ids = sorted(cast("set[str]", self._redis.smembers(self._k(f"decisions-of:{finding}"))))
        out = [
            d
            for d, removed in self._decisions_of(ids)
            if (include_inactive or (not removed and d.until > now))
            and (scope is None or d.scope == scope)
            and (value is None or d.value == value)
            and (finding is None or d.finding == finding)
            and (ids is None or d.id in ids)
        ]
        out.sort(key=lambda d: (-d.created, d.id))
        return out[:limit]

    @unavailable_as_store_error
    def count_decisions(self, scope: str, value: str, since: float) -> int:
        key = self._k(f"decisions-by:{scope}|{value}")
        return int(self._redis.zcount(key, repr(float(since)), "+inf"))

    @unavailable_as_store_error
    def decision_sequence(self) -> int:
        return int(cast("str | None", self._redis.get(self._k("decision-seq"))) or 0)

    @unavailable_as_store_error
    def decision_changes(self, after: int, now: float) -> DecisionChanges | None:
        high = self.decision_sequence()
        if after > high or after < high - MAX_LOG:
            return None
        if after == high:
            return DecisionChanges(high, [], [])
        raws = cast(
            "list[str | None]",
            self._redis.hmget(self._k("decision-log"), list(range(after + 1, high + 1))),
        )
        if any(raw is None for raw in raws):
            return None  # trimmed meanwhile
        entries = [json.loads(cast("str", raw)) for raw in raws]
        wanted = [e[1] for e in entries if e[0] == "add"]
        rows = cast(
            "list[str | None]", self._redis.hmget(self._k("decisions"), wanted) if wanted else []
        )
        removed = cast(
            "list[str | None]",
            self._redis.hmget(self._k("decisions-removed"), wanted) if wanted else [],
        )
        found = {
            i: Decision.from_row(json.loads(raw))
            for i, raw, gone in zip(wanted, rows, removed, strict=True)
            if raw is not None and gone is None
        }
        new: dict[str, Decision] = {}
        deleted: list[str] = []
        for op, subject, *_ in entries:
            if op == "add" and subject in found and found[subject].until > now:
                new[subject] = found[subject]
            elif op == "remove":
                new.pop(subject, None)
                deleted.append(subject)
        return DecisionChanges(high, list(new.values()), deleted)

    @unavailable_as_store_error
    def set_allowed(self, kind: str, value: str, who: str, *, allowed: bool = True) -> bool:
        at = time.time()
        entry = json.dumps([kind, value, who, at])
        op = "allow" if allowed else "unallow"
        return bool(self._decision_change(op, f"{kind}:{value}", entry, who, at, "", "-"))

    @unavailable_as_store_error
    def allowlist(self) -> list[AllowEntry]:
        rows = cast("dict[str, str]", self._redis.hgetall(self._k("allowlist")))
        entries = [AllowEntry(*json.loads(raw)) for raw in rows.values()]
        return sorted(entries, key=lambda e: (e.kind, e.value))

    @unavailable_as_store_error
    def audit(self, limit: int = 100) -> list[AuditEntry]:
        high = self.decision_sequence()
        seqs = list(range(high, max(0, high - limit), -1))
        raws = cast(
            "list[str | None]", self._redis.hmget(self._k("decision-log"), seqs) if seqs else []
        )
        return [
            AuditEntry(seq, e[0], e[1], e[2], float(e[3]), e[4])
            for seq, raw in zip(seqs, raws, strict=True)
            if raw is not None
            for e in [json.loads(raw)]
        ]

    # -- activity index (ActivityIndex) ------------------------------------------------------------

    @unavailable_as_store_error
    def index_activity(self, users: Mapping[str, float], ips: Mapping[str, float]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for index, scores in (("users", users), ("ips", ips)):
            if scores:
                pipe.zadd(self._k(index), dict(scores), gt=True)  # last_seen only moves forward
                pipe.zremrangebyrank(self._k(index), 0, -self.max_profiles - 1)
        pipe.execute()

    def recent_users(self, *, since: float | None = None, limit: int = 100) -> list[str]:
        return self._recent("users", since, limit)

    def recent_ips(self, *, since: float | None = None, limit: int = 100) -> list[str]:
        return self._recent("ips", since, limit)

    @unavailable_as_store_error
    def _recent(self, index: str, since: float | None, limit: int) -> list[str]:
        low = "-inf" if since is None else repr(float(since))
        return cast(
            "list[str]",
            self._redis.zrevrangebyscore(self._k(index), "+inf", low, start=0, num=limit),
        )

    # -- lifecycle ---------------------------------------------------------------------------------

    def health(self) -> Health:
        try:
            self._state.ping()
        except StoreError as exc:
            return Health(False, {"redis": f"down: {exc}"})
        return Health(True, {"redis": "ok"})

    def close(self) -> None:
        self._closing.set()
        self._heartbeat.join(timeout=5.0)
        self._redis.close()

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r}, replica={self.replica!r})"
