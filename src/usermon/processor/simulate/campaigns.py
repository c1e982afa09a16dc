"""Labelled attack campaigns, one builder per finding kind, for the traffic generator.

Each builder adds the events of one campaign (all labelled with its id) to the traffic and
returns its :class:`~usermon.processor.simulate.traffic.Campaign`: the kind it must raise, the
kinds that would also describe it truthfully, its attacker addresses and the accounts it targets.
Campaigns never share an address with each other or with a benign user, and never share a
victim, so a finding can be traced to at most one of them. Shapes follow what the field reports:
tools hammering one account, botnets spreading one account's guesses over many addresses,
combo-list replays over many accounts, slow sprays of a few common passwords, a phished password
used once from abroad, Tor and VPN logins, mass account creation from one source.
"""

from __future__ import annotations

from collections.abc import Callable

from usermon.processor.model import FINDING_KINDS
from usermon.processor.simulate.traffic import (
    DAY,
    DESKTOP_AGENTS,
    TOOL_AGENTS,
    Campaign,
    Persona,
    _Builder,
    _Population,
    distance_km,
    user_hash,
)
from usermon.processor.simulate.world import COUNTRIES

SCORED_HISTORY = 12
"""Successful logins a suspicious-login victim has before the attack: past the default rules'
``min_history`` (10), so a miss is the detector's, not a victim without a history."""


class _Campaigns:
    def __init__(self, b: _Builder, population: _Population) -> None:
        self.b = b
        self.rng = b.rng
        self.world = b.world
        # Victims with a history are regular users who neither travel nor share an office NAT,
        # so what happens to them is the campaign's doing alone.
        self.candidates = [
            p
            for p in population.personas
            if p.email not in population.travellers and p.office_ip is None
        ]
        self.rng.shuffle(self.candidates)  # once: victims are then taken in this random order

    # -- helpers ------------------------------------------------------------------------------

    def victim(self, before: float, history: int = 2) -> Persona:
        """An unused benign account with at least ``history`` successful logins before
        ``before`` (so risk scoring has something to compare with)."""
        for i, p in enumerate(self.candidates):
            if sum(1 for t in p.successes if t < before) >= history:
                del self.candidates[i]
                return p
        raise RuntimeError("population too small for the campaigns asked for")

    def foreign_ip(self, avoid: str | None = None, far_from: str | None = None) -> str:
        """A fresh residential address in a country other than ``avoid`` (at least 3000 km from
        ``far_from`` when given)."""
        countries = [
            c
            for c in COUNTRIES
            if c != avoid and (far_from is None or distance_km(c, far_from) > 3000)
        ]
        country = self.rng.choice(countries)
        return self.world.address(self.rng.choice(self.world.of("residential", country)))

    def other_agent(self, agent: str) -> str:
        return self.rng.choice([a for a in DESKTOP_AGENTS if a != agent])

    # -- one builder per kind -----------------------------------------------------------------

    def brute_force(self, cid: str, t: float) -> Campaign:
        """One tool, one address, one account: 60-200 guesses a few seconds apart."""
        v = self.victim(t)
        ip, agent = self.foreign_ip(v.country), self.rng.choice(TOOL_AGENTS)
        start = t
        for _ in range(self.rng.randrange(60, 201)):
            self.b.login(t, v.email, ip, agent, False, cid)
            t += self.rng.uniform(1, 8)
        return Campaign(
            cid,
            "brute_force",
            (),
            "guesses on one account from one address",
            frozenset({ip}),
            frozenset({v.user_hash}),
            start,
            t,
        )

    def distributed_brute_force(self, cid: str, t: float) -> Campaign:
        """A botnet: one account, 30-80 residential addresses worldwide, 1-2 guesses each."""
        v = self.victim(t)
        ips = [self.foreign_ip() for _ in range(self.rng.randrange(30, 81))]
        span = self.rng.uniform(20, 60) * 60
        attempts = sorted(
            (t + self.rng.uniform(0, span), ip)
            for ip in ips
            for _ in range(self.rng.randrange(1, 3))
        )
        for when, ip in attempts:
            self.b.login(when, v.email, ip, self.rng.choice(DESKTOP_AGENTS), False, cid)
        return Campaign(
            cid,
            "distributed_brute_force",
            (),
            "guesses on one account from a botnet",
            frozenset(ips),
            frozenset({v.user_hash}),
            t,
            attempts[-1][0],
        )

    def _stuff(
        self, cid: str, t: float, ip: str, accounts: int, hits: int
    ) -> tuple[float, set[str]]:
        """Replay a combo list from ``ip``: mostly accounts that do not exist here, some that
        do, ``hits`` of which the list has the right password for."""
        existing = max(hits, accounts // 10)
        targets: list[tuple[str, bool]] = []
        for i in range(existing):
            targets.append((self.victim(t, history=0).email, i < hits))
        targets += [(self.b.fresh_email(), False) for _ in range(accounts - existing)]
        self.rng.shuffle(targets)
        for email, right in targets:
            self.b.login(t, email, ip, self.rng.choice(DESKTOP_AGENTS), right, cid)
            t += self.rng.uniform(1, 5)
        return t, {user_hash(email) for email, _ in targets}

    def credential_stuffing(self, cid: str, t: float) -> Campaign:
        """A combo list of 60-200 accounts (a tenth of them real) from one address, one try each,
        no hit."""
        ip = self.foreign_ip()
        end, victims = self._stuff(cid, t, ip, self.rng.randrange(60, 201), hits=0)
        return Campaign(
            cid,
            "credential_stuffing",
            (),
            "combo-list replay from one address",
            frozenset({ip}),
            frozenset(victims),
            t,
            end,
        )

    def password_spraying(self, cid: str, t: float) -> Campaign:
        """2-3 common passwords over 15-30 real accounts, minutes apart, from one address or
        rotating through one /24."""
        accounts = [self.victim(t, history=0) for _ in range(self.rng.randrange(15, 31))]
        net = self.rng.choice(self.world.of("residential"))
        ips = self.world.subnet_addresses(net, 1 if self.rng.random() < 0.5 else 8)
        agent = self.rng.choice(TOOL_AGENTS)
        start = t
        for _ in range(self.rng.randrange(2, 4)):
            for v in accounts:
                self.b.login(t, v.email, self.rng.choice(ips), agent, False, cid)
                t += self.rng.uniform(60, 300)
        return Campaign(
            cid,
            "password_spraying",
            (),
            "slow spray of common passwords",
            frozenset(ips),
            frozenset(v.user_hash for v in accounts),
            start,
            t,
        )

    def account_takeover(self, cid: str, t: float) -> Campaign:
        """Half the campaigns guess one account until they get in; the others replay a combo
        list that holds one or two right passwords."""
        start = t
        if int(cid.rsplit("-", 1)[1]) % 2 == 0:
            v = self.victim(t)
            ip, agent = self.foreign_ip(v.country), self.rng.choice(TOOL_AGENTS)
            for _ in range(self.rng.randrange(12, 31)):
                self.b.login(t, v.email, ip, agent, False, cid)
                t += self.rng.uniform(1, 8)
            self.b.login(t, v.email, ip, agent, True, cid)
            return Campaign(
                cid,
                "account_takeover",
                ("brute_force", "suspicious_login", "impossible_travel"),
                "guesses on one account until one works",
                frozenset({ip}),
                frozenset({v.user_hash}),
                start,
                t,
            )
        ip = self.foreign_ip()
        end, victims = self._stuff(
            cid, t, ip, self.rng.randrange(60, 151), hits=self.rng.randrange(1, 3)
        )
        return Campaign(
            cid,
            "account_takeover",
            ("credential_stuffing", "suspicious_login", "impossible_travel"),
            "combo-list replay that lands",
            frozenset({ip}),
            frozenset(victims),
            start,
            end,
        )

    def suspicious_login(self, cid: str, t: float) -> Campaign:
        """A phished password used once: right first time, from another country's ISP, with
        another browser than the victim's."""
        v = self.victim(t, history=SCORED_HISTORY)
        ip = self.foreign_ip(v.country)
        self.b.login(t, v.email, ip, self.other_agent(v.desktop_agent), True, cid)
        return Campaign(
            cid,
            "suspicious_login",
            ("impossible_travel",),
            "stolen password used from abroad",
            frozenset({ip}),
            frozenset({v.user_hash}),
            t,
            t,
        )

    def tor_login(self, cid: str, t: float) -> Campaign:
        """Half log into a victim's account through a Tor exit; half only try a few."""
        exit_ip = self.tor_exits.pop()
        if int(cid.rsplit("-", 1)[1]) % 2 == 0:
            v = self.victim(t)
            self.b.login(t, v.email, exit_ip, self.other_agent(v.desktop_agent), True, cid)
            return Campaign(
                cid,
                "tor_login",
                ("suspicious_login",),
                "login through Tor",
                frozenset({exit_ip}),
                frozenset({v.user_hash}),
                t,
                t,
            )
        start = t
        victims = [self.victim(t, history=0) for _ in range(self.rng.randrange(1, 4))]
        for v in victims:
            for _ in range(self.rng.randrange(1, 3)):
                self.b.login(t, v.email, exit_ip, self.rng.choice(DESKTOP_AGENTS), False, cid)
                t += self.rng.uniform(5, 60)
        return Campaign(
            cid,
            "tor_login",
            (),
            "failed logins through Tor",
            frozenset({exit_ip}),
            frozenset(v.user_hash for v in victims),
            start,
            t,
        )

    def vpn_or_hosting_login(self, cid: str, t: float) -> Campaign:
        """Half log into a victim's account from a commercial VPN; half are scripts on a
        hosting provider trying a few accounts."""
        if int(cid.rsplit("-", 1)[1]) % 2 == 0:
            v = self.victim(t)
            ip = self.world.address(self.rng.choice(self.world.of("vpn")))
            self.b.login(t, v.email, ip, self.other_agent(v.desktop_agent), True, cid)
            return Campaign(
                cid,
                "vpn_or_hosting_login",
                ("suspicious_login",),
                "login via VPN",
                frozenset({ip}),
                frozenset({v.user_hash}),
                t,
                t,
            )
        start = t
        ip = self.world.address(self.rng.choice(self.world.of("hosting")))
        agent = self.rng.choice(TOOL_AGENTS)
        victims = [self.victim(t, history=0) for _ in range(self.rng.randrange(1, 3))]
        for v in victims:
            for _ in range(self.rng.randrange(1, 3)):
                self.b.login(t, v.email, ip, agent, False, cid)
                t += self.rng.uniform(2, 30)
        return Campaign(
            cid,
            "vpn_or_hosting_login",
            (),
            "script on a hosting provider",
            frozenset({ip}),
            frozenset(v.user_hash for v in victims),
            start,
            t,
        )

    def impossible_travel(self, cid: str, t: float) -> Campaign:
        """The victim logs in at home; 20-120 minutes later someone logs in as them from over
        3000 km away, with the same browser string."""
        v = self.victim(t)
        self.b.login(t, v.email, v.home_ip, v.desktop_agent, True, cid)
        ip = self.foreign_ip(v.country, far_from=v.country)
        t2 = t + self.rng.uniform(20, 120) * 60
        self.b.login(t2, v.email, ip, v.desktop_agent, True, cid)
        return Campaign(
            cid,
            "impossible_travel",
            ("suspicious_login",),
            "logins from two continents within the hour",
            frozenset({ip}),
            frozenset({v.user_hash}),
            t,
            t2,
        )

    def signup_abuse(self, cid: str, t: float) -> Campaign:
        """20-80 accounts created from one address, seconds to a minute apart."""
        ip, agent = self.foreign_ip(), self.rng.choice(TOOL_AGENTS + DESKTOP_AGENTS)
        start, made = t, set()
        for _ in range(self.rng.randrange(20, 81)):
            email = self.b.fresh_email()
            made.add(user_hash(email))
            self.b.signup(t, email, ip, agent, cid)
            t += self.rng.uniform(5, 60)
        return Campaign(
            cid,
            "signup_abuse",
            (),
            "mass account creation from one address",
            frozenset({ip}),
            frozenset(made),
            start,
            t,
        )

    def build(self) -> dict[str, Campaign]:
        s = self.b.scenario
        self.tor_exits = sorted(self.world.tor_exits)
        self.rng.shuffle(self.tor_exits)
        builders: dict[str, Callable[[str, float], Campaign]] = {
            kind: getattr(self, kind) for kind in FINDING_KINDS
        }
        # All campaigns start on the last day, leaving room for the slow ones to finish.
        first = s.start + (s.days - 1) * DAY
        plan = sorted(
            (first + self.rng.uniform(0, DAY - 8 * 3600), kind, i)
            for kind in FINDING_KINDS
            for i in range(s.campaigns_per_kind)
        )
        campaigns: dict[str, Campaign] = {}
        for t, kind, i in plan:
            cid = f"{kind}-{i:02d}"
            campaigns[cid] = builders[kind](cid, t)
        return dict(sorted(campaigns.items()))


def add_campaigns(b: _Builder, population: _Population) -> dict[str, Campaign]:
    """Add ``campaigns_per_kind`` campaigns of every finding kind to the traffic."""
    return _Campaigns(b, population).build()
