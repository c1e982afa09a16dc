"""A processor replica that kills itself (SIGKILL) at a chosen point of one batch, for
test_crash_recording.py: run as ``python crash_replica.py SPEC`` where SPEC is JSON naming the
store, the batches (files of OTLP trace requests), the batch to die in and where:

* ``before-record``: the batch is processed (its events claimed and counted in the state) and
  its findings are about to be recorded;
* ``after-record``: its findings are recorded, and nothing after (not the drop of what was kept
  for them, not the checkpoint);
* ``mid-batch``: at event ``die_at_event`` of the batch, claimed and counted (with planned
  steps, the default on Redis, the rest of its segment too), before any detector has seen it.

It exits 3 if it got through every batch without reaching that point.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from usermon.processor.detectors import default_detectors
from usermon.processor.model import Event, Finding, Signal
from usermon.processor.service import Processor
from usermon.processor.settings import resolve
from usermon.processor.storage.base import Store, open_store
from usermon.processor.storage.state.base import State
from usermon.processor.storage.state.steps import Step


def open_spec_store(spec: dict[str, Any]) -> Store:
    """The store ``spec`` names (also how the test opens the survivor's, with its own name)."""
    kind = spec["kind"]
    if kind == "sqlite":
        return open_store(f"sqlite:///{spec['sqlite_path']}")
    if kind == "redis":
        from usermon.processor.storage.redis import RedisStore

        return RedisStore(
            spec["redis_url"], prefix=spec["prefix"], replica=spec["replica"], lease=spec["lease"]
        )
    from usermon.processor.storage.postgresql import PostgreSQLStore

    options: dict[str, Any] = {}
    if kind == "postgresql+redis":
        options = {"state_url": spec["redis_url"], "state_prefix": spec["prefix"]}
    return PostgreSQLStore(
        spec["postgresql_url"],
        schema=spec["schema"],
        replica=spec["replica"],
        lease=spec["lease"],
        **options,
    )


def settings() -> Any:
    # No checkpoint while the batches go through: every batch stays in the journal, so what
    # takes over replays the ones recorded already too.
    return resolve({"store": "memory://", "checkpoint_interval": 3600}, env={})


class DiesAtEvent:
    """A detector, first of all, that kills the process at the chosen event of the armed batch.
    It declares a plan (none), so that planned steps run as they do with the default detectors
    alone: many events to a segment."""

    name = "dies_at_event"

    def __init__(self, armed: list[bool], at: int) -> None:
        self.armed, self.at, self.seen = armed, at, 0

    def plan(self, event: Event) -> Sequence[Step]:
        return ()

    def observe(self, event: Event, state: State) -> Sequence[Signal]:
        if self.armed[0]:
            if self.seen == self.at:
                os.kill(os.getpid(), signal.SIGKILL)
            self.seen += 1
        return ()


def main(argv: Sequence[str]) -> int:
    spec = json.loads(argv[1])
    store = open_spec_store(spec)
    armed = [False]
    detectors = [DiesAtEvent(armed, spec.get("die_at_event", -1)), *default_detectors()]
    processor = Processor(settings(), store=store, detectors=detectors)
    record = store.record_batch

    def record_then_maybe_die(batch: int, found: Mapping[str, Sequence[Finding]]) -> list[Finding]:
        if armed[0] and spec["die"] == "before-record":
            os.kill(os.getpid(), signal.SIGKILL)
        done = record(batch, found)
        if armed[0] and spec["die"] == "after-record":
            os.kill(os.getpid(), signal.SIGKILL)
        return done

    store.record_batch = record_then_maybe_die  # type: ignore[method-assign]
    for i, path in enumerate(spec["bodies"]):
        armed[0] = i == spec["die_in"]
        processor.ingest("traces", Path(path).read_bytes(), json_format=False)
    return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv))
