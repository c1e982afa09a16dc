"""A small, seeded login stream with attacks in it, for comparing one processor with several."""

from __future__ import annotations

import random
from typing import Any

from usermon.processor.model import Event
from usermon.processor.service import Processor
from usermon.processor.simulate.otlp import to_request
from usermon.processor.storage.base import Store

START = 1_767_571_200.0  # 2026-01-05 00:00 UTC


def login_stream(seed: int = 1, users: int = 300) -> list[Event]:
    """Benign logins over two hours, plus a brute force on one account, credential stuffing from
    one address and a distributed brute force from many; in event-time order."""
    rng = random.Random(seed)
    events: list[tuple[float, str, str, bool]] = []  # (time, user, ip, success)
    for i in range(users):
        home = f"10.{i // 250}.{i % 250}.{rng.randint(1, 250)}"
        for _ in range(rng.randint(1, 3)):
            t = START + rng.uniform(0, 7200)
            if rng.random() < 0.1:
                events.append((t - 5, f"user{i}", home, False))  # a typo first
            events.append((t, f"user{i}", home, True))
    for k in range(60):  # brute force: one account, one address, ten minutes
        events.append((START + 1800 + k * 10, "user7", "203.0.113.5", False))
    for k in range(80):  # credential stuffing: one address, many accounts
        events.append((START + 3600 + k * 3, f"leaked{k}", "198.51.100.9", False))
    for k in range(120):  # distributed brute force: one account, many addresses
        events.append((START + 5000 + k * 4, "user11", f"192.0.2.{k}", False))
    events.sort()
    return [
        Event(
            kind="login",
            time=t,
            success=ok,
            user_hash=user,
            user_id=f"{user}@example.com",
            primary_key="email",
            client_ip=ip,
            user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
            source="sdk",
            service="shop",
            trace_id=f"{n:032x}",
            span_id=f"{n:016x}",
        )
        for n, (t, user, ip, ok) in enumerate(events, start=1)
    ]


Summary = list[tuple[Any, ...]]
"""Findings as ``(id, kind, subject id, events, first seen, last seen)``, sorted."""


def summary(store: Store) -> Summary:
    return sorted(
        (f.id, f.kind, f.subject.id, f.event_count, f.first_seen, f.last_seen)
        for f in store.findings(limit=1000)
    )


def batches(events: list[Event], size: int) -> list[bytes]:
    """``events`` as OTLP export requests of ``size`` events each."""
    return [
        to_request(events[i : i + size]).SerializeToString() for i in range(0, len(events), size)
    ]


def second_growth(bodies: list[bytes], single: Processor) -> tuple[int, Summary]:
    """Feed ``bodies`` to ``single`` up to the second batch that grows a finding (a batch to fail
    or die in: what the earlier one grew is recorded before it); returns that batch's index and
    the findings then."""
    growing = []
    before: Summary = []
    for i, body in enumerate(bodies):
        single.ingest("traces", body, json_format=False)
        after = summary(single.store)
        if after != before:
            growing.append(i)
        before = after
        if len(growing) == 2:
            return i, before
    raise AssertionError("the traffic grows findings in fewer than two batches")
