"""campaigns: surges across a whole service that depart from its baseline the way attacks do.

Per service (``service.name``) it counts, over ``window`` and over ``baseline`` (the site's own
rate, learned from the stream), the failed logins on *unknown* accounts (``usermon.user.exists =
false`` where the application sends it; otherwise accounts with no successful login on record)
and how many distinct addresses carried them, and the signups, their addresses and their
User-Agents. Credential stuffing through residential proxies fails on accounts that do not exist
here, from addresses used once: the unknown-account failures surge far above their baseline and
nearly every one comes from another address. A forced password reset fails on known accounts; a
marketing e-mail raises everything in proportion; a NAT is a handful of addresses. A signup farm
is a surge of signups from as many addresses as accounts, with one browser; a marketing e-mail
brings every browser there is.

A campaign is reported as one finding on the service (subject type ``service``), grown by every
further attempt while it lasts (``episode_gap`` = ``window``, so a campaign that pauses less than
that stays one finding). While it runs, its attempts do not enter the baseline and it is
measured against what the baseline expected when it began, so a steady flood does not become the
usual rate. Its evidence names the campaign's sources (the ``top`` ASNs with their
counts, the number of distinct addresses) and victims (accounts tried), and its fingerprint: what
an application can match at login time (:mod:`~usermon.processor.detectors.fingerprint`), which
the ``service_campaign`` response challenges. While it is active, the campaign record at
:func:`campaign_key` tells account takeover which successes share its sources, and
:func:`campaign_of` which findings on single sources belong to it.

Cost: nothing on a successful login here (account takeover reads the campaign record); on a
failure on an unknown account, four windowed counters (the window's, fine-grained, the baseline's,
coarse, its ASN's and its User-Agent bucket's) and two distinct sets (addresses, strings): six
State steps, and a record opened and written once the thresholds are crossed (with a few reads
when the fingerprint is derived again: at its sample, each doubling, every 1024 attempts); on a
signup, four. Bounded: a million-address campaign is two distinct sets per service, capped at the
State's member cap (estimated beyond it), one counter per ASN it comes from within the window, at
most :data:`AGENT_BUCKETS` counters of User-Agent buckets, a few counters, one counting map of
ASNs, one record (whose fingerprint summaries hold 24 entries at most) and one list of
:data:`CANDIDATES` remembered successes per service.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Sequence
from typing import Any

from usermon.processor.detectors import fingerprint
from usermon.processor.detectors.shared import PREFIX, SharedCounts, network_of
from usermon.processor.detectors.suspicious_login import GLOBAL_KEY, USERS_FIELD, agent_digest
from usermon.processor.findings import finding_id
from usermon.processor.model import Event, NetworkInfo, Severity, Signal, Subject
from usermon.processor.rules import CampaignsRules
from usermon.processor.storage.state.base import State
from usermon.processor.storage.state.steps import Step

KIND = "campaigns"
LOGIN_KIND = "credential_stuffing"
SIGNUP_KIND = "signup_abuse"
SERVICE_LIMIT = 1024  # services whose first-seen time this process remembers (read once each)
CANDIDATES = 64  # successes a service remembers, before a campaign fires, to attribute then
AGENT_BUCKET = 3  # hex digits of a User-Agent digest counted apart ...
AGENT_BUCKETS = 16**AGENT_BUCKET  # ... so at most this many keys per service
SOURCES_EVERY = 64  # attempts between two readings of a campaign's sources for its evidence


def source_key(service: str, asn: int) -> str:
    """State key of the windowed count of failures on unknown accounts from network ``asn``."""
    return f"{PREFIX}svc:{service}:uf:asn:{asn}"


def agent_key(service: str, digest: str) -> str:
    """State key of the windowed count of failures on unknown accounts sent by the User-Agent
    strings of one bucket: the first :data:`AGENT_BUCKET` hex digits of their digest
    (:func:`agent_digest`), so a tool sending a new string every time fills a bounded number
    of keys."""
    return f"{PREFIX}svc:{service}:uf:ua:{digest[:AGENT_BUCKET]}"


def in_fingerprint(
    state: State,
    service: str,
    asn: int | None,
    digest: str,
    t: float,
    rules: CampaignsRules,
) -> bool:
    """Whether a success from network ``asn`` with the User-Agent of ``digest`` matches the
    campaign's networks and browser mix on ``service``: the network carried at least
    ``source_failures`` of the window's failures on unknown accounts, and so did the string,
    unless the campaign's strings are too many to be a mix (``rotating_agents``)."""
    if asn is None:
        return False
    window, least = rules.window, rules.source_failures
    if state.count(source_key(service, asn), t, window) < least:
        return False
    if state.count(agent_key(service, digest), t, window) >= least:
        return True
    base = f"{PREFIX}svc:{service}:uf"
    strings = state.distinct_count(f"{base}:ua", t, window)
    return strings >= rules.rotating_agents * state.count(f"{base}:w", t, window)


def candidates_key(service: str) -> str:
    """State key of the windowed list of the successes remembered while no campaign was
    running (see :func:`remember_candidate`)."""
    return f"{campaign_key(service, LOGIN_KIND)}:cands"


def legacy_candidates_key(service: str) -> str:
    """State key of the record in which the previous version remembered them (``{"successes":
    [...]}``, read and written whole): still read, until it expires (docs/deploy.md)."""
    return f"{campaign_key(service, LOGIN_KIND)}:cand"


def remember_candidate(state: State, event: Event, window: float) -> None:
    """Remember a success that would share a campaign's fingerprint, had one been running: a
    campaign fires only once ``min_failures`` failures have come, and its first victims got in
    before that. Kept for ``window``, the newest :data:`CANDIDATES`: appended in one step
    (:meth:`State.append_entry`), so replicas remembering at once lose none."""
    assert event.service is not None
    asn = event.network.asn if event.network is not None else None
    digest = agent_digest(event.user_agent)
    entry = [event.user_hash, event.label, event.time, event.trace_id, event.client_ip, asn, digest]
    state.append_entry(candidates_key(event.service), entry, event.time, window, CANDIDATES)


def takeover_signal(login: Event, record: dict[str, Any]) -> Signal:
    """The ``account_takeover`` finding of a success attributed to the campaign ``record``."""
    assert login.user_hash is not None
    return Signal(
        kind="account_takeover",
        severity="critical",
        subject=Subject("user", login.user_hash, login.label),
        summary=f"successful login on {login.label or 'an account'} from {login.client_ip}, new "
        f"to the user, during a credential-stuffing campaign on {login.service}",
        event=login,
        evidence={
            "attacks": [
                {
                    "scope": "service",
                    "kind": LOGIN_KIND,
                    "since": record["since"],
                    "ip": None,
                    "trace_id": None,
                }
            ],
            "campaign": record["id"],
        },
    )


def campaign_key(service: str, kind: str) -> str:
    """State key of the active campaign record of ``kind`` on ``service``."""
    return f"{PREFIX}svc:{service}:camp:{kind}"


def active_campaign(
    state: State, service: str | None, kind: str, t: float, window: float
) -> dict[str, Any] | None:
    """The campaign of ``kind`` running on ``service`` at ``t`` (its last attempt within
    ``window``), or None."""
    if not service:
        return None
    record = state.get(campaign_key(service, kind))
    if record is None or t - float(record["last"]) > window or t < float(record["since"]):
        return None
    return record


def unknown_account(event: Event, state: State, counts: SharedCounts) -> bool:
    """Whether a failed login was on an account that does not exist (or never got in)."""
    if event.exists is not None:
        return not event.exists
    if not event.user_hash:
        return True
    return not counts.tally(event, state).profile()


def campaign_of(state: State, event: Event, counts: SharedCounts) -> str | None:
    """The id of the campaign running on ``event``'s service that its source belongs to, if
    any: for a per-address or per-account finding's evidence (``campaign``).

    A login belongs to the credential-stuffing campaign, a signup to the signup campaign, when
    it shares the campaign's fingerprint; while the campaign has none (too young, or nothing
    an application could match covers it), when it is an attempt the campaign counts (a failure
    on an unknown account; a signup). One record read, made only for events that raise a
    finding."""
    kind = SIGNUP_KIND if event.kind == "signup" else LOGIN_KIND
    record = active_campaign(state, event.service, kind, event.time, counts.rules.campaigns.window)
    if record is None:
        return None
    value = record.get("fingerprint")
    if value:
        found = fingerprint.parse(str(value))
        ip = event.client_ip

        def net() -> str | None:
            return network_of(ip, *counts.prefixes) if ip else None

        if found is not None and fingerprint.matches(found, event.user_agent, net):
            return str(record["id"])
        return None
    if kind == SIGNUP_KIND or (not event.success and unknown_account(event, state, counts)):
        return str(record["id"])
    return None


def source_name(network: NetworkInfo | None) -> str:
    """How a campaign's evidence names a source network: its ASN and organisation."""
    if network is None or network.asn is None:
        return "unknown"
    return f"AS{network.asn} {network.as_org or ''}".strip()


class CampaignDetector:
    name = KIND

    def __init__(self, rules: CampaignsRules, counts: SharedCounts) -> None:
        self.rules = rules
        self.counts = counts
        self._since: dict[str, float] = {}

    def plan(self, event: Event) -> Sequence[Step]:
        """The shared tally's steps when :meth:`_unknown` reads the profile through it; the
        campaign's own counting is not declared (it depends on that read): it runs as direct
        calls, on keys no plan touches."""
        if not event.service or not event.client_ip or event.kind == "signup" or event.success:
            return ()
        if event.exists is not None or not event.user_hash:
            return ()
        return self.counts.plan(event)

    def observe(self, event: Event, state: State) -> Iterable[Signal]:
        service = event.service
        if not service or not event.client_ip:
            return ()
        if service not in self._since:
            self._learn_since(state, service, event.time)
        if event.kind == "signup":
            return self._signup(event, state, service)
        if event.success or not self._unknown(event, state):
            return ()
        r = self.rules
        base = f"{PREFIX}svc:{service}:uf"
        hour, week, running = self._count(state, base, event.time, service, LOGIN_KIND)
        addresses = state.add_distinct(f"{base}:ip", event.client_ip, event.time, r.window)
        network = event.network
        if network is not None and network.asn is not None:
            # Which networks and browsers the failures come from, counted from the first one
            # (before any campaign fires): the fingerprint its successes are matched against.
            state.add(source_key(service, network.asn), event.time, r.window)
            digest = agent_digest(event.user_agent)
            state.add(agent_key(service, digest), event.time, r.window)
            state.add_distinct(f"{base}:ua", digest, event.time, r.window)
        if hour < r.min_failures or addresses < r.spread * hour:
            return ()
        expected = self._expected(state, service, event.time, hour, week, running)
        if expected is None or hour < r.surge * expected:
            return ()
        return self._report(
            event, state, service, LOGIN_KIND, hour, addresses, expected, "failed logins"
        )

    # -- the pieces ---------------------------------------------------------------------------

    def _count(
        self, state: State, base: str, t: float, service: str, kind: str
    ) -> tuple[int, int, dict[str, Any] | None]:
        """The window's and the baseline's totals, counted apart (one counter read over both
        would keep the window's fine buckets for the whole baseline, a week of them), and the
        campaign of ``kind`` running on the service, if any.

        While a campaign runs, its attempts do not enter the baseline (its total is then 0,
        unread): a steady flood would otherwise become the usual rate it is compared with and
        stop being reported after hours. Whether one runs is read only once the window holds
        ``min_failures`` (``min_signups``) attempts, the least a campaign has."""
        r = self.rules
        hour = state.add(f"{base}:w", t, r.window)
        least = r.min_signups if kind == SIGNUP_KIND else r.min_failures
        record = None
        if hour >= least and self._learned(state, service, t):
            record = state.get(campaign_key(service, kind))
        if record is not None and t - float(record["last"]) <= r.window:
            return hour, 0, record
        # The window after a campaign still holds attempts the baseline never learned, which
        # would lower what it expects below what it expected when the campaign began.
        ended = record if record is not None and t - float(record["last"]) <= 2 * r.window else None
        return hour, state.add(f"{base}:b", t, r.baseline), ended

    def _unknown(self, event: Event, state: State) -> bool:
        """Whether the failed login was on an account that does not exist (or never got in)."""
        return unknown_account(event, state, self.counts)

    def _expected(
        self,
        state: State,
        service: str,
        t: float,
        now: int,
        total: int,
        running: dict[str, Any] | None = None,
    ) -> float | None:
        """What ``window`` usually holds on this service, from its baseline (None while the
        service is still being learned); while a campaign runs, what it held when the campaign
        began (kept in its record), since the baseline does not learn the campaign's attempts."""
        r = self.rules
        floor = float(running.get("expected", 0.0)) if running is not None else 0.0
        if running is not None and t - float(running["last"]) <= r.window and floor:
            return floor
        since = self._since.get(service)
        if since is None:
            since = self._learn_since(state, service, t)
        learned = min(r.baseline, t - since) - r.window
        if learned < r.learn - r.window:
            return None
        # The baseline window's attempts before the current one, as a rate per window; one
        # attempt at least, so a site that never saw one still needs min_failures.
        return max(floor, max(1.0, total - now) * r.window / learned)

    def _learned(self, state: State, service: str, t: float) -> bool:
        """Whether the service is past its ``learn`` period (:meth:`_expected` judges it)."""
        since = self._since.get(service)
        if since is None:
            since = self._learn_since(state, service, t)
        return min(self.rules.baseline, t - since) >= self.rules.learn

    def _learn_since(self, state: State, service: str, t: float) -> float:
        """When this service's stream began (as the State remembers it), read once per process
        and service: a fact that never changes, so replicas agree."""
        key = f"{PREFIX}svc:{service}:since"
        record = state.get(key)
        if record is None:
            state.put(key, {"t": t}, t, 10 * self.rules.baseline)
            since = t
        else:
            since = min(t, float(record["t"]))
        if len(self._since) < SERVICE_LIMIT:
            self._since[service] = since
        return since

    def _signup(self, event: Event, state: State, service: str) -> Iterable[Signal]:
        r = self.rules
        assert event.client_ip is not None
        base = f"{PREFIX}svc:{service}:su"
        hour, week, running = self._count(state, base, event.time, service, SIGNUP_KIND)
        addresses = state.add_distinct(f"{base}:ip", event.client_ip, event.time, r.window)
        agent = hashlib.blake2b((event.user_agent or "").encode(), digest_size=8).hexdigest()
        same_agent = state.add(f"{base}:ua:{agent}", event.time, r.window)
        if hour < r.min_signups or addresses < r.spread * hour or same_agent < r.agent_share * hour:
            return ()
        expected = self._expected(state, service, event.time, hour, week, running)
        if expected is None or hour < r.signup_surge * expected:
            return ()
        return self._report(
            event, state, service, SIGNUP_KIND, hour, addresses, expected, "signups"
        )

    def _report(
        self,
        event: Event,
        state: State,
        service: str,
        kind: str,
        count: int,
        addresses: int,
        expected: float,
        what: str,
    ) -> Iterable[Signal]:
        r = self.rules
        t = event.time
        key = campaign_key(service, kind)
        # One atomic step, so that replicas opening the campaign at once name it alike.
        opening = {
            "since": t,
            "id": finding_id(kind, "service", service, t),
            "takeovers": 0,
            "expected": expected,
        }
        record, opened = state.open_episode(key, opening, t, r.window, r.baseline)
        earlier: list[Signal] = []
        derived = self._fingerprint(record, event, state)
        if kind == LOGIN_KIND and (opened or derived):
            # At its opening, and again at each new fingerprint: a campaign recognised early
            # has counted too few failures from a victim's network yet.
            earlier = self._earlier_takeovers(state, service, record, t)
            record["takeovers"] = int(record.get("takeovers", 0)) + len(earlier)
        sources = f"{key}:src"
        state.incr_field(sources, source_name(event.network), t, r.baseline)
        if "top" not in record or count % SOURCES_EVERY == 0:
            # The map has one field per ASN (thousands for a wide pool): read and ranked once
            # every SOURCES_EVERY attempts, not at each, and kept in the record between.
            counted = state.fields(sources)
            ranked = heapq.nsmallest(r.top, counted.items(), key=lambda kv: (-kv[1], kv[0]))
            record["top"], record["distinct"] = ranked, len(counted)
        state.put(key, record, t, r.baseline)
        victims = 0
        if event.user_hash:
            victims = state.add_distinct(f"{key}:acc", event.user_hash, t, r.baseline)
        top = record["top"]
        takeovers = int(record.get("takeovers", 0))
        severity: Severity = "critical" if takeovers else "high" if count >= 500 else "medium"
        return (
            Signal(
                kind=kind,
                severity=severity,
                subject=Subject("service", service, service),
                summary=f"{service}: {count} {what} within {r.window:g} s from {addresses} "
                f"addresses, {count / expected:.0f}x the usual rate"
                + (f", {takeovers} accounts taken over" if takeovers else ""),
                event=event,
                evidence={
                    "campaign": record["id"],
                    "scope": "service",
                    "attempts": count,
                    "addresses": addresses,
                    "expected": round(expected, 2),
                    "window": r.window,
                    "accounts": victims,
                    "sources": [{"source": name, "count": n} for name, n in top],
                    "distinct_sources": record["distinct"],
                    "takeovers": takeovers,
                    "fingerprint": record.get("fingerprint") or None,
                    "fingerprint_coverage": record.get("coverage"),
                },
                related_users=(event.user_hash,) if event.user_hash else (),
                related_ips=(event.client_ip,) if event.client_ip else (),
                episode_gap=r.window,
                finding=record["id"],
            ),
            *earlier,
        )

    def _fingerprint(self, record: dict[str, Any], event: Event, state: State) -> bool:
        """Count the attempt into the campaign's summaries and, when due, derive its
        fingerprint again (docs/detection.md, "Campaign fingerprints"): a few reads, at
        ``fingerprint_sample`` attempts and then at each doubling. True when it did."""
        r = self.rules
        net = network_of(event.client_ip, *self.counts.prefixes) if event.client_ip else None
        fingerprint.observe(record, event.user_agent, net)
        if not fingerprint.due(record, r.fingerprint_sample):
            return False
        agents = {sha: int(entry[0]) for sha, entry in record["ua"].items()}
        nets = {name: int(entry[0]) for name, entry in record["net"].items()}
        found = fingerprint.derive(
            int(record["n"]),
            agents,
            nets,
            common_agents=self._common_agents(record, state, event.time),
            busy_nets=self._busy_nets(nets, state, event.time),
            coverage=r.fingerprint_coverage,
            max_agents=r.fingerprint_agents,
            max_nets=r.fingerprint_nets,
        )
        record["fingerprint"] = found.value if found is not None else ""
        record["coverage"] = round(found.coverage, 3) if found is not None else None
        return True

    def _common_agents(self, record: dict[str, Any], state: State, t: float) -> set[str] | None:
        """The campaign's User-Agents that more than ``fingerprint_agent_users`` of the service's
        users log in with, from the population suspicious_login keeps (None when it keeps none:
        nothing tells a bot's User-Agent from everyone's)."""
        fields = {f"ua|{entry[1]}": 0 for entry in record["ua"].values() if len(entry) > 1}
        fields[USERS_FIELD] = 0
        ttl = self.counts.rules.suspicious_login.profile_ttl
        # n = 0 reads the fields in one step (creating absent ones at 0, as the score's reads do)
        values = dict(zip(fields, state.incr_fields(GLOBAL_KEY, fields, t, ttl), strict=True))
        users = values.pop(USERS_FIELD)
        if users <= 0:
            return None
        limit = self.rules.fingerprint_agent_users * users
        return {
            sha
            for sha, entry in record["ua"].items()
            if len(entry) > 1 and values.get(f"ua|{entry[1]}", 0) > limit
        }

    def _busy_nets(self, nets: dict[str, int], state: State, t: float) -> set[str]:
        """The campaign's networks whose successful logins (as the shared counts keep them)
        reach ``fingerprint_net_success`` of its attempts from there: the service's own users."""
        window = min(self.rules.window, max(self.counts.success_windows))
        busy = set()
        for net, attempts in nets.items():
            if not net:
                continue
            successes = state.count(self.counts.source_key("network", net, "s"), t, window)
            if successes >= max(1.0, self.rules.fingerprint_net_success * attempts):
                busy.add(net)
        return busy

    def _earlier_takeovers(
        self, state: State, service: str, record: dict[str, Any], t: float
    ) -> list[Signal]:
        """The successes remembered within ``window`` before the campaign fired whose network
        turned out to be among its sources (``source_failures`` failures at least): read when
        the campaign begins and at each new fingerprint (few times: at each doubling of its
        attempts); those not matched yet are kept for the next."""
        r = self.rules
        key = candidates_key(service)
        listed = state.entries(key)
        old_key = legacy_candidates_key(service)
        legacy = (state.get(old_key) or {}).get("successes", [])
        if not listed and not legacy:
            return []
        since = float(record["since"])
        signals: list[Signal] = []
        reported: set[str] = set()

        def keep(entry: list[Any]) -> bool:
            """Judge one remembered success: False when it is reported now or never will be."""
            user, label, when, trace_id, ip, asn, digest = entry
            # Only what came before the campaign: a success during it was judged at its time.
            if t - float(when) > r.window or float(when) > since or user in reported:
                return False
            if not in_fingerprint(state, service, asn, digest, t, r):
                return True
            reported.add(user)
            login = Event(
                kind="login",
                time=float(when),
                success=True,
                user_hash=user,
                user_id=label,
                client_ip=ip,
                service=service,
                trace_id=trace_id,
            )
            signals.append(takeover_signal(login, record))
            return False

        if legacy:
            state.put(old_key, {"successes": [e for e in legacy if keep(e)]}, t, r.window)
        # Only the entries judged go: those another replica appended meanwhile stay.
        gone = [(appended, entry) for appended, entry in listed if not keep(entry)]
        if gone:
            state.remove_entries(key, gone)
        return signals
