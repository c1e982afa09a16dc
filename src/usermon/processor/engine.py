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
from usermon.processor.storage.state.steps import (
    CLAIMED,
    OWN,
    TAKEN,
    AddDistinct,
    AddWindows,
    Claim,
    Count,
    DistinctCount,
    Episode,
    Fields,
    Fold,
    IncrFields,
    Keep,
    Step,
    record_json,
)

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


def _judged_key(batch: int) -> str:
    """The record ``{"n": n}`` saying that the events of journal batch ``batch`` before index
    ``n`` were judged (or rejected, or duplicates) by a replica that claimed them for it."""
    return f"j:{batch}"


def _read_only(steps: Sequence[Step]) -> list[Step]:
    """The reads that answer ``steps`` (an event's plan after its claim) without writing: each
    write turned into the read of what it wrote, which the state already holds. Folds need no
    answer (their read-back is for the profiles, which are read again when recorded)."""
    reads: list[Step] = []
    for step in steps:
        cls = step.__class__
        if cls is AddWindows:
            assert isinstance(step, AddWindows)
            reads.extend(Count(step.key, step.t, w) for w in step.windows)
        elif cls is AddDistinct:
            assert isinstance(step, AddDistinct)
            reads.append(DistinctCount(step.key, step.t, step.window))
        elif cls is IncrFields:
            reads.append(Fields(step.key))
        elif cls in READS:
            reads.append(step)
    return reads


def _as_written(steps: Sequence[Step], results: Sequence[Any]) -> dict[Step, Any]:
    """What ``steps`` would have answered, from the results of :func:`_read_only` ``(steps)``."""
    answers: dict[Step, Any] = {}
    values = iter(results)
    for step in steps:
        cls = step.__class__
        if cls is AddWindows:
            assert isinstance(step, AddWindows)
            answers[step] = tuple(int(next(values)) for _ in step.windows)
        elif cls is AddDistinct:
            answers[step] = int(next(values))
        elif cls is IncrFields:
            assert isinstance(step, IncrFields)
            held = next(values)
            answers[step] = [int(held.get(f, 0)) for f, _ in step.fields]
        elif cls in READS:
            answers[step] = next(values)
        else:
            answers[step] = None
    return answers


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
        processed (:meth:`_judge_found`, planned :meth:`_settle`; only for a batch whose
        ``Outcome.batch`` is set): for a
        state replicas share, where a replica adopting a dead one's batch finds its processed
        events claimed and must record their findings from there."""
        self.watermark = float("-inf")
        self._dedupe_ttl = lateness + DEDUPE_BUCKET
        # The batch being processed, as its claims' owner (with keep_findings: 0 otherwise, and
        # a claim without an owner is never answered OWN), the dedupe keys it claimed or judged
        # again so far (a repeat answers OWN too), and its judged mark as read (None: not read).
        self._owner = 0
        self._mine: set[str] = set()
        self._judged: int | None = None
        self.rejudged = 0
        """Events judged again from their plans' reads (a replay of a batch whose replica died
        after claiming and counting them, before judging them)."""
        # Dedupe claims of unprocessed events that a failed batch could not give back (the state
        # did not answer): dedupe key -> its map. Given back before the next batch.
        self._unreleased: dict[str, tuple[str, int]] = {}
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
        second step, its episodes and kept findings, the records written, each direct call)
        and events planned."""
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
        # The batch's claims not processed yet (dedupe key -> its map and the claim's value),
        # given back on a failure.
        claimed: dict[str, tuple[str, int]] = {}
        key = ""  # the event being processed, and its map while it is
        current: tuple[str, int] | None = None
        self._owner = out.batch if self.keep_findings else 0
        self._mine = set()
        self._judged = None
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
                    answer = self._claim_one(bucket, key, t, i)
                    if answer == CLAIMED:
                        claimed[key] = bucket, self._owner + 1
                    elif answer == OWN and self._unjudged(key, i, out):
                        self._judge_again([event], out, pending, self.state)
                        continue
                current = claimed.pop(key, None)
                if current is None:  # another report of it came first, before or in this batch
                    out.duplicates += 1
                    continue
                self._one(event, out, pending)
                current = None
                self._accepted(event, out)
            if self._mine:  # the whole batch is done: a replay judges none of it again
                self.state.put(*self._judged_mark(len(batch), self.watermark))
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
        self, batch: Sequence[Event], future: float | None, claimed: dict[str, tuple[str, int]]
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
                claimed.update(dict.fromkeys(fields, (bucket, 1)))
                continue
            for key, value in zip(fields, values, strict=True):
                if value == 1:
                    claimed[key] = bucket, 1
                else:  # another report claimed it first
                    taken.add(key)
        return keys, taken

    def _claim_one(self, bucket: str, key: str, t: float, i: int) -> int:
        """Claim the event ``key`` (index ``i`` of its batch) alone: with an owner, by a
        :class:`Claim` that also writes the batch's judged mark (the events before it are
        done), in one round trip."""
        owner = self._owner
        if not owner:  # a counting-map step: what a claim without an owner amounts to
            return CLAIMED if self._incr(bucket, {key: 1}, t) == [1] else TAKEN
        keep = _bucket_start(bucket) + DEDUPE_BUCKET + self.lateness - t
        claim = Claim(bucket, key, t, max(keep, self._dedupe_ttl), owner)
        records = [self._judged_mark(i, t)] if i else []
        [[answer]] = run_plans(self.state, [[claim]], records)
        if answer == CLAIMED:
            self._mine.add(key)
        return int(answer)

    # -- a replay of a batch claimed before ------------------------------------------------------

    def _judged_mark(self, n: int, t: float) -> tuple[str, dict[str, Any], float, float]:
        """The record that says the batch's events before index ``n`` are done (never less than
        what an earlier replica of the batch marked), as ``(key, value, t, ttl)``."""
        return _judged_key(self._owner), {"n": max(n, self._judged or 0)}, t, self._dedupe_ttl

    def _unjudged(self, key: str, i: int, out: Outcome) -> bool:
        """Whether event ``key``, index ``i`` of the batch, which this batch claimed before (a
        replay: its replica counted it, then died), is to be judged again: not a repeat in this
        run, nothing kept of what it found, and not before the batch's judged mark."""
        if key in self._mine or key in out.found:
            return False
        if self._judged is None:
            record = self.state.get(_judged_key(self._owner))
            self.plan_stats["round_trips"] += self.planned
            self._judged = int(record["n"]) if record else 0
        if i < self._judged:
            return False
        self._mine.add(key)
        return True

    def _judge_again(
        self, events: Sequence[Event], out: Outcome, pending: dict[str, Finding], view: State
    ) -> None:
        """Judge ``events`` (enriched or not), claimed and counted by this batch before and never
        judged, from their plans made read-only (:func:`_read_only`): what the state holds of
        them is already counted, and is read as it is now (it may include later events). Their
        later steps (:class:`PlannedAfter`) are read-only too; records the detectors put go out
        with the next round trip (now, when ``view`` is the state)."""
        planned: list[tuple[Event, list[Step]]] = []
        for event in events:
            event = self._enriched(event)
            planned.append((event, self._plan(event)[1:]))
        plan_view = view if isinstance(view, PlanView) else PlanView(self.state)
        known = self._reread([steps for _, steps in planned])
        if self._after:
            after: list[list[Step]] = []
            for (event, _), answers in zip(planned, known, strict=True):
                plan_view.answers = answers
                after.append([s for d in self._after for s in d.plan_after(event, plan_view)])
            for answers, read in zip(known, self._reread(after), strict=True):
                answers.update(read)
        judged: list[tuple[Event, list[Signal]]] = []
        for (event, _), answers in zip(planned, known, strict=True):
            plan_view.answers = answers
            judged.append((event, self._observe(event, out, plan_view)))
        plan_view.answers = {}
        self._settle(judged, out, pending, plan_view)
        self.rejudged += len(judged)
        if plan_view is not view:
            records, appends = plan_view.take_records(), plan_view.take_appends()
            if records or appends:
                run_plans(self.state, (), records, appends)

    def _reread(self, plans: Sequence[Sequence[Step]]) -> list[dict[Step, Any]]:
        """Each of ``plans`` (steps already run) answered from reads of what they wrote, in one
        round trip (:func:`_read_only`, :func:`_as_written`)."""
        self.plan_stats["round_trips"] += self.planned
        results = run_plans(self.state, [_read_only(steps) for steps in plans])
        return [_as_written(steps, r) for steps, r in zip(plans, results, strict=True)]

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

    def _give_back(self, claimed: dict[str, tuple[str, int]]) -> dict[str, tuple[str, int]]:
        """Give back the claims of events that were not processed, one step per dedupe map;
        return those the state could not take back (it did not answer), to try again before the
        next batch. Claims whose events are now too late to be processed are dropped."""
        maps: dict[str, dict[str, int]] = {}
        for key, (bucket, value) in claimed.items():
            maps.setdefault(bucket, {})[key] = -value
        left: dict[str, tuple[str, int]] = {}
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
                left.update({key: (bucket, -n) for key, n in fields.items()})
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
                where: list[int] = []  # each one's index in the batch
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
                    event = self._enriched(event)
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
                    where.append(i)
                    if t > newest:
                        newest = t
                    i += 1
                if segment:
                    if self._owner and where[0]:  # the events before it are done
                        view.put(*self._judged_mark(where[0], segment[0][0].time))
                    self._run_segment(segment, out, pending, view, where)
            if self._mine:  # the whole batch is done: a replay judges none of it again
                view.put(*self._judged_mark(n, self.watermark))
            records, appends = view.take_records(), view.take_appends()
            if records or appends:
                self.plan_stats["round_trips"] += 1
                run_plans(self.state, (), records, appends)
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
            Claim(bucket, event.dedupe_key, t, max(keep, self._dedupe_ttl), self._owner),
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
        where: Sequence[int] = (),
    ) -> None:
        """Run ``segment``'s plans, then judge its events in order; ``where`` holds each one's
        index in its batch (needed with an owner only)."""
        stats = self.plan_stats
        plans = [steps for _, steps in segment]
        stats["segments"] += 1
        stats["round_trips"] += 1
        stats["events"] += len(segment)
        results = run_plans(self.state, plans, view.take_records(), view.take_appends())
        answers: list[dict[Step, Any] | None] = []
        again: list[int] = []  # events this batch claimed before and never judged (a replay)
        owner = self._owner
        for k, (steps, result) in enumerate(zip(plans, results, strict=True)):
            if not result or result[0] != CLAIMED:
                # Another report of it came first; or this batch did (a replay of it, or a
                # repeat within it), which judges it only if it was never judged.
                if (
                    result
                    and result[0] == OWN
                    and self._unjudged(segment[k][0].dedupe_key, where[k], out)
                ):
                    again.append(k)
                answers.append(None)
            else:
                if owner:
                    self._mine.add(segment[k][0].dedupe_key)
                answers.append(dict(zip(steps[1:], result[1:], strict=True)))
                for step, value in zip(steps[1:3], result[1:3], strict=False):
                    if value is not None and step.__class__ is Fold:
                        out.subjects[step.key] = value
        if again:  # what their plans counted before, read (one more round trip)
            reads = self._reread([segment[k][1][1:] for k in again])
            for k, read in zip(again, reads, strict=True):
                answers[k] = read
        # What depends on the plans' reads, declared now and run together (one more round trip).
        if self._after:
            after: list[list[Step]] = []
            owners: list[int] = []
            reread: dict[int, list[Step]] = {}  # those judged again: their steps, read instead
            for k, ((event, _), known) in enumerate(zip(segment, answers, strict=True)):
                if known is None or event.blocked:
                    continue
                view.answers = known
                steps = [s for d in self._after for s in d.plan_after(event, view)]
                if again and k in again:
                    reread[k] = steps
                elif steps:
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
            if reread:
                for k, read in zip(reread, self._reread(list(reread.values())), strict=True):
                    known = answers[k]
                    assert known is not None
                    known.update(read)
        judged: list[tuple[Event, list[Signal]]] = []
        for (event, _), known in zip(segment, answers, strict=True):
            if known is None:
                out.duplicates += 1
                continue
            view.answers = known
            judged.append((event, self._observe(event, out, view)))
        view.answers = {}
        self._settle(judged, out, pending, view)
        self.rejudged += len(again)

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

    def _enriched(self, event: Event) -> Event:
        """``event`` with its address's network, when an enricher knows it and it has none."""
        if self.enricher is not None and event.client_ip and event.network is None:
            return event.with_network(self.enricher.lookup(event.client_ip))
        return event

    def _one(self, event: Event, out: Outcome, pending: dict[str, Finding]) -> None:
        # _judge_or_keep(_enriched(event)) written out: this runs for every event.
        if self.enricher is not None:
            event = self._enriched(event)
        if out.batch:
            self._judge_found(event, out, pending, self.state)
        else:
            self._observe(event, out, self.state, pending)

    def _judge_or_keep(
        self, event: Event, out: Outcome, pending: dict[str, Finding], state: State
    ) -> None:
        if out.batch:
            self._judge_found(event, out, pending, state)
        else:
            self._judge(event, out, pending, state)

    def _judge(self, event: Event, out: Outcome, pending: dict[str, Finding], state: State) -> None:
        """Aggregate and detect one enriched event through ``state``, call by call: each
        signal's episode opened as it comes."""
        self._observe(event, out, state, pending)

    def _observe(
        self,
        event: Event,
        out: Outcome,
        state: State,
        pending: dict[str, Finding] | None = None,
    ) -> list[Signal]:
        """Aggregate and detect one enriched event through ``state``; returns its signals,
        whose episodes are still to be opened. With ``pending``, each detector's signals are
        folded into it as they come instead (call by call), and none is returned."""
        if state is not self._view:
            # (Through the plan view, the event's plan made its folds: every plan holds them.)
            aggregate(event, state)
        if event.user_hash is not None:
            out.users.add(event.user_hash)
        if event.client_ip:
            out.ips.add(event.client_ip)
        found: list[Signal] = []
        if event.blocked:
            # Refused before the password check, on a decision already made: it is not a failed
            # password, so no detector counts it against the account (nor raises the finding
            # that made the decision again); the address's aggregate and the stats keep it.
            return found
        for detector in self._observers[outcome_of(event)]:
            try:
                signals = detector.observe(event, state)
                for signal in signals:
                    if pending is None:
                        found.append(signal)
                    else:
                        self._fold(signal, pending, state)
            except StoreError:  # the state is down: the batch fails, the sender retries
                raise
            except Exception:  # a bug in one detector must not stop ingest
                self.detector_errors += 1
                logger.exception("detector %s failed", type(detector).__name__)
        return found

    def _judge_found(
        self, event: Event, out: Outcome, pending: dict[str, Finding], state: State
    ) -> None:
        """:meth:`_judge`, with what the event found noted under its dedupe key in ``out.found``
        (so that the store records each event once) and, with :attr:`keep_findings`, kept in
        its batch's kept map before the next event: should this replica die before the
        batch's findings are recorded, the replica that adopts the batch finds the event
        claimed and records this."""
        found: dict[str, Finding] = {}
        self._observe(event, out, state, found)  # (_judge)
        if not found:
            return
        if self.keep_findings:
            kept = self._kept(event, found)
            state.keep(kept_key(out.batch), event.dedupe_key, kept, event.time, self._dedupe_ttl)
        self._found(event, found, out, pending)

    @staticmethod
    def _kept(event: Event, found: dict[str, Finding]) -> dict[str, Any]:
        """What is kept of what ``event`` found, in its batch's kept map."""
        return {
            "f": [f.to_json() for f in found.values()],
            "u": event.user_hash,
            "i": event.client_ip,
        }

    @staticmethod
    def _found(
        event: Event, found: dict[str, Finding], out: Outcome, pending: dict[str, Finding]
    ) -> None:
        """What ``event`` found, noted under its dedupe key and merged into ``pending``."""
        out.found[event.dedupe_key] = list(found.values())
        for delta in found.values():
            pending[delta.id] = merge_finding(pending.get(delta.id), delta)

    def _settle(
        self,
        judged: Sequence[tuple[Event, list[Signal]]],
        out: Outcome,
        pending: dict[str, Finding],
        view: PlanView,
    ) -> None:
        """The judged events (planned, each with its signals) done, in order: their signals'
        episodes opened in one round trip (each event's as one plan, after the records the view
        holds), their findings made, kept in the batch's kept map in one more round trip (with
        :attr:`keep_findings`), noted, and the events counted as processed. A failure of either
        round trip leaves all of them unprocessed: a replay judges them again (their episodes
        may have grown, which a replay grows again into the same id)."""
        plans = [[self._episode(signal) for signal in signals] for _, signals in judged if signals]
        opened = iter(
            run_plans(self.state, plans, view.take_records(), view.take_appends()) if plans else ()
        )
        self.plan_stats["round_trips"] += bool(plans)
        made: list[tuple[Event, dict[str, Finding]]] = []
        keeps: list[Step] = []
        batch = out.batch
        for event, signals in judged:
            if not signals:
                made.append((event, {}))
                continue
            found: dict[str, Finding] = {} if batch else pending
            for signal, (episode, new) in zip(signals, next(opened), strict=True):
                self._grow(signal, episode, new, found)
            made.append((event, found))
            if batch and found and self.keep_findings:
                value = record_json(self._kept(event, found))
                key = kept_key(batch)
                keeps.append(Keep(key, event.dedupe_key, value, event.time, self._dedupe_ttl))
        if keeps:  # one plan: all of them or none
            self.plan_stats["round_trips"] += 1
            run_plans(self.state, [keeps])
        for event, found in made:
            if batch and found:
                self._found(event, found, out, pending)
            self._accepted(event, out)

    @staticmethod
    def _episode(signal: Signal) -> Episode:
        """The step that opens or grows ``signal``'s finding episode: one atomic step, so that
        of replicas opening one episode at once (across an hour boundary too) one opens it and
        the others grow it, and its id is one. Kept a gap after the episode's newest signal,
        even when this one is late."""
        subject = signal.subject
        t = signal.event.time
        gap = signal.episode_gap or FINDING_GAP
        fid = signal.finding or finding_id(signal.kind, subject.type, subject.id, t)
        key = f"f:{signal.kind}:{subject.type}:{subject.id}"
        return Episode(key, (("id", fid),), t, gap, gap)

    def _fold(self, signal: Signal, pending: dict[str, Finding], state: State) -> None:
        """Fold ``signal`` into ``pending``, its episode opened now (call by call)."""
        episode, opened = self._episode(signal).run(state)
        self._grow(signal, episode, opened, pending)

    def _grow(
        self, signal: Signal, episode: dict[str, Any], opened: bool, pending: dict[str, Finding]
    ) -> None:
        """Fold ``signal`` into ``pending`` as its ``episode``'s finding (``opened``: its step
        opened it)."""
        subject = signal.subject
        event = signal.event
        t = event.time
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
