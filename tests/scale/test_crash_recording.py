"""A replica killed (SIGKILL, a real process) between processing a batch and recording its
findings, or just after recording them, loses none and doubles none: what takes over (another
replica adopting its journal, or the replica itself restarting) ends with exactly the findings
one processor that never stopped has, each once (docs/processor.md, *Findings*).

On a shared state the dead replica's events are claimed and counted, so the survivor replays them
as duplicates: their findings come from what the engine kept with the claims, and the events it
claimed for the batch but never judged are judged again from what their steps counted (the claim
names its batch). Recording a batch twice changes nothing (the store marks each batch it
recorded), which also keeps a restarting single replica (its state rolled back to its checkpoint,
its findings not) from counting its replayed batches again.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from tests.support.example_rule import ExampleRule

from usermon.processor.detectors import default_detectors
from usermon.processor.model import Event, Signal
from usermon.processor.service import Processor
from usermon.processor.settings import resolve
from usermon.processor.simulate.otlp import to_request
from usermon.processor.storage.base import Store
from usermon.processor.storage.errors import StoreError
from usermon.processor.storage.state.base import State

from .crash_replica import open_spec_store, settings
from .traffic import Summary, batches, login_stream, second_growth, summary

pytestmark = pytest.mark.slow

BATCH = 40
LEASE = 0.5


@pytest.fixture(scope="module")
def traffic() -> tuple[list[bytes], int, Summary]:
    """The batches, the one to die in (the second batch that grows a finding: an earlier one is
    recorded before it) and what one processor finds in the batches up to it."""
    bodies = batches(login_stream(users=60), BATCH)
    single = Processor(resolve({"store": "memory://"}, env={}), detectors=default_detectors())
    dies_in, before = second_growth(bodies, single)
    single.close()
    assert {kind for _, kind, *_ in before} >= {"brute_force"}
    return bodies, dies_in, before


SHARED = [
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("postgresql+redis", marks=[pytest.mark.postgresql, pytest.mark.redis]),
]
ALONE = [pytest.param("postgresql", marks=pytest.mark.postgresql), pytest.param("sqlite")]


@pytest.fixture(params=SHARED + ALONE)
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    yield from _spec(request, tmp_path)


@pytest.fixture(params=SHARED)
def shared_spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    yield from _spec(request, tmp_path)


def _spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    kind = request.param
    made: dict[str, Any] = {
        "kind": kind,
        "replica": "dying",
        "lease": LEASE,
        "sqlite_path": str(tmp_path / "usermon.db"),
        "prefix": f"usermon_test_{uuid.uuid4().hex[:12]}:",
    }
    if kind in ("redis", "postgresql+redis"):
        made["redis_url"] = request.getfixturevalue("redis_url")
    if kind.startswith("postgresql"):
        made["postgresql_url"] = request.getfixturevalue("postgresql_url")
        made["schema"] = request.getfixturevalue("pg_schema")
    yield made
    if "redis_url" in made:
        from usermon.processor.storage.state.redis import RedisState

        RedisState.from_url(made["redis_url"], prefix=made["prefix"]).clear()


def _run_until_killed(spec: dict[str, Any], bodies: list[bytes], die_in: int, tmp: Path) -> None:
    paths = []
    for i, body in enumerate(bodies[: die_in + 1]):
        path = tmp / f"batch{i}.bin"
        path.write_bytes(body)
        paths.append(str(path))
    child = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("crash_replica.py")),
            json.dumps({**spec, "bodies": paths, "die_in": die_in}),
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode(errors="replace")[-2000:]


@pytest.mark.parametrize("die", ["before-record", "after-record"])
def test_a_replica_killed_around_recording_a_batch_loses_no_finding_and_doubles_none(
    spec: dict[str, Any],
    die: str,
    traffic: tuple[list[bytes], int, Summary],
    tmp_path: Path,
) -> None:
    bodies, die_in, expected = traffic
    _run_until_killed({**spec, "die": die}, bodies, die_in, tmp_path)

    shared = spec["kind"] in ("redis", "postgresql+redis")
    # Shared: another replica adopts the journal once the lease runs out. Alone: the replica
    # restarts under its name (the same file) and replays its journal.
    survivor_spec = {**spec, "replica": "survivor"} if shared else spec
    survivor = Processor(
        settings(), store=open_spec_store(survivor_spec), detectors=default_detectors()
    )
    try:
        # Until it took over every batch the dead replica acknowledged (at once when restarting).
        deadline = time.monotonic() + 20
        while survivor.replayed < BATCH * (die_in + 1) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert summary(survivor.store) == expected
        if shared:  # nothing is kept for the batches any more
            assert survivor.engine.state.kept(f"k:{die_in + 1}") == {}
    finally:
        survivor.close()


@pytest.mark.parametrize("at", [5, 30])
def test_a_replica_killed_mid_batch_loses_no_finding(
    shared_spec: dict[str, Any],
    at: int,
    traffic: tuple[list[bytes], int, Summary],
    tmp_path: Path,
) -> None:
    """Killed at event ``at`` of a batch: it and the rest of its segment were claimed and
    counted, no detector saw it. The findings of the events before it were kept with their
    claims, it and the rest of its segment are judged again by the survivor (their claims name
    the batch it replays), the events after them are found by the survivor: every finding is
    there with every event it had. Those judged again read counts that hold the rest of the
    segment, so a finding may have an event or two more. (A single replica restarts from its
    checkpoint: nothing of the batch is in flight then.)"""
    spec = shared_spec
    bodies, die_in, expected = traffic
    _run_until_killed({**spec, "die": "mid-batch", "die_at_event": at}, bodies, die_in, tmp_path)
    survivor = Processor(
        settings(),
        store=open_spec_store({**spec, "replica": "survivor"}),
        detectors=default_detectors(),
    )
    try:
        deadline = time.monotonic() + 20
        while survivor.replayed < BATCH * (die_in + 1) and time.monotonic() < deadline:
            time.sleep(0.1)
        found = {fid: rest for fid, *rest in summary(survivor.store)}
        wanted = {fid: rest for fid, *rest in expected}
        assert found.keys() == wanted.keys()
        extra = {fid: found[fid][2] - wanted[fid][2] for fid in wanted}  # type: ignore[operator]
        assert min(extra.values()) >= 0, extra
        assert sum(extra.values()) <= survivor.engine.rejudged, extra
        assert survivor.engine.rejudged > 0
    finally:
        survivor.close()


class FailsOnceAt:
    """A detector, first of all, that fails like the state going away at one event, once."""

    name = "fails_once_at"

    def __init__(self, at: float) -> None:
        self.at, self.failed = at, False

    def observe(self, event: Event, state: State) -> Sequence[Signal]:
        if event.time == self.at and not self.failed:
            self.failed = True
            raise StoreError("the state went away")
        return ()


def _failures(user: str, times: Sequence[float]) -> bytes:
    events = [
        Event(
            kind="login",
            time=t,
            success=False,
            user_hash=user,
            client_ip="203.0.113.5",
            trace_id=f"{int(t * 1000):032x}",
            span_id=f"{int(t * 1000):016x}",
        )
        for t in times
    ]
    return to_request(events).SerializeToString()


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param(
            "pg", id="postgresql+redis", marks=[pytest.mark.postgresql, pytest.mark.redis]
        ),
    ]
)
def shared_store_factory(request: pytest.FixtureRequest) -> Callable[..., Store]:
    factory: Callable[..., Store] = request.getfixturevalue(f"{request.param}_store_factory")
    return factory


def test_a_batch_that_failed_half_way_is_replayed_by_its_replica_before_the_next(
    shared_store_factory: Callable[..., Store],
) -> None:
    """The state failed while its fifth event was judged (503): before the replica takes its
    next batch, it replays the failed one from its journal. The event whose judging failed
    was claimed and counted (planned steps) and is judged again; the four before it, judged
    already, are not; the five after it are new. Each of alice's events is counted once."""
    t0 = 1_767_571_200.0
    times = [t0 + i for i in range(10)]
    failing = Processor(
        settings(),
        store=shared_store_factory(lease=LEASE),
        detectors=[FailsOnceAt(times[4]), ExampleRule(threshold=1)],
    )
    try:
        with pytest.raises(StoreError):  # 503: the sender retries, here it never does
            failing.ingest("traces", _failures("alice", times), json_format=False)
        failing.ingest("traces", _failures("bob", [t0 + 20]), json_format=False)
        found = {f.subject.id: f.event_count for f in failing.store.findings()}
        assert found == {"alice": 10, "bob": 1}
        assert failing.engine.rejudged == 1
        assert failing.engine.stats["logins_failure"] == 11
    finally:
        failing.close()


def test_a_batch_that_failed_half_way_and_is_adopted_records_the_rest(
    shared_store_factory: Callable[..., Store],
) -> None:
    """The replica died before it replayed the batch the state failed half way: the adopter
    records what the whole batch finds, the first events' findings from what was kept with
    their claims, the rest from its own judging."""
    t0 = 1_767_571_200.0
    times = [t0 + i for i in range(10)]
    failing = Processor(
        settings(),
        store=shared_store_factory(lease=LEASE),
        detectors=[FailsOnceAt(times[4]), ExampleRule(threshold=1)],
    )
    failing._stop.set()  # its background thread would replay the failed batch: dead before
    assert failing._adopter is not None
    failing._adopter.join()
    with pytest.raises(StoreError):  # 503: the sender retries, here it never does
        failing.ingest("traces", _failures("alice", times), json_format=False)
    assert failing.store.findings() == []
    failing.store.close()  # dies: no checkpoint, its journal left to the others

    survivor = Processor(
        settings(), store=shared_store_factory(lease=LEASE), detectors=[ExampleRule(threshold=1)]
    )
    try:
        deadline = time.monotonic() + 20
        while survivor.replayed < len(times) and time.monotonic() < deadline:
            time.sleep(0.1)
        found = {f.subject.id: f.event_count for f in survivor.store.findings()}
        # The event whose judging failed had its planned steps run (claimed and counted, the
        # Redis default): the survivor finds it claimed for the batch it replays and never
        # judged, and judges it again. The five after it are new to it.
        assert found == {"alice": 10}
    finally:
        survivor.close()
