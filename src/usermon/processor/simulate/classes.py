"""The distributed attack classes and their benign look-alikes (issue 15), for the generator.

Every class here stays under the per-address thresholds the original campaigns cross: credential
stuffing through residential proxies (each address used once or twice, browser User-Agents, most
accounts unknown, a few percent right), a combo list whose very first attempt is right, a signup
farm behind as many proxies as accounts, a brute force on one account rotating addresses (one guess
each), and low-and-slow spraying over days from dozens of addresses of one hosting provider. The
benign classes are the days that look like attacks: a forced password reset, a university NAT, a
browser update that changes every Chrome User-Agent, a marketing e-mail, and travellers (the
population's own). Attacks are labelled campaigns (their :attr:`Campaign.cls` names the class);
benign classes are unlabelled traffic whose users :attr:`Traffic.benign_classes` lists.

Everything here runs after the original campaigns are built and only when
:attr:`Scenario.campaign_classes` is above zero, so the established traffic (and its evaluation)
stays what it was for the same seed.
"""

from __future__ import annotations

import dataclasses

from usermon.processor.simulate.traffic import (
    DAY,
    DESKTOP_AGENTS,
    DOMAINS,
    FIRST_NAMES,
    TOOL_AGENTS,
    Campaign,
    Persona,
    _Builder,
    _Population,
    user_hash,
)
from usermon.processor.simulate.world import COUNTRIES

HEADLESS_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/131.0.0.0 Safari/537.36"
)
CHROME_OLD, CHROME_NEW = "Chrome/131.0.0.0", "Chrome/132.0.0.0"

ATTACK_CLASSES: dict[str, str] = {
    "proxy_stuffing": "credential_stuffing",
    "combo_first_hit": "account_takeover",
    "signup_farm": "signup_abuse",
    "rotating_brute_force": "distributed_brute_force",
    "slow_spray_provider": "password_spraying",
}
"""Each attack class and the finding kind it must raise."""

BENIGN_CLASSES = ("reset_day", "university_nat", "browser_update", "marketing_email", "travellers")


class _Classes:
    def __init__(self, b: _Builder, population: _Population, used: set[str]) -> None:
        self.b = b
        self.rng = b.rng
        self.world = b.world
        self.population = population
        self.candidates = [
            p
            for p in population.personas
            if p.email not in population.travellers
            and p.office_ip is None
            and p.user_hash not in used
        ]
        self.rng.shuffle(self.candidates)
        self.campaigns: dict[str, Campaign] = {}
        self.benign: dict[str, set[str]] = {name: set() for name in BENIGN_CLASSES}

    # -- helpers ------------------------------------------------------------------------------

    def victim(self) -> Persona:
        if not self.candidates:
            raise RuntimeError("population too small for the campaign classes asked for")
        return self.candidates.pop()

    def proxy(self) -> str:
        """A fresh residential address anywhere: what a residential-proxy pool hands out."""
        country = self.rng.choice(list(COUNTRIES))
        return self.world.address(self.rng.choice(self.world.of("residential", country)))

    def add(self, campaign: Campaign) -> None:
        self.campaigns[campaign.id] = campaign

    # -- attacks ------------------------------------------------------------------------------

    def proxy_stuffing(self, cid: str, t: float) -> None:
        """800-1500 attempts in two hours, nearly every one from an address used once, browser
        User-Agents; 94 % of the accounts unknown here, a third of the known ones right."""
        start, span = t, 2 * 3600.0
        attempts = self.rng.randrange(800, 1501)
        known = max(3, attempts * 6 // 100)
        targets: list[tuple[str, bool]] = [
            (self.victim().email, i % 3 == 0) for i in range(known)
        ] + [(self.b.fresh_email(), False) for _ in range(attempts - known)]
        self.rng.shuffle(targets)
        ips: set[str] = set()
        hits: set[str] = set()
        times = sorted(t + self.rng.uniform(0, span) for _ in targets)
        ip = self.proxy()
        for when, (email, right) in zip(times, targets, strict=True):
            if self.rng.random() > 0.05:  # 5 % of addresses are used twice
                ip = self.proxy()
            ips.add(ip)
            self.b.login(when, email, ip, self.rng.choice(DESKTOP_AGENTS), right, cid)
            if right:
                hits.add(user_hash(email))
        self.add(
            Campaign(
                cid,
                "credential_stuffing",
                ("account_takeover", "suspicious_login", "impossible_travel"),
                "credential stuffing through residential proxies",
                frozenset(ips),
                frozenset(user_hash(e) for e, _ in targets),
                start,
                times[-1],
                cls="proxy_stuffing",
                takeovers=frozenset(hits),
            )
        )

    def combo_first_hit(self, cid: str, t: float) -> None:
        """The combo list's first line is right; 60-200 accounts follow from the same address,
        one try each, a few seconds apart."""
        ip = self.proxy()
        first = self.victim()
        agent = self.rng.choice(DESKTOP_AGENTS)
        self.b.login(t, first.email, ip, agent, True, cid)
        victims = {first.user_hash}
        start = t
        accounts = self.rng.randrange(60, 201)
        for i in range(accounts):
            t += self.rng.uniform(1, 5)
            email = self.victim().email if i % 10 == 0 else self.b.fresh_email()
            victims.add(user_hash(email))
            self.b.login(t, email, ip, agent, False, cid)
        self.add(
            Campaign(
                cid,
                "account_takeover",
                ("credential_stuffing", "suspicious_login", "impossible_travel"),
                "combo list right at its first attempt, then stuffing",
                frozenset({ip}),
                frozenset(victims),
                start,
                t,
                cls="combo_first_hit",
                takeovers=frozenset({first.user_hash}),
            )
        )

    def signup_farm(self, cid: str, t: float) -> None:
        """200-500 accounts in an hour, one residential proxy each, one headless browser,
        patterned names."""
        start, made, ips = t, set(), set()
        stem = self.rng.choice(FIRST_NAMES)
        number = self.rng.randrange(1000, 5000)
        domain = self.rng.choice(DOMAINS)
        count = self.rng.randrange(200, 501)
        for i in range(count):
            email = f"{stem}{number + i}@{domain}"
            self.b.users[user_hash(email)] = email
            ip = self.proxy()
            ips.add(ip)
            made.add(user_hash(email))
            self.b.signup(t + i * 3600 / count, email, ip, HEADLESS_AGENT, cid)
        self.add(
            Campaign(
                cid,
                "signup_abuse",
                (),
                "signup farm behind residential proxies",
                frozenset(ips),
                frozenset(made),
                start,
                t + 3600,
                cls="signup_farm",
            )
        )

    def rotating_brute_force(self, cid: str, t: float) -> None:
        """30 guesses on one account in half an hour, each from a fresh proxy address."""
        v = self.victim()
        ips = [self.proxy() for _ in range(30)]
        times = sorted(t + self.rng.uniform(0, 1800) for _ in ips)
        for when, ip in zip(times, ips, strict=True):
            self.b.login(when, v.email, ip, self.rng.choice(DESKTOP_AGENTS), False, cid)
        self.add(
            Campaign(
                cid,
                "distributed_brute_force",
                (),
                "brute force on one account rotating proxies, one guess per address",
                frozenset(ips),
                frozenset({v.user_hash}),
                t,
                times[-1],
                cls="rotating_brute_force",
            )
        )

    def slow_spray_provider(self, cid: str, t: float) -> None:
        """Three days, 24-48 addresses of one hosting provider, 2-4 attempts per address per
        day, each account tried at most three times."""
        provider = self.rng.choice(self.world.of("hosting"))
        ips = [self.world.address(provider) for _ in range(self.rng.randrange(24, 49))]
        accounts = [self.victim() for _ in range(self.rng.randrange(60, 121))]
        agent = self.rng.choice(TOOL_AGENTS)
        tries = {v.email: 0 for v in accounts}
        start, last = t, t
        for day in range(3):
            for ip in ips:
                for _ in range(self.rng.randrange(2, 5)):
                    open_ = [e for e, n in tries.items() if n < 3]
                    if not open_:
                        break
                    email = self.rng.choice(open_)
                    tries[email] += 1
                    when = t + day * DAY + self.rng.uniform(0, DAY)
                    last = max(last, when)
                    self.b.login(when, email, ip, agent, False, cid)
        self.add(
            Campaign(
                cid,
                "password_spraying",
                ("vpn_or_hosting_login",),
                "low-and-slow spraying from one hosting provider",
                frozenset(ips),
                frozenset(v.user_hash for v in accounts),
                start,
                last,
                cls="slow_spray_provider",
            )
        )

    # -- benign look-alikes -------------------------------------------------------------------

    def reset_day(self, day_start: float) -> None:
        """A forced password reset: a third of the users fail 1-3 times from their usual address
        and device, then get in."""
        rng, b = self.rng, self.b
        for p in rng.sample(self.candidates, len(self.candidates) // 3):
            t = day_start + rng.uniform(7, 23) * 3600
            for _ in range(rng.randrange(1, 4)):
                b.login(t, p.email, p.home_ip, p.desktop_agent, False)
                t += rng.uniform(5, 40)
            b.login(t, p.email, p.home_ip, p.desktop_agent, True)
            self.benign["reset_day"].add(p.user_hash)

    def university_nat(self, start: float, days: int, users: int) -> None:
        """``users`` students behind two addresses, every weekday, typos included."""
        rng, b, world = self.rng, self.b, self.world
        network = world.of("business", "GB")[0]
        nat = [world.address(network), world.address(network)]
        students = []
        for _ in range(users):
            email = b.fresh_email()
            students.append((email, rng.choice(DESKTOP_AGENTS)))
            self.benign["university_nat"].add(user_hash(email))
        for day in range(days):
            if day % 7 >= 5:
                continue
            for email, agent in students:
                if rng.random() < 0.5:
                    continue
                t = start + day * DAY + rng.uniform(8, 18) * 3600
                ip = rng.choice(nat)
                if rng.random() < 0.08:
                    for _ in range(rng.randrange(1, 4)):
                        b.login(t, email, ip, agent, False)
                        t += rng.uniform(3, 20)
                b.login(t, email, ip, agent, True)

    def marketing_email(self, t: float) -> None:
        """A newsletter: a fifth of the users log in within two hours, from home, with their
        usual typos; signups triple for the afternoon."""
        rng, b = self.rng, self.b
        for p in rng.sample(self.candidates, len(self.candidates) // 5):
            when = t + rng.expovariate(1 / 1800)
            if rng.random() < 0.08:
                for _ in range(rng.randrange(1, 4)):
                    b.login(when, p.email, p.home_ip, p.desktop_agent, False)
                    when += rng.uniform(3, 20)
            b.login(when, p.email, p.home_ip, p.desktop_agent, True)
            self.benign["marketing_email"].add(p.user_hash)
        for _ in range(len(self.candidates) // 100):
            newcomer = self.population.new_persona()
            when = t + rng.uniform(0, 4 * 3600)
            b.signup(when, newcomer.email, newcomer.home_ip, newcomer.desktop_agent)
            b.login(
                when + rng.uniform(5, 60),
                newcomer.email,
                newcomer.home_ip,
                newcomer.desktop_agent,
                True,
            )
            self.benign["marketing_email"].add(newcomer.user_hash)

    # -- the plan -----------------------------------------------------------------------------

    def build(self) -> None:
        s = self.b.scenario
        if s.days < 8:
            raise ValueError("campaign classes need a scenario of at least 8 days")
        # Attacks run on days days-7 .. days-2, each in its own three-hour slot, so campaigns of
        # one service never overlap (the last day belongs to the original campaigns).
        base = s.start + (s.days - 7) * DAY
        slots = iter(range(0, 5 * 8 * 100))
        per = s.campaign_classes
        for i in range(per):
            for cls in ("proxy_stuffing", "combo_first_hit", "signup_farm", "rotating_brute_force"):
                slot = next(slots)
                t = base + slot * 3 * 3600 + self.rng.uniform(0, 1800)
                if t > s.start + (s.days - 1) * DAY - 3 * 3600:
                    raise ValueError("too many campaign classes for the scenario's days")
                getattr(self, cls)(f"{cls}-{i:02d}", t)
        for i in range(per):
            t = base + i * 3600 * 7 + self.rng.uniform(0, 3600)
            self.slow_spray_provider(f"slow_spray_provider-{i:02d}", t)
        # Benign look-alikes, on their own days before the attacks.
        self.reset_day(s.start + (s.days - 10) * DAY)
        self.university_nat(s.start, s.days, min(300, max(50, s.users // 10)))
        self.marketing_email(s.start + (s.days - 9) * DAY + 10 * 3600)
        self.benign["travellers"] = {
            p.user_hash for p in self.population.personas if p.email in self.population.travellers
        }

    def finish(self) -> None:
        """Apply the browser update and the ``exists`` flag to every event (benign and not)."""
        s = self.b.scenario
        update = s.start + (s.days - 8) * DAY
        known = {p.user_hash for p in self.population.personas}
        known |= self.benign["university_nat"]
        known |= {e.user_hash for e, _ in self.b.rows if e.kind == "signup" and e.user_hash}
        rows = []
        for event, label in self.b.rows:
            agent = event.user_agent
            if label is None and agent and CHROME_OLD in agent and event.time >= update:
                agent = agent.replace(CHROME_OLD, CHROME_NEW)
                if event.user_hash in known:
                    self.benign["browser_update"].add(event.user_hash)
            # A login's ``exists``: the account had been created (persona, student, signup).
            exists = event.user_hash in known if event.kind == "login" else None
            if agent != event.user_agent or exists != event.exists:
                event = dataclasses.replace(event, user_agent=agent, exists=exists)
            rows.append((event, label))
        self.b.rows = rows


def add_classes(
    b: _Builder, population: _Population, used: set[str]
) -> tuple[dict[str, Campaign], dict[str, frozenset[str]]]:
    """Add :attr:`Scenario.campaign_classes` campaigns of every attack class and the benign
    look-alikes; return the campaigns and the users of each benign class."""
    classes = _Classes(b, population, used)
    classes.build()
    classes.finish()
    return classes.campaigns, {k: frozenset(v) for k, v in classes.benign.items()}
