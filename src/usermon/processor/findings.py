"""How findings grow: the one merge rule, for the engine and for every store.

A finding leaves the engine as a *delta* (what one batch added to it). The engine folds a
batch's signals into one delta per finding with :func:`merge_finding`, and each store merges a
delta into what it holds with the same function (the memory and SQLite stores in a map, the Redis
store under ``WATCH``), or, for PostgreSQL, with SQL that says the same thing
(``usermon_union``, bounded by :data:`MAX_EVIDENCE`): event counts add up, the time range widens,
the highest severity stays, the newest summary and subject win, and evidence lists are unioned,
newest first, :data:`MAX_EVIDENCE` at most.
"""

from __future__ import annotations

import hashlib
from collections.abc import Container, Iterable, Mapping, Sequence
from typing import Any

from usermon.processor.model import SEVERITY_RANK, Finding

__all__ = [
    "EVIDENCE_LISTS",
    "FINDING_GAP",
    "MAX_EVIDENCE",
    "evidence_union",
    "finding_id",
    "kept_key",
    "merge_events",
    "merge_finding",
]

FINDING_GAP = 3600.0
"""A finding with no new signal for this long is closed; the next signal opens a new one (a
signal may ask for a longer gap: :attr:`~usermon.processor.model.Signal.episode_gap`)."""


def finding_id(kind: str, subject_type: str, subject_id: str, opened: float) -> str:
    """Deterministic id of the finding episode of ``kind`` on a subject opened at ``opened``
    (here, below the engine, so a detector can name the campaign finding it feeds)."""
    bucket = int(opened // FINDING_GAP)
    raw = f"{kind}\x00{subject_type}\x00{subject_id}\x00{bucket}".encode()
    return hashlib.sha256(raw).hexdigest()[:24]


def kept_key(batch: int) -> str:
    """The state's kept map (:meth:`~usermon.processor.storage.state.base.State.keep`) where a
    replica sharing its state keeps what each event of journal batch ``batch`` found, from the
    moment the event is processed until the batch's findings are recorded (docs/processor.md,
    *Findings*)."""
    return f"k:{batch}"


MAX_EVIDENCE = 20
"""Most trace ids, IPs and users a finding's evidence keeps (the newest)."""

EVIDENCE_LISTS = ("trace_ids", "ips", "users")
"""The evidence entries that are lists, unioned on a merge (every other entry: the newest)."""


def evidence_union(newest: Iterable[Any], older: Iterable[Any]) -> list[Any]:
    """``newest`` then ``older``, without None or repeats, :data:`MAX_EVIDENCE` at most."""
    out: list[Any] = []
    for item in (*newest, *older):
        if item is not None and item not in out:
            out.append(item)
            if len(out) >= MAX_EVIDENCE:
                break
    return out


def merge_finding(stored: Finding | None, delta: Finding) -> Finding:
    """``stored`` grown by ``delta`` (a copy of ``delta`` when there is nothing stored)."""
    if stored is None:
        return Finding(
            id=delta.id,
            kind=delta.kind,
            severity=delta.severity,
            subject=delta.subject,
            first_seen=delta.first_seen,
            last_seen=delta.last_seen,
            event_count=delta.event_count,
            summary=delta.summary,
            evidence=dict(delta.evidence),
        )
    evidence = {**stored.evidence, **delta.evidence}
    for name in EVIDENCE_LISTS:
        evidence[name] = evidence_union(delta.evidence.get(name, ()), stored.evidence.get(name, ()))
    newer = delta.last_seen >= stored.last_seen
    return Finding(
        id=stored.id,
        kind=stored.kind,
        severity=max(stored.severity, delta.severity, key=SEVERITY_RANK.__getitem__),
        subject=delta.subject if newer else stored.subject,
        first_seen=min(stored.first_seen, delta.first_seen),
        last_seen=max(stored.last_seen, delta.last_seen),
        event_count=stored.event_count + delta.event_count,
        summary=delta.summary if newer else stored.summary,
        evidence=evidence,
    )


def merge_events(
    found: Mapping[str, Sequence[Finding]], skip: Container[str] = ()
) -> list[Finding]:
    """What the events of ``found`` (dedupe key -> the finding deltas it raised) found, but
    those in ``skip``, as one delta per finding: merged in event order, as the engine merges
    them live (the newest summary and evidence last). For :meth:`Store.record_batch`."""
    deltas = [d for key, ds in found.items() if key not in skip for d in ds]
    merged: dict[str, Finding] = {}
    for delta in sorted(deltas, key=lambda d: d.last_seen):  # stable: ties keep their order
        merged[delta.id] = merge_finding(merged.get(delta.id), delta)
    return list(merged.values())
