"""Scoring findings against the generator's ground truth: precision and recall per finding kind,
and the share of benign users flagged.

A finding is traced to the campaigns it points at, through its evidence's trace ids (the most
direct link: they are the events behind it), its subject (a user a campaign targets, an address or
network a campaign attacks from) and its evidence's users and addresses. It is a true positive
when one of those campaigns may truthfully be reported as the finding's kind
(:attr:`~usermon.processor.simulate.traffic.Campaign.kinds`), else a false positive. A campaign
is detected when a finding of its own kind points at it. A benign user (one no campaign touches)
is flagged when a finding names them as its subject or in its evidence, or stands on one of
their events.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from usermon.processor.model import FINDING_KINDS, Finding
from usermon.processor.simulate.traffic import Traffic


@dataclass(frozen=True, slots=True)
class KindScore:
    kind: str
    findings: int
    true_positives: int
    campaigns: int
    detected: int
    false_positive_ids: tuple[str, ...] = ()
    missed_campaigns: tuple[str, ...] = ()

    @property
    def precision(self) -> float:
        """True positives over findings of this kind (1.0 when there are none)."""
        return self.true_positives / self.findings if self.findings else 1.0

    @property
    def recall(self) -> float:
        """Campaigns of this kind detected over campaigns of this kind (1.0 when none ran)."""
        return self.detected / self.campaigns if self.campaigns else 1.0


@dataclass(frozen=True, slots=True)
class ClassScore:
    """One attack class (its campaigns) or benign class (its users), scored."""

    cls: str
    kind: str  # the finding kind an attack class must raise; "benign" for a benign class
    campaigns: int = 0
    detected: int = 0
    findings: int = 0  # findings (any kind) pointing at the class's campaigns
    campaign_findings: int = 0  # of those, the ones not about one victim account (a takeover)
    true_positives: int = 0  # of those, the ones whose kind describes their campaign
    takeovers: int = 0  # accounts the campaigns got into
    takeovers_found: int = 0  # of those, named by an account_takeover finding
    users: int = 0  # benign class: its users
    flagged: int = 0  # benign class: its users flagged

    @property
    def recall(self) -> float:
        return self.detected / self.campaigns if self.campaigns else 1.0

    @property
    def precision(self) -> float:
        return self.true_positives / self.findings if self.findings else 1.0

    @property
    def per_campaign(self) -> float:
        """Findings about the campaigns themselves (their sources, the service), per campaign;
        a victim's own findings (a takeover on that account) are counted apart."""
        return self.campaign_findings / self.campaigns if self.campaigns else 0.0


@dataclass(frozen=True, slots=True)
class Report:
    kinds: dict[str, KindScore]
    benign_users: int
    benign_flagged: tuple[str, ...]
    unexpected: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """False-positive findings by kind, as JSON, for diagnosis."""
    classes: dict[str, ClassScore] = field(default_factory=dict)
    """Per attack class and benign look-alike class, when the traffic has them."""

    def class_table(self) -> str:
        """The per-class scores as a Markdown table (empty when the traffic has no classes)."""
        if not self.classes:
            return ""
        rows = [
            "| class | kind | campaigns | detected | recall | findings | precision "
            "| findings/campaign (not on a victim) | takeovers found | benign users flagged |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for c in self.classes.values():
            if c.kind == "benign":
                share = c.flagged / c.users if c.users else 0.0
                rows.append(
                    f"| {c.cls} | benign | | | | {c.findings} | | | "
                    f"| {c.flagged} of {c.users} ({share:.3%}) |"
                )
            else:
                taken = f"{c.takeovers_found} of {c.takeovers}" if c.takeovers else ""
                rows.append(
                    f"| {c.cls} | {c.kind} | {c.campaigns} | {c.detected} | {c.recall:.3f} "
                    f"| {c.findings} | {c.precision:.3f} | {c.per_campaign:.1f} | {taken} | |"
                )
        return "\n".join(rows)

    @property
    def benign_flagged_share(self) -> float:
        return len(self.benign_flagged) / self.benign_users if self.benign_users else 0.0

    def failures(
        self, precision: float = 0.95, recall: float = 0.95, flagged: float = 0.001
    ) -> list[str]:
        """What misses the targets, one line each; empty when every target is met."""
        out = [
            f"{s.kind}: precision {s.precision:.3f} < {precision}"
            for s in self.kinds.values()
            if s.precision < precision
        ] + [
            f"{s.kind}: recall {s.recall:.3f} < {recall} (missed {', '.join(s.missed_campaigns)})"
            for s in self.kinds.values()
            if s.recall < recall
        ]
        if self.benign_flagged_share > flagged:
            out.append(f"benign users flagged {self.benign_flagged_share:.4%} > {flagged:.2%}")
        for c in self.classes.values():
            if c.kind == "benign":
                if c.users and c.flagged / c.users > flagged:
                    out.append(f"{c.cls}: benign users flagged {c.flagged} of {c.users}")
                continue
            if c.recall < recall:
                out.append(f"{c.cls}: recall {c.recall:.3f} < {recall}")
            if c.precision < precision:
                out.append(f"{c.cls}: precision {c.precision:.3f} < {precision}")
            if c.per_campaign > 3:
                out.append(f"{c.cls}: {c.per_campaign:.1f} findings per campaign > 3")
            if c.takeovers and c.takeovers_found < recall * c.takeovers:
                out.append(f"{c.cls}: takeovers found {c.takeovers_found} of {c.takeovers}")
        return out

    def table(self) -> str:
        """The report as a Markdown table."""
        rows = [
            "| kind | campaigns | detected | recall | findings | true positives | precision |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for s in self.kinds.values():
            rows.append(
                f"| {s.kind} | {s.campaigns} | {s.detected} | {s.recall:.3f} | {s.findings} "
                f"| {s.true_positives} | {s.precision:.3f} |"
            )
        rows.append(
            f"\nBenign users flagged: {len(self.benign_flagged)} of {self.benign_users} "
            f"({self.benign_flagged_share:.3%})."
        )
        return "\n".join(rows)


def _as_json(finding: Finding | Mapping[str, Any]) -> Mapping[str, Any]:
    return finding.to_json() if isinstance(finding, Finding) else finding


def score(traffic: Traffic, findings: Iterable[Finding | Mapping[str, Any]]) -> Report:
    """Score ``findings`` (objects, or their JSON as ``GET /api/findings`` serves it)."""
    label_of: dict[str, str | None] = {}
    users_of_trace: dict[str, str] = {}
    for event, label in traffic.labelled():
        if event.trace_id:
            label_of[event.trace_id] = label
            if event.user_hash:
                users_of_trace[event.trace_id] = event.user_hash
    by_victim: dict[str, set[str]] = {}
    by_ip: dict[str, set[str]] = {}
    for c in traffic.campaigns.values():
        for v in c.victims:
            by_victim.setdefault(v, set()).add(c.id)
        for ip in c.attacker_ips:
            by_ip.setdefault(ip, set()).add(c.id)
    email_to_hash = {email: h for h, email in traffic.users.items()}

    def user_key(value: str) -> str:
        return email_to_hash.get(value, value)

    def campaigns_at(subject_type: str, subject_id: str) -> set[str]:
        if subject_type == "user":
            return by_victim.get(user_key(subject_id), set())
        if subject_type == "ip":
            return by_ip.get(subject_id, set())
        # A network subject may be a CIDR, an AS number or a provider name: match the campaigns
        # whose addresses it covers.
        found: set[str] = set()
        for ip, cids in by_ip.items():
            info = traffic.world.lookup(ip)
            names = (
                {str(info.asn), f"AS{info.asn}", info.as_org, info.network_name} if info else set()
            )
            if subject_id in names or _in_cidr(ip, subject_id):
                found |= cids
        return found

    tp: dict[str, int] = dict.fromkeys(FINDING_KINDS, 0)
    total: dict[str, int] = dict.fromkeys(FINDING_KINDS, 0)
    detected: dict[str, set[str]] = {k: set() for k in FINDING_KINDS}
    unexpected: dict[str, list[dict[str, Any]]] = {}
    flagged: set[str] = set()
    seen: list[tuple[str, set[str], set[str], str | None]] = []  # kind, campaigns, users, subject
    for raw in findings:
        f = _as_json(raw)
        kind = str(f["kind"])
        subject = f.get("subject") or {}
        evidence = f.get("evidence") or {}
        traces = [t for t in evidence.get("trace_ids", []) if t in label_of]
        pointed = {label for t in traces if (label := label_of[t]) is not None}
        pointed |= campaigns_at(str(subject.get("type")), str(subject.get("id")))
        for u in evidence.get("users", []):
            pointed |= by_victim.get(user_key(str(u)), set())
        for ip in evidence.get("ips", []):
            pointed |= by_ip.get(str(ip), set())
        named = {users_of_trace[t] for t in traces if label_of[t] is None and t in users_of_trace}
        named |= {user_key(str(u)) for u in evidence.get("users", [])}
        if subject.get("type") == "user":
            named.add(user_key(str(subject.get("id"))))
        flagged |= named & traffic.benign_users
        on_user = user_key(str(subject.get("id"))) if subject.get("type") == "user" else None
        seen.append((kind, pointed, named, on_user))
        total.setdefault(kind, 0)
        total[kind] += 1
        matching = {cid for cid in pointed if kind in traffic.campaigns[cid].kinds}
        if matching:
            tp[kind] = tp.get(kind, 0) + 1
            detected.setdefault(kind, set()).update(
                cid for cid in matching if traffic.campaigns[cid].kind == kind
            )
        else:
            unexpected.setdefault(kind, []).append(dict(f))
    campaigns_of: dict[str, list[str]] = {}
    for c in traffic.campaigns.values():
        campaigns_of.setdefault(c.kind, []).append(c.id)
    kinds = {
        kind: KindScore(
            kind=kind,
            findings=total[kind],
            true_positives=tp.get(kind, 0),
            campaigns=len(campaigns_of.get(kind, [])),
            detected=len(detected.get(kind, set())),
            false_positive_ids=tuple(str(f["id"]) for f in unexpected.get(kind, [])),
            missed_campaigns=tuple(
                c for c in campaigns_of.get(kind, []) if c not in detected.get(kind, set())
            ),
        )
        for kind in total
    }
    classes = _classes(traffic, seen, flagged) if traffic.benign_classes else {}
    return Report(kinds, len(traffic.benign_users), tuple(sorted(flagged)), unexpected, classes)


def _classes(
    traffic: Traffic, seen: list[tuple[str, set[str], set[str], str | None]], flagged: set[str]
) -> dict[str, ClassScore]:
    from usermon.processor.simulate.classes import ATTACK_CLASSES

    out: dict[str, ClassScore] = {}
    for cls, kind in ATTACK_CLASSES.items():
        ids = {c.id for c in traffic.campaigns.values() if c.cls == cls}
        if not ids:
            continue
        victims = {u for cid in ids for u in traffic.campaigns[cid].victims}
        pointing = [(k, p & ids, named, on) for k, p, named, on in seen if p & ids]
        detected = {cid for k, p, _, _ in pointing for cid in p if k == kind}
        true = [1 for k, p, _, _ in pointing if any(k in traffic.campaigns[cid].kinds for cid in p)]
        takeovers = {u for cid in ids for u in traffic.campaigns[cid].takeovers}
        found = {u for k, _, named, _ in seen if k == "account_takeover" for u in named}
        out[cls] = ClassScore(
            cls,
            kind,
            campaigns=len(ids),
            detected=len(detected),
            findings=len(pointing),
            campaign_findings=sum(1 for *_, on in pointing if on not in victims),
            true_positives=len(true),
            takeovers=len(takeovers),
            takeovers_found=len(takeovers & found),
        )
    for cls, users in traffic.benign_classes.items():
        members = users & traffic.benign_users
        out[cls] = ClassScore(
            cls,
            "benign",
            findings=sum(1 for _, _, named, _ in seen if named & members),
            users=len(members),
            flagged=len(members & flagged),
        )
    return out


def _in_cidr(ip: str, cidr: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False
