"""The engine: events in, aggregates and findings out, with no I/O of its own. It owns the
processing of one batch of decoded events: drop the ones too late or from the future, drop the
ones already seen (deduplication lives in the shared :class:`State`, so replicas agree), enrich
the client address, fold the event into the per-user and per-IP aggregates, run every detector,
and fold their signals into findings, returned as deltas a store merges by id. A
:class:`~usermon.processor.storage.errors.StoreError` propagates (the receiver answers 503); any
other detector exception is logged and counted. docs/processor.md (*Ingest*, *Findings*) gives
the rules: lateness, dedupe claims and what a failure gives back, finding episodes.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from usermon.processor.aggregation import (
    aggregate,
    aggregation_steps,
    profile_read,
    subject_keys,
)
from usermon.processor.detectors.base import (
    OUTCOMES,
    Detector,
    Planned,
    PlannedAfter,
    Selective,
    outcome_of,
)
from usermon.processor.findings import (
    FINDING_GAP,
    evidence_union,
    finding_id,
    kept_key,
    merge_finding,
)
from usermon.processor.model import Event, Finding, NetworkInfo, Signal, note_rejection
from usermon.processor.planning import READS, PlanView, run_plans
from usermon.processor.storage.errors import StoreError
from usermon.processor.storage.state.base import PipelinedState, State, SubjectView
from usermon.processor.storage.state.steps import Claim, Fold, Step

__all__ = [
    "DEDUPE_BUCKET",
    "DEFAULT_LATENESS",
    "FINDING_GAP",
    "MAX_FUTURE_SKEW",
    "Engine",
    "Enricher",
    "Outcome",
    "finding_id",
]

DEFAULT_LATENESS = 3600.0
"""How far behind the newest event an event may arrive and still be processed (seconds)."""

MAX_FUTURE_SKEW = 300.0
"""How far ahead of the host's clock an event's timestamp may be (seconds)."""

DEDUPE_BUCKET = 60.0
"""Width (seconds of event time) of one dedupe map ``d:<bucket>`` in the state."""

logger = logging.getLogger("usermon.processor")


class Enricher(Protocol):
    """What threat intelligence knows of an address (:mod:`usermon.processor.intel`)."""

    def lookup(self, ip: str) -> NetworkInfo | None: ...


@dataclass(slots=True)
class Outcome:
    """What one batch did."""

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)  # the first few rejection reasons
    findings: list[Finding] = field(default_factory=list)  # deltas, for Store.record_findings
    users: set[str] = field(default_factory=set)  # user hashes touched
    ips: set[str] = field(default_factory=set)  # addresses touched
    processed: list[Event] = field(default_factory=list)  # accepted: no duplicate, no reject
    batch: int = 0  # the journal position of the batch (0: none)
    # With a batch: what each event that found anything found, by its dedupe key (the same
    # deltas as in ``findings``, before they are merged), for Store.record_batch.
    found: dict[str, list[Finding]] = field(default_factory=dict)
    # Planned runs: touched subjects (u:<hash>, ip:<address>) as read after their batch's last
    # fold, for the profiles (one left out is read again when recorded).
    subjects: dict[str, SubjectView] = field(default_factory=dict)

    def reject(self, reason: str) -> None:
        self.rejected += 1
        note_rejection(self.reasons, reason)


def _bucket(t: float) -> str:
    """The dedupe map of event time ``t``."""
    return f"d:{int(t // DEDUPE_BUCKET)}"


def _bucket_start(bucket: str) -> float:
    return int(bucket[2:]) * DEDUPE_BUCKET


class Engine:
    """Runs batches of events through dedupe, enrichment, aggregation and detectors.

    Single-threaded: the host feeds it batches one at a time. ``stats`` holds running totals for
    the processor's metrics (never per user)."""

    def __init__(
        self,
        state: State,
        detectors: Sequence[Detector] = (),
        enricher: Enricher | None = None,
        *,
        lateness: float = DEFAULT_LATENESS,
        claim_ahead: bool = True,
        planned: bool | None = None,
        keep_findings: bool = False,
    ) -> None:
        if lateness < 0:
            raise ValueError("lateness must not be negative")
        self.state = state
        self.detectors = list(detectors)
        self.enricher = enricher
        self.lateness = lateness
        self.claim_ahead = claim_ahead
        """Claim a batch's events up front, one step per dedupe map (True), or each event as its
        turn comes (False). Up front is fewer State calls, but the claims of events not processed
        yet live until this engine gives them back: right for a state only this process uses (a
        crash loses the claims with it), wrong for a state that replicas share, where a replica
        dying mid-batch would leave the rest of the batch claimed and its retry, on another
        replica, would count those events as duplicates. One at a time, only the event in flight
        can be lost that way."""
        self.planned = isinstance(state, PipelinedState) if planned is None else planned
        """Run each event's steps as one declared plan, a segment of events per round trip
        (:mod:`usermon.processor.planning`), rather than call by call. Each event claims
        itself in its own plan, so ``claim_ahead`` does not apply."""
        self._planners = [d for d in self.detectors if isinstance(d, Planned)]
        # A detector that declares no plan may read what later events' plans write: with one,
        # each segment is one event (correct, one round trip per event or more).
        self._segment_limit = len(self._planners) < len(self.detectors)
        self._after = [d for d in self.detectors if isinstance(d, PlannedAfter)]
        # Each outcome's detectors and planners, in order: one that sees only some outcomes
        # (Selective) is not called for the others, where it would find nothing to do.
        self._observers = {o: self._seeing(self.detectors, o) for o in OUTCOMES}
        self._planning = {o: self._seeing(self._planners, o) for o in OUTCOMES}
        self._view = PlanView(state)
        self.keep_findings = keep_findings
        """Keep what each event finds in the state, in its batch's kept map, as soon as it is
        processed (:meth:`_judge_found`; only for a batch whose ``Outcome.batch`` is set): for a
        state replicas share, where a replica adopting a dead one's batch finds its processed
        events claimed and must record their findings from there."""
        self.watermark = float("-inf")
        self._dedupe_ttl = lateness + DEDUPE_BUCKET
        # Dedupe claims of unprocessed events that a failed batch could not give back (the state
        # did not answer): dedupe key -> its map. Given back before the next batch.
        self._unreleased: dict[str, str] = {}
        self.stats: dict[str, int] = {
            "logins_success": 0,
            "logins_blocked": 0,
            "logins_failure": 0,
            "signups": 0,
            "duplicates": 0,
            "rejected": 0,
        }
        self.plan_stats: dict[str, int] = {"segments": 0, "round_trips": 0, "events": 0}
        """Planned runs only: segments run, State round trips (a segment's pipeline, its
        second step, the records written, each direct call) and events planned."""
        self.findings_by_kind: dict[str, int] = {}
        self.detector_errors = 0

    @staticmethod
    def _seeing(detectors: Sequence[Any], outcome: str) -> list[Any]:
        return [d for d in detectors if not isinstance(d, Selective) or outcome in d.outcomes]

    # -- the batch ---------------------------------------------------------------------------------

    def process(
        self, events: Iterable[Event], now: float | None = None, outcome: Outcome | None = None
    ) -> Outcome:
        """Process ``events``; ``now`` is the host's wall clock (seconds), when it has one.

        Fills and returns ``outcome`` (a new one when None). Finding deltas already in
        ``outcome.findings`` (what earlier batches found and the store did not take yet) are
        grown by this batch's signals, one delta per finding in all. Raises
        :class:`~usermon.processor.storage.errors.StoreError` when the state fails: the caller's
        ``outcome`` then holds what the events before the failure did (their findings too), which
        the caller must still record, since a retry will not count those events again."""
        out = Outcome() if outcome is None else outcome
        pending: dict[str, Finding] = {f.id: f for f in out.findings}
        future = None if now is None else now + MAX_FUTURE_SKEW
        stats = self.stats
        batch = events if isinstance(events, list | tuple) else list(events)
        lateness = self.lateness
        # The batch's claims not processed yet (dedupe key -> its map), given back on a failure.
        claimed: dict[str, str] = {}
        key = ""  # the event being processed, and its map while it is
        current: str | None = None
        if self.planned:
            try:
                self._process_planned(batch, out, pending, future)
            finally:
                stats["duplicates"] += out.duplicates
                stats["rejected"] += out.rejected
                out.findings = list(pending.values())
            return out
        try:
            if self._unreleased:
                self.give_back()
            if self.claim_ahead:
                keys, taken = self._claim(batch, future, claimed)
            else:  # each event claims alone below, just before it is processed
                keys, taken = [None] * len(batch), set()
            for i, event in enumerate(batch):
                t = event.time
                if t < self.watermark - lateness:
                    out.reject(f"event older than the {lateness:g} s lateness")
                    continue
                if future is not None and t > future:
                    out.reject("event timestamp in the future")
                    continue
                key = keys[i] or event.dedupe_key
                if keys[i] is None and key not in claimed and key not in taken:
                    # Not claimed with the batch, as it might have come too late: alone, now.
                    bucket = _bucket(t)
                    if self._claim_one(bucket, key, t):
                        claimed[key] = bucket
                current = claimed.pop(key, None)
                if current is None:  # another report of it came first, before or in this batch
                    out.duplicates += 1
                    continue
                self._one(event, out, pending)
                current = None
                self._accepted(event, out)
        except BaseException as exc:
            # What was claimed and not processed goes back, so that the retry takes it: the events
            # after the failure, and the one being processed when the state failed (not on a bug,
            # which the retry would hit again). When the state does not answer, the events after
            # go back later (give_back); the one in flight stays claimed, its aggregates counted.
            if current is not None and isinstance(exc, StoreError):
                claimed[key] = current
            if claimed:
                left = self._give_back(claimed)
                if current is not None:
                    left.pop(key, None)
                self._unreleased.update(left)
            raise
        finally:
            stats["duplicates"] += out.duplicates
            stats["rejected"] += out.rejected
            out.findings = list(pending.values())
        return out

    def _claim(
        self, batch: Sequence[Event], future: float | None, claimed: dict[str, str]
    ) -> tuple[list[str | None], set[str]]:
        """Claim the batch's events in the state, one step per dedupe map, into ``claimed`` (the
        keys this batch now owns, with their map). Returns each event's dedupe key in order (None
        for an event left to be claimed alone) and the keys another report already holds.

        Only events that processing in order will certainly not reject are claimed here: those
        within the lateness even if every event before them in the batch is accepted (the real
        watermark can only be lower). The others, rare, are claimed alone when their turn comes
        and they pass; those from the future, never."""
        lateness = self.lateness
        newest = self.watermark  # the watermark if every event claimed before is accepted
        oldest = float("inf")
        keys: list[str | None] = []
        maps: dict[int, dict[str, int]] = {}
        fields: dict[str, int] = {}
        last = None
        for event in batch:
            t = event.time
            if t < newest - lateness or (future is not None and t > future):
                keys.append(None)
                continue
            if t > newest:
                newest = t
            if t < oldest:
                oldest = t
            key = event.dedupe_key
            b = int(t // DEDUPE_BUCKET)
            if b != last:  # a batch mostly stays in one bucket
                last = b
                fields = maps.setdefault(b, {})
            fields[key] = 1  # a repeat within the batch is the same field: a duplicate in order
            keys.append(key)
        taken: set[str] = set()
        for b, fields in maps.items():
            bucket = f"d:{b}"
            values = self._incr(bucket, fields, oldest)
            if values.count(1) == len(values):  # the usual case: every one of them is new
                claimed.update(dict.fromkeys(fields, bucket))
                continue
            for key, value in zip(fields, values, strict=True):
                if value == 1:
                    claimed[key] = bucket
                else:  # another report claimed it first
                    taken.add(key)
        return keys, taken

    def _claim_one(self, bucket: str, key: str, t: float) -> bool:
        return self._incr(bucket, {key: 1}, t) == [1]

    def _incr(self, bucket: str, fields: dict[str, int], t: float) -> list[int]:
        """One step on the dedupe map ``bucket`` at event time ``t``.

        ``t`` is never ahead of an event still to be processed (the state's clock must not move
        past it: records would expire early), so the map is kept long enough for the bucket's
        last second to be claimed within the lateness, and never less than ``lateness`` plus
        a bucket from now (on Redis its expiry is in wall-clock seconds)."""
        keep = _bucket_start(bucket) + DEDUPE_BUCKET + self.lateness - t
        return self.state.incr_fields(bucket, fields, t, max(keep, self._dedupe_ttl))

    @property
    def claims_held(self) -> int:
        """Dedupe claims of unprocessed events that a failed batch could not give back yet."""
        return len(self._unreleased)

    def give_back(self) -> int:
        """Give back the dedupe claims that a failed batch could not (the state did not answer),
        so that a retry takes their events, wherever it lands; return how many are still held.
        Done before every batch; the processor service also calls it every second while any
        are held, so that they go back soon after the state does answer."""
        if self._unreleased:
            self._unreleased = self._give_back(self._unreleased)
        return len(self._unreleased)

    def _give_back(self, claimed: dict[str, str]) -> dict[str, str]:
        """Give back the claims of events that were not processed, one step per dedupe map;
        return those the state could not take back (it did not answer), to try again before the
        next batch. Claims whose events are now too late to be processed are dropped."""
        maps: dict[str, dict[str, int]] = {}
        for key, bucket in claimed.items():
            maps.setdefault(bucket, {})[key] = -1
        left: dict[str, str] = {}
        watermark = self.watermark
        horizon = watermark - self.lateness - DEDUPE_BUCKET
        for bucket, fields in maps.items():
            start = _bucket_start(bucket)
            if start < horizon:
                continue  # no retry can take these any more: nothing to give back
            try:
                # Not past the state's clock: the engine's watermark is behind it.
                at = watermark if start > watermark > float("-inf") else start
                self._incr(bucket, fields, at)
            except StoreError:
                left.update(dict.fromkeys(fields, bucket))
        if left:
            logger.warning(
                "could not give back the dedupe claims of %d unprocessed events; trying again",
                len(left),
            )
        return left

    # -- planned: a segment of events per round trip --------------------------------------------

    def _process_planned(
        self,
        batch: Sequence[Event],
        out: Outcome,
        pending: dict[str, Finding],
        future: float | None,
    ) -> None:
        """The batch in segments: each segment's events planned, their plans run together,
        then judged in order. A segment ends before an event that processing in order might
        reject (it is planned again once the events before it are judged) or whose plan reads
        a key that an event before it in the segment writes after its plan ran
        (:class:`PlannedAfter`): everything else a segment's events read is either in their
        plans or written by none of them."""
        lateness = self.lateness
        view = self._view
        # Each subject's last fold in the batch reads it back for the profiles.
        last: dict[str, int] = {}
        for k, event in enumerate(batch):
            for key in subject_keys(event):
                last[key] = k
        try:
            i, n = 0, len(batch)
            while i < n:
                segment: list[tuple[Event, list[Step]]] = []
                dirty: set[str] = set()  # keys written after a plan of this segment
                newest = self.watermark  # the watermark if every event planned is accepted
                while i < n:
                    event = batch[i]
                    t = event.time
                    if future is not None and t > future:
                        out.reject("event timestamp in the future")
                        i += 1
                        continue
                    if t < newest - lateness:
                        if segment:  # the events before it may be duplicates: judge them first
                            break
                        out.reject(f"event older than the {lateness:g} s lateness")
                        i += 1
                        continue
                    if self.enricher is not None and event.client_ip and event.network is None:
                        event = event.with_network(self.enricher.lookup(event.client_ip))
                    steps = self._plan(event)
                    for step in steps[1:3]:
                        if step.__class__ is Fold and last.get(step.key) == i:
                            assert isinstance(step, Fold)
                            step.read = profile_read(step.key)
                    if dirty and any(s.__class__ in READS and s.key in dirty for s in steps):
                        break
                    if segment and self._segment_limit:
                        break
                    for detector in self._after:
                        dirty.update(detector.writes_after(event))
                    segment.append((event, steps))
                    if t > newest:
                        newest = t
                    i += 1
                if segment:
                    self._run_segment(segment, out, pending, view)
            records = view.take_records()
            if records:
                self.plan_stats["round_trips"] += 1
                run_plans(self.state, (), records)
        finally:
            self.plan_stats["round_trips"] += view.direct
            view.direct = 0

    def _plan(self, event: Event) -> list[Step]:
        """Event's steps: its dedupe claim, aggregation's folds, the detectors' declared steps
        (each step once)."""
        t = event.time
        bucket = _bucket(t)
        keep = _bucket_start(bucket) + DEDUPE_BUCKET + self.lateness - t
        steps: list[Step] = [
            Claim(bucket, event.dedupe_key, t, max(keep, self._dedupe_ttl)),
            *aggregation_steps(event),
        ]
        if not event.blocked:
            # The detectors reading the shared tally all declare its plan, one tuple: each
            # declared sequence is taken once by identity, then each step once by value.
            parts: list[Sequence[Step]] = []
            for detector in self._planning[outcome_of(event)]:
                part = detector.plan(event)
                if part:
                    for taken in parts:
                        if taken is part:
                            break
                    else:
                        parts.append(part)
            if len(parts) == 1:
                steps.extend(dict.fromkeys(parts[0]))
            elif parts:
                declared: dict[Step, None] = {}
                for part in parts:
                    declared.update(dict.fromkeys(part))
                steps.extend(declared)
        return steps

    def _run_segment(
        self,
        segment: list[tuple[Event, list[Step]]],
        out: Outcome,
        pending: dict[str, Finding],
        view: PlanView,
    ) -> None:
        stats = self.plan_stats
        plans = [steps for _, steps in segment]
        stats["segments"] += 1
        stats["round_trips"] += 1
        stats["events"] += len(segment)
        results = run_plans(self.state, plans, view.take_records())
        answers: list[dict[Step, Any] | None] = []
        for steps, result in zip(plans, results, strict=True):
            if not result or result[0] is False:
                answers.append(None)  # another report of it came first
            else:
                answers.append(dict(zip(steps[1:], result[1:], strict=True)))
                for step, value in zip(steps[1:3], result[1:3], strict=False):
                    if value is not None and step.__class__ is Fold:
                        out.subjects[step.key] = value
        # What depends on the plans' reads, declared now and run together (one more round trip).
        if self._after:
            after: list[list[Step]] = []
            owners: list[int] = []
            for k, ((event, _), known) in enumerate(zip(segment, answers, strict=True)):
                if known is None or event.blocked:
                    continue
                view.answers = known
                steps = [s for d in self._after for s in d.plan_after(event, view)]
                if steps:
                    after.append(steps)
                    owners.append(k)
            if after:
                stats["round_trips"] += 1
                for k, steps, result in zip(
                    owners, after, run_plans(self.state, after), strict=True
                ):
                    known = answers[k]
                    assert known is not None
                    known.update(zip(steps, result, strict=True))
        for (event, _), known in zip(segment, answers, strict=True):
            if known is None:
                out.duplicates += 1
                continue
            view.answers = known
            self._judge_or_keep(event, out, pending, view)
            self._accepted(event, out)
        view.answers = {}

    def _accepted(self, event: Event, out: Outcome) -> None:
        """Count ``event``, processed, into ``out``, the watermark and the running stats."""
        out.processed.append(event)
        if event.time > self.watermark:
            self.watermark = event.time
        out.accepted += 1
        stats = self.stats
        if event.kind == "signup":
            stats["signups"] += 1
        elif event.blocked:
            stats["logins_blocked"] += 1
        elif event.success:
            stats["logins_success"] += 1
        else:
            stats["logins_failure"] += 1

    def _one(self, event: Event, out: Outcome, pending: dict[str, Finding]) -> None:
        if self.enricher is not None and event.client_ip and event.network is None:
            event = event.with_network(self.enricher.lookup(event.client_ip))
        self._judge_or_keep(event, out, pending, self.state)

    def _judge_or_keep(
        self, event: Event, out: Outcome, pending: dict[str, Finding], state: State
    ) -> None:
        if out.batch:
            self._judge_found(event, out, pending, state)
        else:
            self._judge(event, out, pending, state)

    def _judge(self, event: Event, out: Outcome, pending: dict[str, Finding], state: State) -> None:
        """Aggregate and detect one enriched event through ``state``."""
        if state is not self._view:
            # (Through the plan view, the event's plan made its folds: every plan holds them.)
            aggregate(event, state)
        if event.user_hash is not None:
            out.users.add(event.user_hash)
        if event.client_ip:
            out.ips.add(event.client_ip)
        if event.blocked:
            # Refused before the password check, on a decision already made: it is not a failed
            # password, so no detector counts it against the account (nor raises the finding
            # that made the decision again); the address's aggregate and the stats keep it.
            return
        for detector in self._observers[outcome_of(event)]:
            try:
                signals = detector.observe(event, state)
                for signal in signals:
                    self._fold(signal, pending, state)
            except StoreError:  # the state is down: the batch fails, the sender retries
                raise
            except Exception:  # a bug in one detector must not stop ingest
                self.detector_errors += 1
                logger.exception("detector %s failed", type(detector).__name__)

    def _judge_found(
        self, event: Event, out: Outcome, pending: dict[str, Finding], state: State
    ) -> None:
        """:meth:`_judge`, with what the event found noted under its dedupe key in ``out.found``
        (so that the store records each event once) and, with :attr:`keep_findings`, kept in
        its batch's kept map before the next event: should this replica die before the
        batch's findings are recorded, the replica that adopts the batch finds the event
        claimed and records this."""
        found: dict[str, Finding] = {}
        self._judge(event, out, found, state)
        if not found:
            return
        if self.keep_findings:
            kept = {
                "f": [f.to_json() for f in found.values()],
                "u": event.user_hash,
                "i": event.client_ip,
            }
            key = kept_key(out.batch)
            state.keep(key, event.dedupe_key, kept, event.time, self._dedupe_ttl)
        out.found[event.dedupe_key] = list(found.values())
        for delta in found.values():
            pending[delta.id] = merge_finding(pending.get(delta.id), delta)

    def _fold(self, signal: Signal, pending: dict[str, Finding], state: State) -> None:
        subject = signal.subject
        event = signal.event
        t = event.time
        open_key = f"f:{signal.kind}:{subject.type}:{subject.id}"
        gap = signal.episode_gap or FINDING_GAP
        fid = signal.finding or finding_id(signal.kind, subject.type, subject.id, t)
        # One atomic step: of replicas opening one episode at once (across an hour boundary
        # too), one opens it and the others grow it, so its id is one. Kept a gap after the
        # episode's newest signal, even when this one is late.
        episode, opened = state.open_episode(open_key, {"id": fid}, t, gap, gap)
        if opened:
            self.findings_by_kind[signal.kind] = self.findings_by_kind.get(signal.kind, 0) + 1
        evidence: dict[str, Any] = dict(signal.evidence)
        evidence["trace_ids"] = [event.trace_id] if event.trace_id else []
        evidence["ips"] = evidence_union((event.client_ip,), signal.related_ips)
        evidence["users"] = evidence_union((event.user_hash,), signal.related_users)
        delta = Finding(
            id=episode["id"],
            kind=signal.kind,
            severity=signal.severity,
            subject=subject,
            first_seen=t,
            last_seen=t,
            event_count=1,
            summary=signal.summary,
            evidence=evidence,
        )
        pending[delta.id] = merge_finding(pending.get(delta.id), delta)

    # -- snapshots ---------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The engine's own memory (watermark, stats), for the store's checkpoint; the state,
        dedupe maps included, is snapshotted by its store."""
        return pickle.dumps(
            (2, self.watermark, self.stats, self.findings_by_kind),
            protocol=pickle.HIGHEST_PROTOCOL,
        )

    def restore(self, data: bytes) -> None:
        """Load :meth:`snapshot` output (only ever the processor's own checkpoint)."""
        loaded = pickle.loads(data)  # noqa: S301
        if loaded[0] == 1:  # dedupe keys were kept here then; they are in the state now
            _, watermark, _seen, _seen_old, stats, by_kind = loaded
        elif loaded[0] == 2:
            _, watermark, stats, by_kind = loaded
        else:
            raise ValueError(f"unknown engine snapshot version {loaded[0]!r}")
        self.watermark = watermark
        self.stats.update(stats)
        self.findings_by_kind.update(by_kind)
