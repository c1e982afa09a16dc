"""A login refused on a protection decision (``usermon.login.blocked = true``, additive in schema
1) is decoded, recorded against the address, and never counted as a password failure of the
account: a blocked attacker hammering an account does not grow a brute force on it."""

from __future__ import annotations

from typing import Any

from usermon import attributes as A
from usermon.processor.otlp import decode
from usermon.processor.service import Processor
from usermon.processor.settings import resolve

from .payloads import T0, login_attributes, span, traces_request


def attempts(n: int, *, blocked: bool | None) -> bytes:
    extra: dict[str, Any] = {} if blocked is None else {A.LOGIN_BLOCKED: blocked}
    return traces_request(
        [span(5000 + i, {**login_attributes(ip="192.0.2.7"), **extra}, T0 + i) for i in range(n)]
    )


def processor() -> Processor:
    return Processor(resolve({"store": "memory://", "lateness": "1e9"}, env={}))


def test_the_blocked_attribute_is_decoded() -> None:
    (refused,) = decode("traces", attempts(1, blocked=True), json_format=False).events
    assert refused.blocked is True
    assert refused.success is False
    (plain,) = decode("traces", attempts(1, blocked=None), json_format=False).events
    assert plain.blocked is False
    (said_no,) = decode("traces", attempts(1, blocked=False), json_format=False).events
    assert said_no.blocked is False


def test_blocked_attempts_are_no_password_failures_of_the_account() -> None:
    p = processor()
    try:
        p.ingest("traces", attempts(30, blocked=True), json_format=False)
        assert p.store.findings() == []
        assert p.engine.stats["logins_blocked"] == 30
        assert p.engine.stats["logins_failure"] == 0
        address = p.profiles.ip("192.0.2.7")
        assert address is not None
        assert address["failures"]["24h"] == 30  # evidence against the address, kept
        assert p.profiles.user("h-alice@example.com") is None
    finally:
        p.close()


def test_the_same_attempts_not_blocked_are_a_brute_force() -> None:
    p = processor()
    try:
        p.ingest("traces", attempts(30, blocked=None), json_format=False)
        assert [f.kind for f in p.store.findings()] == ["brute_force"]
    finally:
        p.close()
