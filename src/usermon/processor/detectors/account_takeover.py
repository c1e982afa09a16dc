"""account_takeover: a successful login that follows an attack on that account, or that comes from
a source (address or network) attacking other accounts. Always critical. Failed logins mark the
attacked account or the attacking source in the State for ``memory`` seconds (the shared tally's
predicates decide, so no other detector need be enabled); a success reads those marks, and
successes from an address with recent failures are remembered so that a right password early in a
combo list is reported once the source is marked. docs/detection.md (*account_takeover*) says
which successes count and why the owner's own logins after an attack do not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from usermon.processor.aggregation import WINDOWS
from usermon.processor.detectors.campaign import (
    active_campaign,
    campaign_key,
    campaign_of,
    in_fingerprint,
    remember_candidate,
    takeover_signal,
)
from usermon.processor.detectors.shared import (
    PREFIX,
    SharedCounts,
    Tally,
    network_of,
    subject_for_user,
)
from usermon.processor.detectors.suspicious_login import agent_digest, agent_prefix
from usermon.processor.model import Event, Signal, Subject
from usermon.processor.rules import AccountTakeoverRules
from usermon.processor.storage.state.base import OK, State
from usermon.processor.storage.state.steps import Count, Get, Step

KIND = "account_takeover"
PENDING_LIMIT = 16  # successes remembered per suspect address
SUSPECT_ACCOUNTS = 1  # accounts failed from an address before its successes are remembered
RECORD_USERS = 64  # accounts of a newly marked address whose last success is looked at


def _label(attack: str) -> str:
    return attack.replace("_", " ")


def _known_browser(event: Event, profile: dict[str, int]) -> bool:
    """Whether the user logged in before with this login's device, OS and browser (any version:
    a browser update is the same browser)."""
    prefix = agent_prefix(event.user_agent)
    return any(name.startswith(prefix) for name in profile)


class AccountTakeoverDetector:
    name = KIND
    outcomes = frozenset(("success", "failure"))  # (Selective)

    def __init__(self, rules: AccountTakeoverRules, counts: SharedCounts) -> None:
        self.rules = rules
        self.counts = counts
        self._profile_read_anyway = counts.rules.suspicious_login.enabled
        counts.declare(self._reads)

    def plan(self, event: Event) -> Sequence[Step]:
        """The shared tally's steps, with :meth:`_reads` in them."""
        ip = event.client_ip
        if event.kind != "login" or not ip or (event.success and not event.user_hash):
            return ()
        return self.counts.plan(event)

    def _reads(self, event: Event) -> Sequence[Step]:
        """The marks and the reads a success may need (its pair's failures, the campaign it may
        join), declared in the shared tally's plan. The address's remembered successes are
        appended without a read, and read only when the address is first marked."""
        ip = event.client_ip
        if event.kind != "login" or not ip or (event.success and not event.user_hash):
            return ()
        steps: list[Step] = []
        if event.user_hash:
            steps.append(Get(self._key("u", event.user_hash)))
        steps.append(Get(self._key("ip", ip)))
        net = network_of(ip, *self.counts.prefixes)
        if net is not None:
            steps.append(Get(self._key("net", net)))
        if event.success:
            assert event.user_hash is not None
            pair = self.counts.pair_key(event.user_hash, ip)
            steps.append(Count(pair, event.time, self.counts.pair_window))
            if event.service:
                steps.append(Get(campaign_key(event.service, "credential_stuffing")))
        return steps

    def observe(self, event: Event, state: State) -> Iterable[Signal]:
        signals = tuple(self._observe(event, state))
        if not signals:
            return signals
        # A takeover by a source that belongs to the service's campaign names it.
        return tuple(
            signal
            if "campaign" in signal.evidence
            or (campaign := campaign_of(state, signal.event, self.counts)) is None
            else dataclasses.replace(signal, evidence={**signal.evidence, "campaign": campaign})
            for signal in signals
        )

    def _observe(self, event: Event, state: State) -> Iterable[Signal]:
        if event.kind != "login" or not event.client_ip:
            return ()
        if not event.success:
            return self._observe_failure(event, state)
        if not event.user_hash:
            return ()
        # The shared step must count this success too, whoever asks first.
        tally = self.counts.tally(event, state)
        # From an address the user logged in from before, a success is neither the attacker's
        # on a marked account nor a sprayer's neighbour's: only the address's own mark counts.
        # The profile that tells is read for this login anyway when suspicious_login runs (once,
        # through the tally), and then saves reading the account's and the network's marks
        # (without suspicious_login no profile is kept, so no address is familiar).
        usual = self._profile_read_anyway and tally.usual_address()
        # The account's, the address's and the network's marks, in that order; a key is built
        # only when its mark is read.
        marks: list[tuple[str, dict[str, Any]]] = []
        if not usual:
            mark = self._live_mark(state, self._key("u", event.user_hash), event)
            if mark is not None and self._attacker(event, state, tally, mark):
                marks.append(("account", mark))
        mark = self._live_mark(state, self._key("ip", event.client_ip), event)
        if mark is not None:
            marks.append(("ip", mark))
        if not usual and tally.network:
            mark = self._live_mark(state, self._key("net", tally.network), event)
            # Not from a neighbour of the sprayer logging in from their usual address.
            if mark is not None and not tally.familiar()[0]:
                marks.append(("network", mark))
        if not marks:
            joined = None if usual else self._campaign_takeover(event, state, tally)
            if joined is not None:
                return (joined,)
            self._remember_if_suspect(event, state, tally)
            return ()
        scope, mark = marks[0]
        who = event.label or "an account"
        if scope == "account":
            why = f"after a {_label(mark['attack'])} on it"
        else:
            why = f"from {'an IP' if scope == 'ip' else 'a network'} doing {_label(mark['attack'])}"
        return (
            Signal(
                kind=KIND,
                severity="critical",
                subject=subject_for_user(event),
                summary=f"successful login on {who} from {event.client_ip} {why}",
                event=event,
                evidence={"attacks": [self._attack(s, m) for s, m in marks]},
                related_ips=tuple(
                    sorted({str(m["ip"]) for _, m in marks if m.get("ip")} - {event.client_ip})
                ),
            ),
        )

    def _live_mark(self, state: State, key: str, event: Event) -> dict[str, Any] | None:
        """The mark at ``key``, unless none or older than ``memory`` at this event's time."""
        mark = state.get(key)
        if mark is None or event.time - float(mark["time"]) > self.rules.memory:
            return None
        return mark

    @staticmethod
    def _key(scope: str, value: str) -> str:
        return f"{PREFIX}ato:{scope}:{value}"

    @staticmethod
    def _attack(scope: str, mark: dict[str, Any]) -> dict[str, Any]:
        return {
            "scope": scope,
            "kind": mark["attack"],
            "since": mark["time"],
            "ip": mark.get("ip"),
            "trace_id": mark.get("trace_id"),
        }

    def _attacker(self, event: Event, state: State, tally: Tally, mark: dict[str, Any]) -> bool:
        """Whether this success on a marked account comes from the attack, not the owner."""
        ip_seen, network_seen = tally.familiar()
        if ip_seen:
            return False
        assert event.user_hash is not None
        assert event.client_ip is not None
        pair = self.counts.pair_key(event.user_hash, event.client_ip)
        failures = state.count(pair, event.time, self.counts.pair_window)
        if mark.get("ip") == event.client_ip or failures >= self.counts.rules.brute_force.failures:
            return True
        return failures > 0 and not network_seen

    def _campaign_takeover(self, event: Event, state: State, tally: Tally) -> Signal | None:
        """A success that shares the fingerprint of a credential-stuffing campaign on its
        service: from an address new to the user, and either from a network (ASN) or with a
        browser the user never used, or on an account with no login on record; and from a
        network the campaign's failures come from (``campaigns.source_failures`` within its
        window); and not after failures on the account from this address. Without a campaign
        running (yet), such a success is remembered for the campaign to attribute when it
        fires. Reads: the pair's failures, the network's count for such successes, the
        campaign record when it is high enough."""
        network = event.network
        if network is None or network.asn is None or not event.service:
            return None  # no network to compare with the campaign's
        if not self._profile_read_anyway:
            return None  # no profile kept: nothing is known to be new to the user
        ip_seen, network_seen = tally.familiar()
        if ip_seen:
            return None
        profile = tally.profile()
        if profile and network_seen and _known_browser(event, profile):
            return None  # a new address of the user's own provider, on the user's own browser
        assert event.user_hash is not None
        assert event.client_ip is not None
        pair = self.counts.pair_key(event.user_hash, event.client_ip)
        if state.count(pair, event.time, self.counts.pair_window):
            # A stuffing run tries a combo line once per address; a success after failures on
            # this account from this very address is someone retrying its password: the owner
            # mistyping, or a guesser, whom the account's own mark (brute_force) judges.
            return None
        rules = self.counts.rules.campaigns
        t = event.time
        record = None
        digest = agent_digest(event.user_agent)
        if in_fingerprint(state, event.service, network.asn, digest, t, rules):
            record = active_campaign(state, event.service, "credential_stuffing", t, rules.window)
        if record is None:
            remember_candidate(state, event, rules.window)
            return None
        record["takeovers"] = int(record.get("takeovers", 0)) + 1
        key = campaign_key(event.service, "credential_stuffing")
        state.put(key, record, t, rules.baseline)
        return takeover_signal(event, record)

    def _new_network(self, event: Event, tally: Tally) -> bool:
        """Whether a user with a history logs in from a network (a known ASN) they never used."""
        network = event.network
        if network is None or network.asn is None or not self._profile_read_anyway:
            return False
        return bool(tally.profile()) and not tally.familiar()[1]

    def _remember_if_suspect(self, event: Event, state: State, tally: Tally) -> None:
        assert event.client_ip is not None
        others = tally.ip_accounts_within(self.counts.rules.credential_stuffing.window)
        # A combo list may be right at its very first line: a success of a user with a history
        # from a network they never logged in from is remembered too, failures before it or not
        # (a read and a write for such successes: travel, a new provider, an attacker).
        if others < SUSPECT_ACCOUNTS and not self._new_network(event, tally):
            return
        # One atomic append (no read first), so replicas remembering at once lose none.
        entry = [event.user_hash, event.label, event.time, event.trace_id]
        key = self._key("remembered", event.client_ip)
        state.append_entry(key, entry, event.time, self.rules.memory, PENDING_LIMIT)

    def _mark(self, state: State, key: str, attack: str, event: Event, tally: Tally) -> bool:
        """Mark ``key`` as under ``attack``; True when the mark is new."""
        current = state.get(key)
        if current is not None and event.time - float(current["time"]) < self.rules.memory / 2:
            return False  # fresh enough: no write per failure of a long attack
        state.put(
            key,
            {"attack": attack, "time": event.time, "trace_id": event.trace_id, "ip": tally.ip},
            event.time,
            self.rules.memory,
        )
        return current is None

    def _observe_failure(self, event: Event, state: State) -> Iterable[Signal]:
        tally = self.counts.tally(event, state)
        if event.user_hash:
            if tally.brute_force():
                self._mark(state, self._key("u", event.user_hash), "brute_force", event, tally)
            elif tally.distributed_brute_force():
                key = self._key("u", event.user_hash)
                self._mark(state, key, "distributed_brute_force", event, tally)
        assert event.client_ip is not None
        if tally.credential_stuffing():
            attack = "credential_stuffing"
        elif tally.password_spraying("ip"):
            attack = "password_spraying"
        else:
            if tally.network and tally.password_spraying("network"):
                key = self._key("net", tally.network)
                self._mark(state, key, "password_spraying", event, tally)
            return ()
        if not self._mark(state, self._key("ip", event.client_ip), attack, event, tally):
            return ()
        signals = self._earlier_successes(event, state, attack)
        return signals + self._successes_on_record(event, state, attack, signals)

    def _late(
        self,
        event: Event,
        attack: str,
        user: str,
        label: str | None,
        when: float,
        trace_id: str | None,
    ) -> Signal:
        """A takeover found late: the success at ``when`` from the address ``event`` marks."""
        # The finding stands on the login itself: its time and trace id are what a person
        # opens in the tracing backend (the attack's trace id is in the evidence).
        login = dataclasses.replace(
            event,
            time=when,
            success=True,
            user_hash=user,
            user_id=label,
            trace_id=trace_id,
            span_id=None,
        )
        mark = {"attack": attack, "time": event.time, "ip": event.client_ip}
        return Signal(
            kind=KIND,
            severity="critical",
            subject=Subject("user", user, label),
            summary=f"successful login on {label or 'an account'} from "
            f"{event.client_ip}, since seen doing {_label(attack)}",
            event=login,
            evidence={
                "attacks": [self._attack("ip", {**mark, "trace_id": event.trace_id})],
                "login": {"time": when, "trace_id": trace_id},
            },
            related_users=(user,),
        )

    def _successes_on_record(
        self, event: Event, state: State, attack: str, known: list[Signal]
    ) -> list[Signal]:
        """Successes from this address that nothing remembered (a combo list right at its
        first line, from a network the user knows): the address's aggregate says whether it had
        any, and the last success of each account it tried says whose. Read once, when the
        address is first marked: the address's record, and one record per account it tried
        (64 at most)."""
        assert event.client_ip is not None
        window = WINDOWS[-1]
        view = state.read_subject("ip:" + event.client_ip, event.time, (window,), (RECORD_USERS,))
        if view is None or not view.counts[OK][0]:
            return []
        reported = {s.subject.id for s in known}
        signals = []
        for user in view.members[0]:
            if user in reported:
                continue
            account = state.read_subject("u:" + user, None)
            if account is None or account.last_success is None:
                continue
            when, address, _ = account.last_success
            if address != event.client_ip or event.time - when > self.rules.memory:
                continue
            signals.append(self._late(event, attack, user, account.label, when, None))
        return signals

    def _earlier_successes(self, event: Event, state: State, attack: str) -> list[Signal]:
        """Successes from this address, remembered before it was known to be attacking."""
        assert event.client_ip is not None
        key = self._key("remembered", event.client_ip)
        listed = state.entries(key)
        if listed:
            state.remove_entries(key, listed)  # those appended since stay, for the next mark
        # The previous version's record of them, read and emptied as that version did.
        old_key = self._key("pending", event.client_ip)
        legacy = (state.get(old_key) or {}).get("successes", [])
        if legacy:
            state.put(old_key, {"successes": []}, event.time, self.rules.memory)
        signals = []
        for user, label, when, trace_id in [*legacy, *(entry for _, entry in listed)]:
            if event.time - float(when) > self.rules.memory:
                continue
            signals.append(self._late(event, attack, user, label, float(when), trace_id))
        return signals
