"""Protection in Django and DRF: decisions synced from a real stream server, enforced in real
views (the admin login, ``LoginView``, a DRF API with Basic authentication) through Django's
test client, with a hasher that counts: a refused login computes no password hash."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tests.support.protection import (
    Clock,
    DecisionServer,
    decision,
    protect,
    sync_again,
    user_hash,
    wait_until,
)

import usermon
from usermon import attributes as attrs
from usermon.testing import CapturedEvents

from .django_site import CountingHasher

PASSWORD = "correct horse"
ATTACKER = "203.0.113.66"
ADMIN_FAILURE = "Please enter the correct username and password for a staff account"


@pytest.fixture
def ada(db: None) -> object:
    from .django_site import make_user

    return make_user("ada", PASSWORD, email="ada@example.com", is_staff=True)


@pytest.fixture
def instrumented(django_project: None) -> Iterator[None]:
    from usermon.instrumentation.django import DjangoInstrumentor
    from usermon.instrumentation.drf import DRFInstrumentor

    DjangoInstrumentor().instrument()
    DRFInstrumentor().instrument()
    yield
    DRFInstrumentor().uninstrument()
    DjangoInstrumentor().uninstrument()


pytestmark = [pytest.mark.usefixtures("db", "ada", "instrumented")]


def _login(path: str = "/admin/login/", ip: str = ATTACKER, password: str = PASSWORD) -> Any:
    from django.test import Client

    CountingHasher.calls = 0
    return Client(REMOTE_ADDR=ip).post(path, {"username": "ada", "password": password})


def _api(ip: str = ATTACKER, password: str = PASSWORD) -> Any:
    import base64

    from django.test import Client

    CountingHasher.calls = 0
    token = base64.b64encode(f"ada:{password}".encode()).decode()
    return Client(REMOTE_ADDR=ip).get("/api/whoami/", HTTP_AUTHORIZATION=f"Basic {token}")


def _blocked(server: DecisionServer, scope: str, value: str, **extra: Any) -> None:
    server.add(decision("d-1", scope, value, **extra))
    protect(server)


@pytest.mark.parametrize("path", ["/admin/login/", "/accounts/login/"])
def test_a_blocked_address_gets_429_with_retry_after_and_no_hash(
    decision_server: DecisionServer, events: CapturedEvents, path: str
) -> None:
    _blocked(decision_server, "ip", ATTACKER, ttl=600)

    response = _login(path)

    assert response.status_code == 429
    assert 590 <= int(response["Retry-After"]) <= 600
    assert CountingHasher.calls == 0
    [event] = events.logins
    assert event.success is False
    assert event.attributes[attrs.LOGIN_BLOCKED] is True
    assert event.attributes[attrs.DECISION_ID] == "d-1"
    assert event.attributes[attrs.CLIENT_ADDRESS] == ATTACKER
    assert event.attributes[attrs.IDENTIFIER_PREFIX + "username"] == "ada"


def test_a_blocked_network_gets_429(decision_server: DecisionServer) -> None:
    _blocked(decision_server, "network", "203.0.113.0/24")

    assert _login().status_code == 429
    assert CountingHasher.calls == 0


def test_a_locked_account_gets_the_wrong_password_answer_without_a_hash(
    decision_server: DecisionServer, events: CapturedEvents
) -> None:
    wrong = _login(password="hunter2")
    _blocked(decision_server, "user", user_hash({"username": "ada"}))
    events.clear()

    response = _login()

    assert response.status_code == wrong.status_code == 200
    assert ADMIN_FAILURE in wrong.content.decode()
    assert ADMIN_FAILURE in response.content.decode()
    assert CountingHasher.calls == 0
    [event] = events.logins  # one event: Django's own user_login_failed is not reported again
    assert event.success is False
    assert event.attributes[attrs.LOGIN_BLOCKED] is True


def test_a_user_ip_lock_applies_from_that_address_only(decision_server: DecisionServer) -> None:
    _blocked(decision_server, "user_ip", f"{user_hash({'username': 'ada'})}|{ATTACKER}")

    assert ADMIN_FAILURE in _login().content.decode()
    assert _login(ip="198.51.100.9").status_code == 302


def test_an_allowlisted_address_is_never_refused(
    decision_server: DecisionServer, events: CapturedEvents
) -> None:
    decision_server.allow = {"networks": ["203.0.113.0/24"], "users": []}
    _blocked(decision_server, "ip", ATTACKER)

    response = _login()

    assert response.status_code == 302
    assert CountingHasher.calls > 0
    [event] = events.logins
    assert event.success is True
    assert attrs.LOGIN_BLOCKED not in event.attributes


def test_without_a_decision_the_login_is_normal(
    decision_server: DecisionServer, events: CapturedEvents
) -> None:
    protect(decision_server)

    assert _login().status_code == 302
    assert CountingHasher.calls > 0
    assert attrs.LOGIN_BLOCKED not in events.logins[0].attributes


def test_the_blocked_view_setting_answers_instead(decision_server: DecisionServer) -> None:
    from django.test import override_settings

    _blocked(decision_server, "user", user_hash({"username": "ada"}))
    with override_settings(USERMON_BLOCKED_VIEW=__name__ + ".blocked_view"):
        response = _login()

    assert response.status_code == 403
    assert response.content == b"refused by d-1"
    assert CountingHasher.calls == 0


def blocked_view(request: Any, decision: usermon.Decision) -> Any:
    from django.http import HttpResponse

    if decision.scope == "network":
        return None  # usermon's default answer
    return HttpResponse(f"refused by {decision.id}", status=403)


def test_a_blocked_view_returning_none_keeps_the_default_answer(
    decision_server: DecisionServer,
) -> None:
    from django.test import override_settings

    _blocked(decision_server, "network", "203.0.113.0/24")
    with override_settings(USERMON_BLOCKED_VIEW=__name__ + ".blocked_view"):
        assert _login().status_code == 429
        assert _api().status_code == 429


def test_a_challenge_calls_the_hook_whose_response_is_sent(
    decision_server: DecisionServer, events: CapturedEvents
) -> None:
    from django.http import HttpResponse

    calls: list[tuple[Any, usermon.Decision]] = []

    def captcha(request: Any, found: usermon.Decision) -> Any:
        calls.append((request, found))
        if request.POST.get("captcha") == "solved":
            return None
        return HttpResponse("solve the captcha", status=401)

    usermon.set_challenge_handler(captcha)
    _blocked(decision_server, "ip", ATTACKER, action="challenge")

    refused = _login()
    assert refused.status_code == 401
    assert refused.content == b"solve the captcha"
    assert CountingHasher.calls == 0
    assert events.logins[0].attributes[attrs.LOGIN_BLOCKED] is True

    from django.test import Client

    passed = Client(REMOTE_ADDR=ATTACKER).post(
        "/admin/login/", {"username": "ada", "password": PASSWORD, "captcha": "solved"}
    )
    assert passed.status_code == 302
    assert [found.id for _, found in calls] == ["d-1", "d-1"]
    assert calls[0][0].META["REMOTE_ADDR"] == ATTACKER


def test_a_challenge_without_a_hook_lets_the_login_go_on(
    decision_server: DecisionServer, caplog: pytest.LogCaptureFixture
) -> None:
    _blocked(decision_server, "ip", ATTACKER, action="challenge")

    assert _login().status_code == 302
    assert "no challenge handler is registered" in caplog.text


def test_with_the_processor_down_decisions_apply_until_they_expire_then_fail_open(
    decision_server: DecisionServer, clock: Clock
) -> None:
    _blocked(decision_server, "ip", ATTACKER, ttl=60)
    decision_server.down()
    wait_until(lambda: usermon.protection_status().failures > 0)

    assert _login().status_code == 429  # the synced decision still applies
    clock.now += 61
    assert _login().status_code == 302  # expired, nothing new: the login goes on


def test_protection_resumes_when_the_processor_returns(decision_server: DecisionServer) -> None:
    protect(decision_server)
    assert _login().status_code == 302
    decision_server.add(decision("d-2", "ip", ATTACKER))
    sync_again()

    assert _login().status_code == 429


def test_with_protection_off_nothing_is_refused(decision_server: DecisionServer) -> None:
    decision_server.add(decision("d-1", "ip", ATTACKER))

    assert _login().status_code == 302


def test_drf_a_blocked_address_gets_429_with_retry_after_and_no_hash(
    decision_server: DecisionServer, events: CapturedEvents
) -> None:
    _blocked(decision_server, "ip", ATTACKER, ttl=120)

    response = _api()

    assert response.status_code == 429
    assert 110 <= int(response["Retry-After"]) <= 120
    assert CountingHasher.calls == 0
    [event] = events.logins
    assert event.attributes[attrs.SOURCE] == attrs.SOURCE_DRF
    assert event.attributes[attrs.LOGIN_BLOCKED] is True


def test_drf_a_locked_account_gets_the_wrong_password_answer(
    decision_server: DecisionServer, events: CapturedEvents
) -> None:
    wrong = _api(password="hunter2")
    _blocked(decision_server, "user", user_hash({"username": "ada"}))
    events.clear()

    response = _api()

    assert response.status_code == wrong.status_code == 401
    assert response.json() == wrong.json()
    assert CountingHasher.calls == 0
    [event] = events.logins
    assert event.attributes[attrs.SOURCE] == attrs.SOURCE_DRF
    assert event.attributes[attrs.LOGIN_BLOCKED] is True


TOKEN_VIEWS = ["/api/token/", "/api/jwt/"]  # DRF's obtain_auth_token, SimpleJWT's pair view


@pytest.mark.parametrize("path", TOKEN_VIEWS)
def test_a_token_view_refuses_a_blocked_address_with_429_and_no_hash(
    decision_server: DecisionServer, events: CapturedEvents, path: str
) -> None:
    _blocked(decision_server, "ip", ATTACKER, ttl=120)

    response = _login(path)

    assert response.status_code == 429
    assert 110 <= int(response["Retry-After"]) <= 120
    assert CountingHasher.calls == 0
    [event] = events.logins
    assert event.success is False
    assert event.attributes[attrs.LOGIN_BLOCKED] is True


@pytest.mark.parametrize("path", TOKEN_VIEWS)
def test_a_token_view_answers_a_locked_account_as_a_wrong_password(
    decision_server: DecisionServer, events: CapturedEvents, path: str
) -> None:
    wrong = _login(path, password="hunter2")
    _blocked(decision_server, "user", user_hash({"username": "ada"}))
    events.clear()

    response = _login(path)

    assert response.status_code == wrong.status_code != 200
    assert response.json() == wrong.json()
    assert CountingHasher.calls == 0
    [event] = events.logins  # the refusal, reported once; no success
    assert event.success is False
    assert event.attributes[attrs.LOGIN_BLOCKED] is True


def test_drf_the_blocked_view_setting_answers_instead(decision_server: DecisionServer) -> None:
    from django.test import override_settings

    _blocked(decision_server, "ip", ATTACKER)
    with override_settings(USERMON_BLOCKED_VIEW=__name__ + ".blocked_view"):
        response = _api()

    assert response.status_code == 403
    assert response.content == b"refused by d-1"


def test_drf_an_allowlisted_address_is_never_refused(decision_server: DecisionServer) -> None:
    decision_server.allow = {"networks": [ATTACKER], "users": []}
    _blocked(decision_server, "ip", ATTACKER)

    assert _api().status_code == 200


def test_a_failed_login_after_a_refused_one_is_reported_as_usual(
    decision_server: DecisionServer, events: CapturedEvents
) -> None:
    _blocked(decision_server, "user", user_hash({"username": "ada"}))
    _login()
    from django.contrib.auth import authenticate

    assert authenticate(None, username="grace", password="x") is None  # no decision for grace

    refused, failed = events.logins
    assert refused.attributes[attrs.LOGIN_BLOCKED] is True
    assert failed.attributes[attrs.IDENTIFIER_PREFIX + "username"] == "grace"
    assert attrs.LOGIN_BLOCKED not in failed.attributes


def test_a_stuck_processor_never_holds_a_login(decision_server: DecisionServer) -> None:
    _blocked(decision_server, "ip", ATTACKER)
    decision_server.mode = "hang"
    assert decision_server.hanging.wait(10)  # the sync is now stuck waiting for an answer

    assert _login().status_code == 429  # answered from memory, at once
    assert _login(ip="198.51.100.9").status_code == 302


def test_a_failure_of_usermon_lets_the_login_go_on(
    decision_server: DecisionServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from usermon import enforcement

    _blocked(decision_server, "ip", ATTACKER)

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("a bug in usermon")

    monkeypatch.setattr(enforcement, "check", broken)

    assert _login().status_code == 302


def test_the_challenge_hooks_own_error_reaches_the_application(
    decision_server: DecisionServer,
) -> None:
    class CaptchaServiceDown(Exception):
        pass

    def captcha(request: Any, found: usermon.Decision) -> Any:
        raise CaptchaServiceDown

    usermon.set_challenge_handler(captcha)
    _blocked(decision_server, "ip", ATTACKER, action="challenge")

    with pytest.raises(CaptchaServiceDown):
        _login()


def test_a_backends_own_error_passes_through_with_protection_on(
    decision_server: DecisionServer,
) -> None:
    from django.contrib.auth import authenticate

    from .django_site import DatabaseDown

    protect(decision_server)

    with pytest.raises(DatabaseDown):
        authenticate(None, username="explode", password="x")


def test_uninstrument_puts_back_what_enforcement_wrapped(decision_server: DecisionServer) -> None:
    import django.contrib.auth as auth
    from django.core.handlers import exception

    from usermon.instrumentation.django import DjangoInstrumentor

    _blocked(decision_server, "ip", ATTACKER)
    assert _login().status_code == 429
    DjangoInstrumentor().uninstrument()

    assert not hasattr(auth._get_compatible_backends, "__wrapped__")
    assert not hasattr(exception.response_for_exception, "__wrapped__")
    assert _login().status_code == 302  # DRF's own instrumentor stays, Django's is off
    DjangoInstrumentor().instrument()


def test_drf_a_challenge_response_is_sent_through_django(decision_server: DecisionServer) -> None:
    from django.http import HttpResponse

    seen: list[type] = []

    def captcha(request: Any, found: usermon.Decision) -> Any:
        seen.append(type(request))
        return HttpResponse("solve the captcha", status=401)

    usermon.set_challenge_handler(captcha)
    _blocked(decision_server, "ip", ATTACKER, action="challenge")

    response = _api()

    assert (response.status_code, response.content) == (401, b"solve the captcha")
    assert CountingHasher.calls == 0
    assert [cls.__name__ for cls in seen] == ["Request"]  # DRF's request


# -- the system check of USERMON_BLOCKED_VIEW ----------------------------------------------------


def _usermon_checks() -> list[str]:
    from django.core import checks

    return [message.id for message in checks.run_checks(tags=["usermon"])]


def test_a_blocked_view_that_cannot_be_imported_is_a_system_check_error() -> None:
    """``manage.py check`` (and runserver at startup) says so, instead of a 500 at the first
    refused login."""
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError
    from django.test import override_settings

    with override_settings(USERMON_BLOCKED_VIEW=__name__ + ".no_such_view"):
        assert _usermon_checks() == ["usermon.E001"]
        with pytest.raises(SystemCheckError, match=r"usermon\.E001"):
            call_command("check")


def test_a_blocked_view_that_is_not_a_function_is_a_system_check_error() -> None:
    from django.test import override_settings

    with override_settings(USERMON_BLOCKED_VIEW=42):
        assert _usermon_checks() == ["usermon.E002"]


def test_an_importable_blocked_view_or_none_passes_the_check() -> None:
    from django.test import override_settings

    with override_settings(USERMON_BLOCKED_VIEW=__name__ + ".blocked_view"):
        assert _usermon_checks() == []
    with override_settings(USERMON_BLOCKED_VIEW=blocked_view):
        assert _usermon_checks() == []
    assert _usermon_checks() == []  # not set


def test_uninstrument_removes_the_check() -> None:
    from django.core.checks.registry import registry
    from django.test import override_settings

    from usermon.instrumentation.django import DjangoInstrumentor, check_blocked_view

    assert check_blocked_view in registry.get_checks()
    DjangoInstrumentor().uninstrument()
    try:
        assert check_blocked_view not in registry.get_checks()
        with override_settings(USERMON_BLOCKED_VIEW=__name__ + ".no_such_view"):
            assert "usermon.E001" not in [m.id for m in registry.run_checks()]
    finally:
        DjangoInstrumentor().instrument()
