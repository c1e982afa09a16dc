"""Token scopes (usermon.processor.access) and their settings: the admin token may do everything,
an application token may ingest (HTTP and gRPC) and read the decision stream."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from usermon.processor.access import ADMIN, APP, Access
from usermon.processor.grpc_receiver import start_grpc
from usermon.processor.settings import SettingsError, resolve

from .payloads import logins
from .test_grpc import export

ADMIN_TOKEN = "admin-token-0123456789"
APP_TOKEN = "app-token-0123456789abc"


def test_roles_of_bearer_tokens() -> None:
    access = Access(ADMIN_TOKEN, [APP_TOKEN, "second-app-token-0123"])
    assert access.role(f"Bearer {ADMIN_TOKEN}") == ADMIN
    assert access.role(f"bearer {APP_TOKEN}") == APP
    assert access.role("Bearer second-app-token-0123") == APP
    assert access.role("Bearer nope") is None
    assert access.role(APP_TOKEN) is None  # no scheme


def test_what_each_role_may_do() -> None:
    access = Access(ADMIN_TOKEN, [APP_TOKEN])
    assert access.check(f"Bearer {ADMIN_TOKEN}", ADMIN) is None
    assert access.check(f"Bearer {APP_TOKEN}", APP) is None
    assert access.check(f"Bearer {APP_TOKEN}", ADMIN) == 403
    assert access.check("", APP) == 401
    assert access.check("Bearer wrong", ADMIN) == 401


def test_no_token_at_all_is_open_and_app_tokens_alone_close_admin_routes() -> None:
    assert Access(None).check("", ADMIN) is None
    apps_only = Access(None, [APP_TOKEN])
    assert apps_only.check(f"Bearer {APP_TOKEN}", APP) is None
    assert apps_only.check(f"Bearer {APP_TOKEN}", ADMIN) == 403
    assert apps_only.check("", ADMIN) == 401


def test_app_tokens_from_the_environment_and_flags() -> None:
    settings = resolve({}, env={"USERMON_APP_TOKEN": f"{APP_TOKEN}, second-app-token-0123"})
    assert settings.app_tokens == (APP_TOKEN, "second-app-token-0123")
    assert APP_TOKEN not in repr(settings)
    flagged = resolve({"app_tokens": APP_TOKEN}, env={"USERMON_APP_TOKEN": "ignored-token-0123456"})
    assert flagged.app_tokens == (APP_TOKEN,)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"app_tokens": "short"}, "at least 16"),
        ({"app_tokens": "has space inside it!"}, "without spaces"),
        ({"token": ADMIN_TOKEN, "app_tokens": ADMIN_TOKEN}, "must differ"),
        ({"listen": "0.0.0.0:4400", "app_tokens": APP_TOKEN}, "needs a bearer token"),
    ],
)
def test_bad_token_settings_fail_at_startup(flags: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        resolve(flags, env={})


def test_an_application_token_may_export_over_grpc(make_processor: Any) -> None:
    processor = make_processor(token=ADMIN_TOKEN, app_tokens=APP_TOKEN)
    server = start_grpc(processor, "127.0.0.1", 0)
    try:
        target = f"127.0.0.1:{server.usermon_port}"
        export(target, logins(2), token=APP_TOKEN)
        assert processor.profiles.user("h-alice@example.com")["failures"]["1m"] == 2
        with pytest.raises(grpc.RpcError) as caught:
            export(target, logins(1), token="wrong-token-0123456789")
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        server.stop(grace=1).wait()
