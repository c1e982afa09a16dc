"""A flood of one-shot addresses past the memory state's key cap: what a flood creates is evicted
before what detection keeps, so the stolen-password login that follows is still judged against
the user's history (docs/processor.md, *Bounded memory*)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from tests.detection.conftest import CHROME_WINDOWS, DAY, PARIS, T0

from usermon.processor.detectors import default_detectors
from usermon.processor.detectors.shared import profile_key
from usermon.processor.detectors.suspicious_login import GLOBAL_KEY
from usermon.processor.engine import Engine
from usermon.processor.model import Event, NetworkInfo
from usermon.processor.rules import Rules
from usermon.processor.storage.sqlite import SQLiteStore
from usermon.processor.storage.state.memory import MemoryState

CAP = 3000
TOOL = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120"
POOL = [NetworkInfo(country="US", asn=64_600 + k, as_org=f"Residential {k}") for k in range(8)]
FLOOD = 20_000  # attempts, each from a new address: about seven keys each, 45 times the cap
START = T0 + 10 * DAY


def life() -> Iterator[Event]:
    """Ten days: ten users log in daily from home, a mistyped unknown account now and then."""
    for day in range(10):
        for u in range(10):
            yield Event(
                kind="login",
                time=T0 + day * DAY + u * 60,
                success=True,
                user_hash=f"h-user{u}",
                user_id=f"user{u}",
                client_ip=f"198.51.100.{u + 1}",
                user_agent=CHROME_WINDOWS,
                service="shop",
                network=PARIS,
            )
        for i in range(3):
            yield Event(
                kind="login",
                time=T0 + day * DAY + 3600 * (i + 1),
                success=False,
                user_hash=f"typo{day}-{i}",
                client_ip=f"198.51.{day + 1}.{i + 1}",
                user_agent=CHROME_WINDOWS,
                exists=False,
                service="shop",
                network=PARIS,
            )


def address(i: int) -> str:
    return f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"


def flood() -> Iterator[Event]:
    """Credential stuffing through a proxy pool: each attempt a new address and account."""
    for i in range(FLOOD):
        yield Event(
            kind="login",
            time=START + i / 20,
            success=False,
            user_hash=f"combo{i}",
            client_ip=address(i),
            user_agent=TOOL,
            exists=False,
            service="shop",
            network=POOL[(i >> 8) % len(POOL)],
        )


def stolen_login(i: int) -> Event:
    """user0's password, right among the flood: from its pool, with its tool."""
    return Event(
        kind="login",
        time=START + FLOOD / 20 + 1,
        success=True,
        user_hash="h-user0",
        user_id="user0",
        client_ip=address(i),
        user_agent=TOOL,
        service="shop",
        network=POOL[(i >> 8) % len(POOL)],
    )


def run(state: MemoryState, *, batch: int = 500) -> Engine:
    engine = Engine(state, default_detectors(Rules()))
    engine.process(list(life()))
    events = list(flood())
    for k in range(0, len(events), batch):
        engine.process(events[k : k + batch])
    return engine


def test_a_flood_past_the_cap_keeps_the_profiles_and_the_population() -> None:
    state = MemoryState(max_keys=CAP)
    run(state)
    assert state.evicted > 10 * CAP  # the flood went far past the cap
    assert len(state) <= CAP
    for u in range(10):
        assert state.fields(profile_key(f"h-user{u}")), f"user{u}'s risk profile is gone"
    assert state.fields(GLOBAL_KEY)["users"] == 10
    user = state.read_subject("u:h-user0", None)
    assert user is not None
    assert user.last_success is not None


def test_the_stolen_password_login_after_a_flood_is_a_takeover_and_suspicious() -> None:
    state = MemoryState(max_keys=CAP)
    engine = run(state)
    found = engine.process([stolen_login(FLOOD + 1)]).findings
    kinds = {f.kind for f in found if f.subject.id == "h-user0"}
    assert {"account_takeover", "suspicious_login"} <= kinds
    suspicious = next(f for f in found if f.kind == "suspicious_login")
    assert suspicious.evidence["history"] == 10  # judged against its ten days, not a blank


def test_with_no_kept_share_the_flood_drops_them_as_one_pool_did() -> None:
    """The same flood on a state whose cap is one least-recently-used pool (what the kept
    class changes)."""
    state = MemoryState(max_keys=CAP, kept_share=0)
    engine = run(state)
    assert not state.fields(profile_key("h-user0"))
    found = engine.process([stolen_login(FLOOD + 1)]).findings
    assert "suspicious_login" not in {f.kind for f in found}


def test_the_sqlite_store_keeps_them_through_the_flood_and_a_restart(tmp_path: Path) -> None:
    """The SQLite store's state is the memory state, checkpointed as it goes: what the cap kept
    is what a restart finds."""
    url = f"sqlite:///{tmp_path / 'usermon.db'}?max_keys={CAP}"
    store = SQLiteStore(url)
    engine = Engine(store.state, default_detectors(Rules()))
    engine.process(list(life()))
    events = list(flood())
    for k in range(0, len(events), 1000):
        engine.process(events[k : k + 1000])
        store.checkpoint(k + 1, b"")
    assert store.state.evicted > 10 * CAP
    store.close()
    again = SQLiteStore(url)
    assert again.state.fields(profile_key("h-user0"))
    assert again.state.fields(GLOBAL_KEY)["users"] == 10
    found = Engine(again.state, default_detectors(Rules())).process([stolen_login(FLOOD + 1)])
    kinds = {f.kind for f in found.findings if f.subject.id == "h-user0"}
    assert {"account_takeover", "suspicious_login"} <= kinds
    again.close()
