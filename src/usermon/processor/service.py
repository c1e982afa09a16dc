"""The processor service: the engine hosted behind a store, a journal and the OTLP exporter.

This module owns the life of one processor: open the store, restore the last checkpoint and replay
the journal after it, then for each request decode → durably take (the store's intake) → process →
record findings → answer them with protection decisions (:mod:`usermon.processor.responses`) →
export; checkpoint every ``checkpoint_interval`` seconds and on close. With a
shared store (Redis, PostgreSQL) a background thread also adopts, every lease interval, the
journaled batches of replicas that died (``SharedStore.adopt_orphans``) and processes them, so an
acknowledged batch never waits for a restart; and, every second while there are any, gives back the
dedupe claims a failed batch could not (:meth:`Engine.give_back`). A store failure while processing
propagates (the receiver answers 503); the findings and profiles of the events processed before it
are kept and recorded first thing on the next batch, since a retry will not count those events
again. On a shared state, a journaled batch that the state failed half way is queued to be
replayed here (every second until the state answers, and before the next batch is taken), so that
its events claimed and never judged are judged. The HTTP and gRPC receivers
(:mod:`usermon.processor.server`, :mod:`usermon.processor.grpc_receiver`) are thin adapters over
:meth:`Processor.ingest`.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from usermon.processor.activity import Activity
from usermon.processor.detectors.base import Detector
from usermon.processor.engine import Engine, Enricher, Outcome
from usermon.processor.findings import kept_key
from usermon.processor.model import Decision, Finding
from usermon.processor.otlp import Decoded, decode
from usermon.processor.profiles import Profiles
from usermon.processor.responses import Allowlist, Responses, load_responses, respond
from usermon.processor.settings import Settings
from usermon.processor.storage.base import (
    DecisionStore,
    SharedStore,
    Store,
    open_store,
    redact,
)
from usermon.processor.storage.errors import StoreError
from usermon.processor.storage.state.base import InProcessState, SubjectView

if TYPE_CHECKING:
    from usermon.processor.export import Exporter

__all__ = ["IngestResult", "Processor"]

logger = logging.getLogger("usermon.processor")

_SIGNALS = {"traces": b"T", "logs": b"L"}
_SIGNAL_NAMES = {v: k for k, v in _SIGNALS.items()}
_ARRIVAL = struct.Struct("<d")  # journal blob: signal, format, arrival time, then the body
_ANNOUNCED_MAX = 10_000  # critical finding ids remembered so that each is logged once

PROGRESS_INTERVAL = 5.0
"""While the journal is replayed at startup, its progress is logged this often (seconds)."""

GIVE_BACK_INTERVAL = 1.0
"""How often (seconds) a service on a shared store retries giving back the dedupe claims that a
failed batch could not give back (:meth:`Engine.give_back`), and replaying a batch that the state
failed half way."""


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one export request came to."""

    accepted: int
    rejected_items: int  # spans / log records to report in partial_success
    message: str  # why they were rejected ("" when nothing was)


class Processor:
    """One processor: call :meth:`ingest` from one thread at a time (the receivers serialize)."""

    def __init__(
        self,
        settings: Settings,
        *,
        detectors: Sequence[Detector] | None = None,
        enricher: Enricher | None = None,
        store: Store | None = None,
        exporter: Exporter | None = None,
        responses: Responses | None = None,
    ) -> None:
        self.settings = settings
        self.responses = responses if responses is not None else load_responses(settings.rules)
        self.store = store or open_store(settings.store, **_store_options(settings))
        if detectors is None:
            detectors = _configured_detectors(settings)
        if enricher is None:
            enricher = _configured_enricher(settings)
        # A store whose journal other replicas adopt shares its state with them: claim each
        # event as it is processed, so that a replica dying mid-batch leaves the rest unclaimed,
        # and keep what each event finds with its claim until the batch's findings are
        # recorded, so that the replica adopting the batch records what this one could not.
        shared = isinstance(self.store, SharedStore)
        self.engine = Engine(
            self.store.state,
            detectors,
            enricher,
            lateness=settings.lateness,
            claim_ahead=not shared,
            keep_findings=shared and not isinstance(self.store.state, InProcessState),
        )
        if exporter is None and settings.otlp_endpoint:
            from usermon.processor.export import Exporter

            exporter = Exporter(settings.otlp_endpoint)
        self.exporter = exporter
        self.profiles = Profiles(self.store, max_keys=settings.max_keys)
        self.activity = Activity()  # the dashboard's per-minute chart (this replica's events)
        self.lock = threading.Lock()  # one batch at a time through the engine
        self._position = 0
        self._last_checkpoint = time.monotonic()
        self._unsaved = 0
        self.replayed = 0
        self._closed = False
        # What processed events produced but the store did not take yet (it failed): by batch
        # (its journal position) and event (its dedupe key), for the store to record each
        # event once; recorded before the next batch is processed.
        self._unrecorded: dict[int, dict[str, list[Finding]]] = {}
        self._unrecorded_plain: list[Finding] = []  # of a batch without a position (none yet)
        self._unrecorded_users: set[str] = set()
        self._unrecorded_ips: set[str] = set()
        self._unrecorded_subjects: dict[str, SubjectView] = {}  # those of them read already
        self._orphans: list[tuple[int, bytes]] = []  # adopted, not yet processed
        # Journaled batches that the shared state failed half way here: their events claimed
        # and counted but not judged are taken by no retry (another report holds their claims),
        # so the batch itself is replayed here, which judges them (docs/processor.md, *Ingest*).
        self._failed: list[tuple[int, bytes]] = []
        # Of a batch that failed half way (queued in one of the two): the dedupe keys of the
        # events judged before the failure, which its replay here must not judge (nor count in
        # the activity chart) again.
        self._judged_before: dict[int, set[str]] = {}
        self._announced: dict[str, None] = {}  # critical findings already logged (bounded)
        self._restore()
        self.profiles.index()  # one scan of a restored in-process state, never per page
        self._stop = threading.Event()
        self._adopter: threading.Thread | None = None
        if isinstance(self.store, SharedStore):
            interval = float(self.store.lease)
            self._adopter = threading.Thread(
                target=self._adopt_loop, args=(interval,), name="usermon-adopt", daemon=True
            )
            self._adopter.start()

    # -- startup -----------------------------------------------------------------------------------

    def _restore(self) -> None:
        position, snapshot = self.store.load_checkpoint()
        if snapshot is not None:
            self.engine.restore(snapshot)
        self._position = position
        started = last = time.monotonic()
        batches = 0
        for position, blob in self.store.pending():
            self._replay(blob, position)
            self._position = position
            batches += 1
            if time.monotonic() - last >= PROGRESS_INTERVAL:  # a long replay says how it goes
                last = time.monotonic()
                logger.info(
                    "replaying the journal after the last checkpoint: %d batches, %d events so far",
                    batches,
                    self.replayed,
                )
        if self.replayed:
            logger.info(
                "replayed %d journaled events (%d batches) after the last checkpoint in %.1f s",
                self.replayed,
                batches,
                time.monotonic() - started,
            )
            self.checkpoint()

    def _replay(self, blob: bytes, position: int, *, export: bool = False) -> None:
        signal, json_format = _SIGNAL_NAMES[blob[:1]], blob[1:2] == b"J"
        (arrived,) = _ARRIVAL.unpack_from(blob, 2)
        decoded = decode(signal, blob[2 + _ARRIVAL.size :], json_format=json_format)
        # The arrival clock of the original request: a replay decides exactly as live did.
        self._process(decoded, now=arrived, replay=not export, batch=position, again=True)
        self.replayed += len(decoded.events)

    # -- dead replicas -----------------------------------------------------------------------------

    def _adopt_loop(self, interval: float) -> None:
        due = time.monotonic() + interval
        while not self._stop.wait(min(GIVE_BACK_INTERVAL, max(0.0, due - time.monotonic()))):
            if self.engine.claims_held or self._failed:
                # A batch failed on the state and could not give its unprocessed events' dedupe
                # claims back: do it as soon as the state answers, before the sender's retry
                # (Retry-After 5 s) reaches another replica, which would take them for duplicates.
                # And a batch the state failed half way is replayed as soon as it answers, so
                # that what its unjudged events find is not held back until the next batch.
                with self.lock:
                    if not self._closed:
                        self.engine.give_back()
                        try:
                            self._replay_failed()
                        except StoreError as exc:  # still down: the next second
                            logger.debug("replaying a batch that failed half way: %s", exc)
            if time.monotonic() < due:
                continue
            due = time.monotonic() + interval
            try:
                self.adopt_orphans()
            except StoreError as exc:  # what was adopted stays queued for the next round
                logger.error("processing the batches of a dead replica failed: %s", exc)
            except Exception:
                logger.exception("adopting the batches of a dead replica failed")

    def adopt_orphans(self) -> int:
        """Adopt and process the journaled batches of replicas whose lease ran out (stores shared
        by replicas only; the service calls it every lease interval), after any batch of this
        replica's that the state failed half way. Returns the batches processed. Raises
        :class:`StoreError` when the store fails; what was adopted or failed is kept and
        processed by the next call, and no checkpoint is taken until it is."""
        store = self.store
        if not isinstance(store, SharedStore):
            return 0
        with self.lock:
            if self._closed:
                return 0
            done = self._replay_failed()
            self._orphans.extend(store.adopt_orphans())
            adopted = self._replay_queued(self._orphans)
            if adopted:
                logger.info("processed %d batches adopted from dead replicas", adopted)
            if done + adopted:
                self.checkpoint()
        return done + adopted

    @property
    def batches_to_replay(self) -> int:
        """Journaled batches this replica holds to process again: those the shared state failed
        half way here, and those adopted from dead replicas, not processed yet (/healthz)."""
        return len(self._failed) + len(self._orphans)

    def _replay_queued(self, queue: list[tuple[int, bytes]]) -> int:
        """Process the journaled batches of ``queue`` (adopted, or failed half way here), oldest
        first, each removed once processed and recorded; the caller holds the lock. The
        replica that took them never got to process (nor export) all of it: their events not
        claimed yet are new to the shared dedupe, those it claimed are its own (*Findings*)."""
        done = 0
        while queue:
            position, blob = queue[0]
            self._replay(blob, position, export=True)
            del queue[0]
            self._judged_before.pop(position, None)
            self._position = max(self._position, position)
            done += 1
        return done

    def _replay_failed(self) -> int:
        """Replay the batches the state failed half way here (the caller holds the lock);
        returns how many. Raises :class:`StoreError` while the store still fails (they stay
        queued). Any other error is a bug that would recur: logged, and the batch is dropped
        from the queue (its journal still holds it until the next checkpoint)."""
        try:
            done = self._replay_queued(self._failed)
        except StoreError:
            raise
        except Exception:
            position, _ = self._failed.pop(0)
            self._judged_before.pop(position, None)
            logger.exception(
                "replaying batch %d, which the state failed half way, failed", position
            )
            return 0
        if done:
            logger.info("replayed %d batches that the state failed half way", done)
        return done

    # -- the request path --------------------------------------------------------------------------

    def ingest(self, signal: str, body: bytes, *, json_format: bool) -> IngestResult:
        """Decode, durably take and process one export request body (already decompressed).

        Raises :class:`~usermon.processor.otlp.MalformedRequest` for a body that is not an export
        request (answer 400) and :class:`~usermon.processor.storage.errors.StoreError` when the
        batch could not be taken durably, or the store failed while it was processed (answer 503:
        the client retries; what was processed before the failure is not counted again), or a
        batch that the state failed half way here could not be replayed yet (this one is not
        taken)."""
        decoded = decode(signal, body, json_format=json_format)
        with self.lock:
            if self._failed:
                # Before taking another batch (often the sender's retry of the failed one): while
                # the state still fails this raises, and the request is answered 503 untaken.
                self._replay_failed()
            now = time.time()
            batch = 0
            blob = b""
            if decoded.events:
                header = _SIGNALS[signal] + (b"J" if json_format else b"P") + _ARRIVAL.pack(now)
                blob = header + body
                receipt = self.store.intake(blob, len(decoded.events))
                self._position = batch = receipt.position
            try:
                outcome = self._process(decoded, now=now, batch=batch)
            except StoreError:
                if batch in self._judged_before:  # the shared state failed half way through it
                    self._failed.append((batch, blob))
                    logger.warning(
                        "batch %d failed half way on the state: replayed here once it answers",
                        batch,
                    )
                raise
            self._unsaved += 1
            due = time.monotonic() - self._last_checkpoint >= self.settings.checkpoint_interval
            # Adopted batches not processed yet sit in our journal below our position: a
            # checkpoint now would delete them.
            if due and not self._orphans and not self._failed:
                try:
                    self.checkpoint()
                except StoreError as exc:  # the batch is journaled: retried at the next one
                    logger.error("checkpoint failed: %s", exc)
        return _result(decoded, outcome)

    def _process(
        self,
        decoded: Decoded,
        now: float | None,
        replay: bool = False,
        batch: int = 0,
        again: bool = False,
    ) -> Outcome:
        """Process one batch and record its findings (and any a failed record left); ``batch``
        is its journal position (0: none), ``again`` says it was journaled before this call (a
        replay, an adopted batch), so what it found before may be kept in the state."""
        outcome = Outcome(batch=batch)
        keep = bool(batch) and self.engine.keep_findings
        if again and keep:
            # A replica that processed some of these events may have died before recording
            # their findings: they come out as duplicates below, and what they found is kept
            # (what it did record, the store leaves out).
            outcome.found.update(self._kept(batch))
            # Those this replica judged before the state failed half way through the batch come
            # out as duplicates too: nothing found (an empty entry, never recorded), or what they
            # found waits in _unrecorded or was recorded.
            for key in self._judged_before.get(batch, ()):
                outcome.found.setdefault(key, [])
        if decoded.events:
            try:
                self.engine.process(decoded.events, now=now, outcome=outcome)
            except StoreError:
                if keep:  # the batch is replayed: what was judged of it is not judged again
                    judged = self._judged_before.setdefault(batch, set())
                    judged.update(event.dedupe_key for event in outcome.processed)
                raise
            finally:
                # Only what the engine took counts in the chart and the index, also when it
                # failed half way: never a second report of one attempt (the SDK's "both"
                # mode, a retried batch) nor a rejected event.
                self.activity.add(outcome.processed)
                self.profiles.saw(outcome.processed)
                outcome.processed = []
                # Even when the engine failed half way: the events before the failure are
                # counted and will not be counted again, so what they found must be recorded.
                found = {key: deltas for key, deltas in outcome.found.items() if deltas}
                if found:  # a batch retried after failing half way adds the rest
                    self._unrecorded.setdefault(batch, {}).update(found)
                elif outcome.findings and not batch:
                    self._unrecorded_plain.extend(outcome.findings)
                self._unrecorded_users.update(outcome.users)
                self._unrecorded_ips.update(outcome.ips)
                self._unrecorded_subjects.update(outcome.subjects)
        recorded = self._record()
        # Not while replaying the journal at startup: those findings were answered when they
        # were live, and a decision removed by hand since must not come back from the replay.
        made = [] if replay else self._respond(recorded)
        if not replay:
            self._announce_critical(recorded)
        if self.exporter is not None and not replay and decoded.events:
            try:
                if recorded:
                    self.exporter.findings(recorded)
                if made:
                    self.exporter.decisions(made, "created")
                self.exporter.counters(self.engine.stats, self.engine.findings_by_kind)
            except Exception:  # the export path must never fail ingest
                logger.exception("exporting findings failed")
        return outcome

    def _announce_critical(self, findings: list[Finding]) -> None:
        """One WARNING line per critical finding (an account takeover), the first time it is
        recorded critical: the one finding an operator tailing the log must not miss. It carries
        the summary, which names the account by its label: in anonymization mode the
        application sends none, so no raw identifier reaches the log."""
        for finding in findings:
            if finding.severity != "critical" or finding.id in self._announced:
                continue
            self._announced[finding.id] = None
            if len(self._announced) > _ANNOUNCED_MAX:
                del self._announced[next(iter(self._announced))]
            logger.warning(
                "critical finding %s (%s): %s", finding.kind, finding.id, finding.summary
            )

    def _kept(self, batch: int) -> dict[str, list[Finding]]:
        """What the events of journal batch ``batch`` found, by dedupe key, as kept in the state
        by whichever replica processed them (:meth:`Engine._judge_found`); the users and
        addresses they touched join the profiles to record."""
        found: dict[str, list[Finding]] = {}
        for key, record in self.engine.state.kept(kept_key(batch)).items():
            found[key] = [Finding.from_json(raw) for raw in record.get("f", ())]
            if record.get("u"):
                self._unrecorded_users.add(record["u"])
            if record.get("i"):
                self._unrecorded_ips.add(record["i"])
        if found:
            logger.info("batch %d: what %d of its events found was kept", batch, len(found))
        return found

    def _record(self) -> list[Finding]:
        """Hand the store what processing produced, each event once (kept for the next try when
        it fails); returns the finding deltas recorded, this batch's and any left by a failed
        one."""
        recorded: list[Finding] = []
        if self._unrecorded_plain:
            self.store.record_findings(self._unrecorded_plain)
            recorded, self._unrecorded_plain = self._unrecorded_plain, []
        for batch in list(self._unrecorded):
            recorded.extend(self.store.record_batch(batch, self._unrecorded[batch]))
            del self._unrecorded[batch]  # only once recorded: a failure keeps it for the next try
            if self.engine.keep_findings:
                # Recorded, and marked so: what its events found need not be kept any more.
                try:
                    self.engine.state.drop(kept_key(batch))
                except StoreError as exc:  # it expires with the batch's dedupe claims
                    logger.warning("could not drop the findings kept for batch %d: %s", batch, exc)
        if self._unrecorded_users or self._unrecorded_ips:
            self.profiles.record(
                self._unrecorded_users, self._unrecorded_ips, self._unrecorded_subjects
            )
            self._unrecorded_users.clear()
            self._unrecorded_ips.clear()
            self._unrecorded_subjects.clear()
        return recorded

    # -- decisions ---------------------------------------------------------------------------------

    def _respond(self, findings: list[Finding]) -> list[Decision]:
        """The decisions these findings call for, stored. A store failure here is logged, not
        raised: the findings are recorded, and the next batch that grows them answers them."""
        store = self.store
        if not findings or not self.responses.enabled or not isinstance(store, DecisionStore):
            return []
        now = time.time()
        since = now - self.responses.recidive_window

        def held(scope: str, value: str) -> str | None:
            actions = {d.action for d in store.decisions(now=now, scope=scope, value=value)}
            return "block" if "block" in actions else next(iter(actions), None)

        try:
            allowlist = Allowlist.of((e.kind, e.value) for e in store.allowlist())
            wanted = respond(
                findings,
                self.responses,
                allowlist=allowlist,
                held=held,
                repeats=lambda scope, value: store.count_decisions(scope, value, since),
                now=now,
            )
            made = store.add_decisions(wanted, "usermon") if wanted else []
        except StoreError as exc:
            logger.error(
                "recording protection decisions failed (retried as findings grow): %s", exc
            )
            return []
        for decision in made:
            # Without its value (an address, a user.hash): the processor's log names no user
            # and no address (docs/processor.md, "Security"); the API has the whole decision.
            logger.warning(
                "decision %s: %s %s until %s (%s)",
                decision.id,
                decision.action,
                decision.scope,
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(decision.until)),
                decision.origin,
            )
        return made

    def add_decisions(self, decisions: Sequence[Decision], who: str) -> list[Decision]:
        """Store decisions a person made (API, CLI) and export them; the store must be a
        :class:`DecisionStore`."""
        store = self.store
        assert isinstance(store, DecisionStore)
        added = store.add_decisions(decisions, who)
        self._export_decisions(added, "created")
        return added

    def remove_decisions(self, ids: Sequence[str], who: str) -> list[Decision]:
        """Remove decisions by id; returns those that were active."""
        store = self.store
        assert isinstance(store, DecisionStore)
        ids = list(dict.fromkeys(ids))
        known = store.decisions(now=0.0, include_inactive=True, ids=ids, limit=max(1, len(ids)))
        before = {d.id: d for d in known}
        removed = store.remove_decisions(ids, who)
        gone = [before[i] for i in removed if i in before]
        self._export_decisions(gone, "removed")
        return gone

    def _export_decisions(self, decisions: Sequence[Decision], change: str) -> None:
        if self.exporter is None or not decisions:
            return
        try:
            self.exporter.decisions(decisions, change)
        except Exception:  # the export path must never fail a request
            logger.exception("exporting decisions failed")

    def checkpoint(self) -> None:
        """Make everything processed so far durable as one checkpoint (caller holds no lock)."""
        started = time.monotonic()
        self.store.checkpoint(self._position, self.engine.snapshot())
        self._last_checkpoint = time.monotonic()
        self._unsaved = 0
        logger.debug(
            "checkpoint at %d took %.3f s", self._position, self._last_checkpoint - started
        )

    def close(self) -> None:
        """Checkpoint (what fails is logged: the journal still holds it) and release all."""
        self._stop.set()
        if self._adopter is not None:
            self._adopter.join(timeout=10.0)
        with self.lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._failed:
                    self._replay_failed()
                self._record()
                if not self._orphans and not self._failed:  # else the journal keeps them
                    self.checkpoint()
            except StoreError as exc:
                logger.error("final checkpoint failed, the journal will be replayed: %s", exc)
            finally:
                self.store.close()
                if self.exporter is not None:
                    self.exporter.shutdown()
                # The Tor refresher's thread and the GeoIP databases' files.
                close_enricher = getattr(self.engine.enricher, "close", None)
                if close_enricher is not None:
                    close_enricher()

    def describe(self) -> str:
        """One line for the startup log (no secrets, no identifiers)."""
        s = self.settings
        return (
            f"usermon processor on {s.listen_host}:{s.listen_port}, store {redact(s.store)}, "
            f"{len(self.engine.detectors)} detectors, enrichment "
            f"{'on' if self.engine.enricher else 'off'}, "
            f"OTLP out {'to ' + s.otlp_endpoint if s.otlp_endpoint else 'off'}"
        )


def _result(decoded: Decoded, outcome: Outcome) -> IngestResult:
    reasons = [*decoded.reasons, *outcome.reasons]
    rejected_events = decoded.rejected_events + outcome.rejected
    # Engine rejections (late, future) are per event; each is its own span or log record.
    items = decoded.rejected_items + outcome.rejected
    message = ""
    if rejected_events:
        message = f"{rejected_events} usermon event(s) rejected: " + "; ".join(reasons)
    return IngestResult(outcome.accepted, items, message)


def _store_options(settings: Settings) -> dict[str, object]:
    scheme = settings.store.split("://", 1)[0].lower()
    options: dict[str, object] = {"max_keys": settings.max_keys}  # every backend takes it
    if settings.state_url and scheme in ("postgresql", "postgres"):
        options["state_url"] = settings.state_url
    return options


def _configured_detectors(settings: Settings) -> list[Detector]:
    from usermon.processor.detectors import default_detectors
    from usermon.processor.rules import load_rules

    return list(default_detectors(load_rules(settings.rules)))


def _configured_enricher(settings: Settings) -> Enricher | None:
    if not (settings.geoip_db or settings.asn_db or settings.tor_exits or settings.ip_ranges):
        return None
    from usermon.processor import intel

    build = getattr(intel, "from_settings", None)
    if build is None:
        raise RuntimeError("enrichment was configured but usermon.processor.intel has no builder")
    enricher: Enricher | None = build(settings)
    return enricher
