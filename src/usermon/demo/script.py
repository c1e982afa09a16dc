"""What the demo sends to its shop: a timed script of normal visits and a few attacks.

The script is a list of :class:`Step` on a relative clock (0 to the demo's duration). Normal
customers sign up, then come back now and then from their home, their phone or their office
(ten of them share one office address), sometimes mistyping their password. Attacks fire the
detections that a minute of wall-clock time can show: a brute force, a credential-stuffing run, a
combo list that lands on an account (account takeover), a botnet on one account, a login through
Tor, a VPN login and a script on a hosting provider, a login from Japan seconds after one from
home (impossible travel), and a burst of signups. The brute-force attacker keeps trying after its
burst, so that the shop's protection has attempts to refuse once the finding lands. The slow
ones (password spraying over hours, risk scoring over a user's weeks of history) are what
``benchmarks/bench_detection.py`` evaluates instead.

Each request carries the client's address in ``X-Forwarded-For``: the demo is the shop's
"reverse proxy", trusted through usermon's ``trusted_proxies`` setting, so one machine can play
many clients. Addresses come from the synthetic world of :mod:`usermon.processor.simulate`, whose
Tor list, IP-ranges CSV and GeoIP / ASN databases the demo's processor loads.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from usermon.processor.simulate.traffic import DESKTOP_AGENTS, PHONE_AGENTS, TOOL_AGENTS
from usermon.processor.simulate.world import World

NAMES = (
    "alice",
    "bruno",
    "chen",
    "dalia",
    "emeka",
    "fatima",
    "goran",
    "hana",
    "ivan",
    "jade",
    "kofi",
    "lena",
    "mateo",
    "nora",
    "omar",
    "priya",
    "quinn",
    "rafael",
    "sofia",
    "tariq",
    "uma",
    "viktor",
    "wanjiru",
    "xavier",
    "yusuf",
    "zora",
    "amir",
    "bianca",
    "carlos",
    "dina",
)
DOMAIN = "shop.example"


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request to the shop, as a given client."""

    path: str  # "/login" or "/signup"
    email: str
    password: str
    ip: str
    user_agent: str


@dataclass(slots=True)
class Step:
    """Requests to send at ``at`` seconds into the demo, announced with ``note`` when set."""

    at: float
    requests: list[Request]
    note: str | None = None
    kind: str | None = None  # the finding kind this step should raise


@dataclass(frozen=True, slots=True)
class Customer:
    email: str
    password: str
    home_ip: str
    phone_ips: Callable[[], str]
    desktop: str
    phone: str
    office_ip: str | None = None


@dataclass
class Script:
    steps: list[Step] = field(default_factory=list)

    @property
    def expected_kinds(self) -> list[str]:
        """The finding kinds the attacks in this script must raise, in order of appearance."""
        return list(dict.fromkeys(s.kind for s in self.steps if s.kind))


def build_script(world: World, duration: float, seed: int = 1) -> Script:
    """The demo's script over ``duration`` seconds; same seed, same script."""
    rng = random.Random(seed)
    script = Script()
    office = world.address(world.of("business", "FR")[0])
    customers: list[Customer] = []
    for i, name in enumerate(NAMES):
        # The office is in France, so its ten staff live there: within a compressed minute, a
        # commute across a border would be (rightly) impossible travel.
        country = "FR" if i % 3 == 0 else rng.choice(("FR", "DE", "GB", "ES", "US"))
        carrier = world.of("mobile", country)[0]
        customers.append(
            Customer(
                email=f"{name}@{DOMAIN}",
                password=f"{name}-correct-horse-{i}",
                home_ip=world.address(rng.choice(world.of("residential", country))),
                phone_ips=lambda carrier=carrier: world.address(carrier, unique=False),  # type: ignore[misc]
                desktop=rng.choice(DESKTOP_AGENTS),
                phone=rng.choice(PHONE_AGENTS),
                office_ip=office if i % 3 == 0 else None,
            )
        )

    # Everyone signs up during the first fifth, then visits a few times over the whole demo.
    for c in customers:
        at = rng.uniform(0, duration * 0.2)
        signup = Request("/signup", c.email, c.password, c.home_ip, c.desktop)
        script.steps.append(Step(at, [signup]))
        for _ in range(3):
            at = rng.uniform(duration * 0.2, duration * 0.95)
            if c.office_ip and rng.random() < 0.6:
                ip, agent = c.office_ip, c.desktop
            elif rng.random() < 0.4:
                ip, agent = c.phone_ips(), c.phone
            else:
                ip, agent = c.home_ip, c.desktop
            visit = [
                Request("/login", c.email, c.password + "?", ip, agent)
                for _ in range(rng.choice((0, 0, 0, 0, 1, 2)))  # a typo or two, now and then
            ]
            visit.append(Request("/login", c.email, c.password, ip, agent))
            script.steps.append(Step(at, visit))

    def residential(country: str) -> str:
        return world.address(rng.choice(world.of("residential", country)))

    def combo(n: int) -> list[str]:
        return [f"{rng.choice(NAMES)}.{rng.randrange(100, 999)}@{DOMAIN}" for _ in range(n)]

    tool = rng.choice(TOOL_AGENTS)
    victim, taken, botnet_target, tor_user, vpn_user, traveller = customers[1:7]

    ip = residential("VN")
    script.steps.append(
        Step(
            duration * 0.25,
            [Request("/login", victim.email, f"guess{n}", ip, tool) for n in range(25)],
            f"brute force: 25 guesses on {victim.email} from {ip}",
            "brute_force",
        )
    )
    # The attacker keeps going, with the right password in the end: once the finding lands and
    # the shop has synced the processor's decision, the shop refuses every attempt from there.
    for n in range(8):
        retry = [Request("/login", victim.email, f"again{n}-{k}", ip, tool) for k in range(2)]
        retry.append(Request("/login", victim.email, victim.password, ip, tool))
        script.steps.append(Step(duration * (0.3 + 0.04 * n), retry))

    ip = residential("BR")
    stuffing = [Request("/login", e, "hunter2", ip, rng.choice(DESKTOP_AGENTS)) for e in combo(40)]
    stuffing += [Request("/login", c.email, "Summer2024!", ip, tool) for c in customers[10:15]]
    script.steps.append(
        Step(
            duration * 0.35,
            stuffing,
            f"credential stuffing: a combo list of {len(stuffing)} accounts from {ip}",
            "credential_stuffing",
        )
    )

    ip = residential("IN")
    lands = [Request("/login", e, "letmein", ip, tool) for e in combo(40)]
    lands.append(Request("/login", taken.email, taken.password, ip, tool))
    script.steps.append(
        Step(
            duration * 0.45,
            lands,
            f"account takeover: a combo list from {ip} holds {taken.email}'s password",
            "account_takeover",
        )
    )

    botnet = [residential(rng.choice(("JP", "BR", "IN", "VN", "AU"))) for _ in range(15)]
    script.steps.append(
        Step(
            duration * 0.55,
            [
                Request(
                    "/login",
                    botnet_target.email,
                    f"pw{n}",
                    botnet[n % 15],
                    rng.choice(DESKTOP_AGENTS),
                )
                for n in range(45)
            ],
            f"distributed brute force: 45 guesses on {botnet_target.email} from 15 addresses",
            "distributed_brute_force",
        )
    )

    exit_ip = sorted(world.tor_exits)[0]
    script.steps.append(
        Step(
            duration * 0.65,
            [
                Request("/login", tor_user.email, "wrong", exit_ip, DESKTOP_AGENTS[4]),
                Request("/login", tor_user.email, tor_user.password, exit_ip, DESKTOP_AGENTS[4]),
            ],
            f"Tor: {tor_user.email} logs in through the exit {exit_ip}",
            "tor_login",
        )
    )

    vpn_ip = world.address(world.of("vpn")[0])
    hosting_ip = world.address(world.of("hosting")[0])
    script.steps.append(
        Step(
            duration * 0.72,
            [Request("/login", vpn_user.email, vpn_user.password, vpn_ip, vpn_user.desktop)]
            + [Request("/login", c.email, "admin", hosting_ip, tool) for c in customers[20:23]],
            f"VPN and hosting: {vpn_user.email} via a VPN, a script on {hosting_ip}",
            "vpn_or_hosting_login",
        )
    )

    # Needs coordinates: the processor gets the GeoIP database the demo writes.
    far = world.address(rng.choice(world.of("residential", "JP")))
    script.steps.append(
        Step(
            duration * 0.76,
            [
                Request(
                    "/login",
                    traveller.email,
                    traveller.password,
                    traveller.home_ip,
                    traveller.desktop,
                )
            ],
            f"impossible travel: {traveller.email} logs in at home, then from Japan",
        )
    )
    script.steps.append(
        Step(
            duration * 0.78,
            [Request("/login", traveller.email, traveller.password, far, traveller.desktop)],
            None,
            "impossible_travel",
        )
    )

    ip = residential("VN")
    script.steps.append(
        Step(
            duration * 0.8,
            [
                Request("/signup", f"bot{n}.{rng.randrange(10**6)}@{DOMAIN}", "Passw0rd!", ip, tool)
                for n in range(25)
            ],
            f"signup abuse: 25 accounts created from {ip}",
            "signup_abuse",
        )
    )
    script.steps.sort(key=lambda s: s.at)
    return script
