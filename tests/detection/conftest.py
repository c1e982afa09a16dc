"""Helpers for the detector tests: a stream of events driven through every default detector."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from usermon.processor.detectors import default_detectors, run_detectors
from usermon.processor.model import Event, NetworkInfo, Signal
from usermon.processor.rules import Rules
from usermon.processor.storage.state.memory import MemoryState

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)

PARIS = NetworkInfo(country="FR", latitude=48.86, longitude=2.35, asn=3215, as_org="Orange")
LYON_ORANGE = NetworkInfo(country="FR", latitude=45.76, longitude=4.84, asn=3215, as_org="Orange")
MARSEILLE_MOBILE = NetworkInfo(
    country="FR", latitude=43.30, longitude=5.37, asn=51207, as_org="Free Mobile"
)
LILLE_MOBILE = NetworkInfo(
    country="FR", latitude=50.63, longitude=3.06, asn=51207, as_org="Free Mobile"
)
NEW_YORK = NetworkInfo(country="US", latitude=40.71, longitude=-74.01, asn=7922, as_org="Comcast")
SAO_PAULO = NetworkInfo(country="BR", latitude=-23.55, longitude=-46.63, asn=28573, as_org="Claro")
TOR_EXIT = NetworkInfo(category="tor", network_name="tor")
VPN = NetworkInfo(
    country="NL", latitude=52.37, longitude=4.90, asn=9009, category="vpn", network_name="NordVPN"
)
HOSTING = NetworkInfo(country="DE", asn=24940, category="hosting", network_name="Hetzner")

T0 = 1_767_571_200.0  # Monday 2026-01-05 00:00 UTC
HOUR = 3600.0
DAY = 86400.0


class Stream:
    """Events in, signals out, through the default detectors on a fresh MemoryState."""

    def __init__(self, rules: Rules | None = None) -> None:
        self.state = MemoryState()
        self.detectors = default_detectors(rules or Rules())
        self.signals: list[Signal] = []
        self._ids: Iterator[int] = itertools.count(1)

    def send(self, event: Event) -> list[Signal]:
        signals = run_detectors(self.detectors, event, self.state)
        self.signals.extend(signals)
        return signals

    def _trace(self) -> str:
        return f"{next(self._ids):032x}"

    def login(
        self,
        t: float,
        user: str,
        ip: str,
        success: bool,
        agent: str = CHROME_WINDOWS,
        network: NetworkInfo | None = PARIS,
    ) -> list[Signal]:
        return self.send(
            Event(
                kind="login",
                time=t,
                success=success,
                user_hash=f"h-{user}",
                user_id=user,
                primary_key="email",
                client_ip=ip,
                user_agent=agent,
                trace_id=self._trace(),
                span_id="00000000000000aa",
                network=network,
            )
        )

    def signup(
        self, t: float, user: str, ip: str, network: NetworkInfo | None = PARIS
    ) -> list[Signal]:
        return self.send(
            Event(
                kind="signup",
                time=t,
                user_hash=f"h-{user}",
                user_id=user,
                client_ip=ip,
                user_agent=CHROME_WINDOWS,
                trace_id=self._trace(),
                network=network,
            )
        )

    def of(self, kind: str) -> list[Signal]:
        return [s for s in self.signals if s.kind == kind]

    def kinds(self) -> set[str]:
        return {s.kind for s in self.signals}


@pytest.fixture
def stream() -> Stream:
    return Stream()
