"""The seeded traffic generator: a benign population with realistic noise, plus labelled attack
campaigns of every finding kind, as :class:`~usermon.processor.model.Event` objects on event time.

Same :class:`Scenario` (seed included) gives the same traffic, event for event. Time is the
events' own: a few days of a shop's logins are generated in well under a second, and the engine
runs them at its own speed. Each event's ground truth (the campaign it belongs to, or none for
benign traffic) is kept beside it in :attr:`Traffic.labels`, never in the event itself, so what
the engine sees is exactly what the SDK would have sent.

The benign population is where false positives come from, so it carries the noise the detectors
must tolerate: typos (1-3 failures then success), a mistyped e-mail, forgotten passwords (several
failures, a reset, a success minutes later), phones whose address changes within their carrier
at every session, offices where up to ~150 people share one NAT address, travellers who change
country once in a day at airliner speed, and signups at a steady rate. The campaigns are built
in :mod:`usermon.processor.simulate.campaigns`.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from usermon import attributes
from usermon.processor.model import Event, EventKind
from usermon.processor.simulate.world import COUNTRIES, HOME_COUNTRIES, Network, World

DAY = 86400.0

DESKTOP_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
)
PHONE_AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Mobile Safari/537.36",
)
TOOL_AGENTS = (
    "python-requests/2.32.3",
    "curl/8.5.0",
    "Go-http-client/1.1",
    "okhttp/4.12.0",
)
FIRST_NAMES = (
    "alice",
    "bob",
    "chloe",
    "david",
    "emma",
    "farid",
    "grace",
    "hugo",
    "ines",
    "jules",
    "karim",
    "lea",
    "marco",
    "nina",
    "oscar",
    "paula",
    "quentin",
    "rosa",
    "sami",
    "tom",
    "ula",
    "victor",
    "wen",
    "yara",
    "zoe",
)
DOMAINS = ("example.com", "example.org", "example.net", "mail.example")


def user_hash(email: str) -> str:
    """The simulated ``user.hash``: stable per identity, like the SDK's (not the same value)."""
    return hashlib.sha256(b"usermon-simulate\0" + email.encode()).hexdigest()[:32]


def distance_km(a: str, b: str) -> float:
    """Great-circle distance between two countries' cities of :data:`COUNTRIES`."""
    (lat1, lon1), (lat2, lon2) = COUNTRIES[a], COUNTRIES[b]
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


@dataclass(frozen=True, slots=True)
class Scenario:
    """What to generate. Everything is derived from ``seed``: same scenario, same traffic."""

    seed: int = 1
    users: int = 5000
    """Size of the benign population at the start (signups add more)."""
    days: int = 14
    """Days of traffic; campaigns run on the last one, the days before build user history (risk
    scoring needs about ten logins of a user before it judges one)."""
    offices: int = 3
    """Office NATs: each puts 40-150 users behind one address during working hours."""
    campaigns_per_kind: int = 20
    """Labelled campaigns generated for each finding kind."""
    signups_per_day: float = 0.01
    """Benign signups per day, as a share of the population."""
    start: float = 1767571200.0
    """Event time of the first day's midnight (default: Monday 2026-01-05 00:00 UTC)."""
    service: str = "shop"
    """``service.name`` of the simulated application."""
    campaign_classes: int = 0
    """Campaigns of every distributed attack class (:mod:`usermon.processor.simulate.classes`)
    to add, with the benign look-alikes; 0 (the default) leaves the traffic as it was."""


@dataclass(frozen=True, slots=True)
class Campaign:
    """One labelled attack and what it may legitimately be reported as.

    ``kind`` is the finding kind the campaign must raise (what recall counts). ``also`` lists
    other kinds that describe the same attack truthfully (a credential-stuffing run that lands
    on an account is also an account takeover; a stranger's login from another continent may be
    both suspicious and impossible travel): such findings count as true positives, but are not
    required.
    """

    id: str
    kind: str
    also: tuple[str, ...]
    description: str
    attacker_ips: frozenset[str]
    victims: frozenset[str]  # user hashes of the accounts it targets
    start: float
    end: float
    cls: str = ""
    """The attack class (:data:`~usermon.processor.simulate.classes.ATTACK_CLASSES`); empty
    for the original one-per-kind campaigns, whose class is their kind."""
    takeovers: frozenset[str] = frozenset()
    """Accounts the campaign got into: each must be reported as an account takeover."""

    @property
    def klass(self) -> str:
        return self.cls or self.kind

    @property
    def kinds(self) -> tuple[str, ...]:
        return (self.kind, *self.also)


@dataclass
class Persona:
    """A benign user: where they live and what they log in with."""

    email: str
    country: str
    home_ip: str
    desktop_agent: str
    carrier: Network | None
    phone_agent: str | None
    office_ip: str | None = None
    successes: list[float] = field(default_factory=list)
    away: tuple[float, str] | None = None
    """After a trip: (arrival time, hotel address). The traveller stays there to the end."""

    @property
    def user_hash(self) -> str:
        return user_hash(self.email)


@dataclass
class Traffic:
    """The generated traffic: events in event-time order, their ground truth beside them."""

    scenario: Scenario
    world: World
    events: list[Event]
    labels: list[str | None]
    """Parallel to :attr:`events`: the campaign id of each event, ``None`` for benign traffic."""
    campaigns: dict[str, Campaign]
    users: dict[str, str]
    """Every user hash the traffic mentions, to its e-mail."""
    benign_users: frozenset[str]
    """Hashes of users no campaign touches: the denominator of "benign users flagged"."""
    benign_classes: dict[str, frozenset[str]] = field(default_factory=dict)
    """Users of each benign look-alike class (reset day, university NAT, ...), when the scenario
    asked for campaign classes."""

    def labelled(self) -> Iterator[tuple[Event, str | None]]:
        """Each event with its campaign id (``None``: benign)."""
        return zip(self.events, self.labels, strict=True)

    def enriched(self) -> list[Event]:
        """The events with :class:`~usermon.processor.model.NetworkInfo` filled from this
        traffic's world, for an engine run without the world as its enricher."""
        return [e.with_network(self.world.lookup(e.client_ip or "")) for e in self.events]


class _Builder:
    """Accumulates events and labels; campaigns and benign activity both write through it."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.rng = random.Random(scenario.seed)
        self.world = World.build(self.rng)
        self.rows: list[tuple[Event, str | None]] = []
        self.users: dict[str, str] = {}

    def trace(self) -> tuple[str, str]:
        return f"{self.rng.getrandbits(128) | 1:032x}", f"{self.rng.getrandbits(64) | 1:016x}"

    def emit(
        self,
        kind: EventKind,
        t: float,
        email: str,
        ip: str,
        agent: str,
        *,
        success: bool | None = None,
        label: str | None = None,
    ) -> Event:
        trace_id, span_id = self.trace()
        uh = user_hash(email)
        self.users[uh] = email
        event = Event(
            kind=kind,
            time=round(t, 6),
            success=success if kind == "login" else None,
            user_hash=uh,
            user_id=email,
            primary_key="email",
            identifiers=(("email", email),),
            client_ip=ip,
            user_agent=agent,
            source=attributes.SOURCE_FLASK_LOGIN,
            service=self.scenario.service,
            trace_id=trace_id,
            span_id=span_id,
        )
        self.rows.append((event, label))
        return event

    def login(
        self, t: float, email: str, ip: str, agent: str, success: bool, label: str | None = None
    ) -> Event:
        return self.emit("login", t, email, ip, agent, success=success, label=label)

    def signup(self, t: float, email: str, ip: str, agent: str, label: str | None = None) -> Event:
        return self.emit("signup", t, email, ip, agent, label=label)

    def fresh_email(self) -> str:
        while True:
            email = (
                f"{self.rng.choice(FIRST_NAMES)}.{self.rng.choice(FIRST_NAMES)}"
                f"{self.rng.randrange(10, 10000)}@{self.rng.choice(DOMAINS)}"
            )
            if user_hash(email) not in self.users:
                self.users[user_hash(email)] = email
                return email


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


class _Population:
    """The benign users and their days."""

    def __init__(self, b: _Builder) -> None:
        self.b = b
        self.personas: list[Persona] = []
        self.travellers: set[str] = set()

    def new_persona(self, country: str | None = None) -> Persona:
        rng, world = self.b.rng, self.b.world
        country = country or _weighted(rng, HOME_COUNTRIES)
        isp = rng.choice(world.of("residential", country))
        has_phone = rng.random() < 0.5
        persona = Persona(
            email=self.b.fresh_email(),
            country=country,
            home_ip=world.address(isp),
            desktop_agent=rng.choice(DESKTOP_AGENTS),
            carrier=world.of("mobile", country)[0] if has_phone else None,
            phone_agent=rng.choice(PHONE_AGENTS) if has_phone else None,
        )
        self.personas.append(persona)
        return persona

    def build(self) -> None:
        s, rng, world = self.b.scenario, self.b.rng, self.b.world
        for _ in range(s.users):
            self.new_persona()
        # Offices: colleagues from one country behind one business address.
        office_countries = [c for c in HOME_COUNTRIES if c in ("FR", "US", "DE", "GB")]
        for i in range(s.offices):
            country = office_countries[i % len(office_countries)]
            office_ip = world.address(world.of("business", country)[0])
            staff = [p for p in self.personas if p.country == country and p.office_ip is None]
            for p in rng.sample(staff, min(len(staff), rng.randrange(40, 151))):
                p.office_ip = office_ip
        # About 1% travel once, on a random day, between far-apart countries.
        for p in rng.sample(self.personas, max(1, len(self.personas) // 100)):
            self.travellers.add(p.email)
        travel_day = {p: rng.randrange(s.days) for p in sorted(self.travellers)}
        for day in range(s.days):
            day_start = s.start + day * DAY
            for p in list(self.personas):
                if travel_day.get(p.email) == day:
                    self.travel(p, day_start)
                else:
                    visits = rng.choices((0, 1, 2, 3, 4), (30, 35, 20, 10, 5))[0]
                    done = float("-inf")
                    for t in sorted(day_start + rng.uniform(7, 23) * 3600 for _ in range(visits)):
                        # One visit at a time: a person does not start logging in again while
                        # still resetting a password, nor a minute after getting in.
                        if t < done + 1800:
                            continue
                        if p.away is None:
                            done = self.session(p, t, self.where(p, t, day))
                        elif t >= p.away[0]:  # no login in flight
                            done = self.session(p, t, (p.away[1], p.desktop_agent))
            for _ in range(self.poisson(s.signups_per_day * s.users)):
                self.newcomer(day_start + rng.uniform(7, 23) * 3600)

    def poisson(self, mean: float) -> int:
        # Knuth's method: small means only, which is all a day's signups need.
        limit, k, p = math.exp(-mean), 0, self.b.rng.random()
        while p > limit:
            k += 1
            p *= self.b.rng.random()
        return k

    def where(self, p: Persona, t: float, day: int) -> tuple[str, str]:
        """Address and user agent of a session: the office during working hours on weekdays,
        the phone (a fresh carrier address each time) for some sessions, else home."""
        rng, world = self.b.rng, self.b.world
        hour = (t % DAY) / 3600
        weekday = (day % 7) < 5
        if p.office_ip and weekday and 9 <= hour < 18 and rng.random() < 0.8:
            return p.office_ip, p.desktop_agent
        if p.carrier is not None and p.phone_agent is not None and rng.random() < 0.4:
            return world.address(p.carrier, unique=False), p.phone_agent
        return p.home_ip, p.desktop_agent

    def session(self, p: Persona, t: float, place: tuple[str, str]) -> float:
        """One visit's login attempts; returns the time of its success."""
        rng, b = self.b.rng, self.b
        ip, agent = place
        r = rng.random()
        if r < 0.08:  # typo: 1-3 failures, then in
            for _ in range(rng.randrange(1, 4)):
                b.login(t, p.email, ip, agent, False)
                t += rng.uniform(3, 20)
        elif r < 0.09:  # mistyped e-mail: a failure on an account that does not exist
            b.login(t, self.misspell(p.email), ip, agent, False)
            t += rng.uniform(5, 30)
        elif r < 0.10:  # forgotten password: several failures, a reset by e-mail, then in
            for _ in range(rng.randrange(3, 7)):
                b.login(t, p.email, ip, agent, False)
                t += rng.uniform(4, 30)
            t += rng.uniform(300, 1200)
        b.login(t, p.email, ip, agent, True)
        p.successes.append(t)
        return t

    def misspell(self, email: str) -> str:
        local, _, domain = email.partition("@")
        i = self.b.rng.randrange(len(local))
        wrong = local[:i] + local[i + 1 :] if len(local) > 3 else local + "x"
        self.b.users[user_hash(f"{wrong}@{domain}")] = f"{wrong}@{domain}"
        return f"{wrong}@{domain}"

    def travel(self, p: Persona, day_start: float) -> None:
        """A morning login at home, a flight at airliner speed, logins from a hotel on arrival and
        for the rest of the scenario."""
        rng, world = self.b.rng, self.b.world
        t = day_start + rng.uniform(6, 8) * 3600
        t = self.session(p, t, (p.home_ip, p.desktop_agent))
        far = [c for c in COUNTRIES if c != p.country and distance_km(c, p.country) > 800]
        destination = rng.choice(far)
        # Door to door: airports and a plane at ~800 km/h, never faster than a traveller can be.
        t += 2 * 3600 + distance_km(p.country, destination) / 800 * 3600 + rng.uniform(0, 3600)
        hotel = world.address(rng.choice(world.of("residential", destination)))
        p.away = (t, hotel)
        for _ in range(rng.randrange(1, 3)):
            t = self.session(p, t, (hotel, p.desktop_agent)) + rng.uniform(600, 7200)

    def newcomer(self, t: float) -> None:
        """A signup from home, logged in right away, back once later that day."""
        p = self.new_persona()
        self.b.signup(t, p.email, p.home_ip, p.desktop_agent)
        t = self.session(p, t + self.b.rng.uniform(1, 30), (p.home_ip, p.desktop_agent))
        self.session(p, t + self.b.rng.uniform(1800, 6 * 3600), (p.home_ip, p.desktop_agent))


def generate(scenario: Scenario | None = None) -> Traffic:
    """Generate the traffic of ``scenario`` (default: :class:`Scenario` ``()``)."""
    # Imported here because campaigns builds on this module's types.
    from usermon.processor.simulate.campaigns import add_campaigns

    scenario = scenario or Scenario()
    b = _Builder(scenario)
    population = _Population(b)
    population.build()
    campaigns = add_campaigns(b, population)
    benign_classes: dict[str, frozenset[str]] = {}
    if scenario.campaign_classes > 0:
        from usermon.processor.simulate.classes import add_classes

        used = {v for c in campaigns.values() for v in c.victims}
        more, benign_classes = add_classes(b, population, used)
        campaigns = dict(sorted({**campaigns, **more}.items()))
    touched = {v for c in campaigns.values() for v in c.victims}
    rows = sorted(b.rows, key=lambda row: row[0].time)
    return Traffic(
        scenario=scenario,
        world=b.world,
        events=[e for e, _ in rows],
        labels=[label for _, label in rows],
        campaigns=campaigns,
        users=dict(b.users),
        benign_users=frozenset(
            p.user_hash for p in population.personas if p.user_hash not in touched
        )
        | (benign_classes.get("university_nat", frozenset()) - touched),
        benign_classes={k: v - touched for k, v in benign_classes.items()},
    )
