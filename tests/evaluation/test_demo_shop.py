"""The demo's shop reports what the demo relies on, and its script is what docs/demo.md says."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from usermon import attributes
from usermon.demo.script import build_script
from usermon.demo.shop import create_app
from usermon.instrumentation.flask_login import FlaskLoginInstrumentor
from usermon.processor.simulate.world import World
from usermon.testing import CapturedEvents, capture_events, configured


@pytest.fixture
def events() -> Iterator[CapturedEvents]:
    instrumentor = FlaskLoginInstrumentor()
    instrumentor.instrument()
    try:
        with configured(trusted_proxies="127.0.0.1/32"), capture_events() as captured:
            yield captured
    finally:
        instrumentor.uninstrument()


@pytest.fixture
def client() -> FlaskClient:
    return create_app().test_client()


def _post(client: FlaskClient, path: str, email: str, password: str, ip: str) -> int:
    response = client.post(
        path,
        data={"email": email, "password": password},
        headers={"X-Forwarded-For": ip, "User-Agent": "demo-test"},
    )
    return response.status_code


def test_signup_then_logins_report_one_identity_and_the_forwarded_client(
    client: FlaskClient, events: CapturedEvents
) -> None:
    assert _post(client, "/signup", "ada@shop.example", "pw-ada", "41.1.2.3") == 201
    assert _post(client, "/login", "ada@shop.example", "wrong", "41.1.2.4") == 401
    assert _post(client, "/login", "ada@shop.example", "pw-ada", "41.1.2.5") == 200
    [signup] = events.signups
    failure, success = events.logins
    assert (failure.success, success.success) == (False, True)
    hashes = {e.attributes[attributes.USER_HASH] for e in (signup, failure, success)}
    assert len(hashes) == 1
    assert [e.attributes[attributes.CLIENT_ADDRESS] for e in (signup, failure, success)] == [
        "41.1.2.3",
        "41.1.2.4",
        "41.1.2.5",
    ]


def test_a_second_signup_for_one_email_is_refused_and_not_reported(
    client: FlaskClient, events: CapturedEvents
) -> None:
    assert _post(client, "/signup", "bo@shop.example", "pw", "41.1.2.3") == 201
    assert _post(client, "/signup", "bo@shop.example", "pw", "41.1.2.3") == 409
    assert len(events.signups) == 1


def test_the_script_is_the_same_for_a_seed_and_keeps_attacks_in_order() -> None:
    def script() -> list[tuple[float, str | None]]:
        built = build_script(World.build(random.Random(4)), 60.0, 4)
        return [(s.at, s.kind) for s in built.steps]

    assert script() == script()
    built = build_script(World.build(random.Random(4)), 60.0, 4)
    assert built.expected_kinds == [
        "brute_force",
        "credential_stuffing",
        "account_takeover",
        "distributed_brute_force",
        "tor_login",
        "vpn_or_hosting_login",
        "impossible_travel",
        "signup_abuse",
    ]
    assert all(0 <= s.at <= 60.0 for s in built.steps)


def test_quick_and_full_scripts_send_the_same_attacks() -> None:
    def attacks(duration: float) -> list[int]:
        built = build_script(World.build(random.Random(1)), duration, 1)
        return [len(s.requests) for s in built.steps if s.kind]

    assert attacks(10.0) == attacks(60.0)
