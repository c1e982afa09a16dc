"""The decision API (usermon.processor.decisions_api) and token scopes, against a processor
serving HTTP on loopback: create, list, stream (full, then by cursor), remove, allowlist; bad
input is 400 with a clear message; an application token reads the stream and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.support.servers import ServedInThread

from .conftest import Running
from .payloads import logins

ADMIN = "admin-token-0123456789"
APP = "app-token-0123456789abc"


@pytest.fixture
def served(make_processor: Any) -> Iterator[Running]:
    processor = make_processor(token=ADMIN, app_tokens=APP)
    with ServedInThread(processor) as running:
        yield Running(running.url, processor, processor.settings)


def call(
    running: Running, method: str, path: str, token: str | None = ADMIN, **kw: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kw.pop("headers", {}))
    return httpx.request(method, running.url + path, headers=headers, timeout=10, **kw)


def block(running: Running, value: str, scope: str = "ip", **fields: Any) -> dict[str, Any]:
    body = {"action": "block", "scope": scope, "value": value, "duration": "15m", **fields}
    response = call(running, "POST", "/api/decisions", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_a_decision_made_by_hand_is_listed_and_streamed(served: Running) -> None:
    made = block(served, "192.0.2.7", reason="scanner", by="alice")
    assert made["origin"] == "manual:alice"
    assert made["until"].endswith("Z")
    listed = call(served, "GET", "/api/decisions").json()["decisions"]
    assert [d["id"] for d in listed] == [made["id"]]
    first = call(served, "GET", "/api/decisions/stream", token=APP).json()
    assert first["full"] is True
    assert [d["value"] for d in first["new"]] == ["192.0.2.7"]
    assert set(first["new"][0]) == {
        "id",
        "action",
        "scope",
        "value",
        "until",
        "reason",
        "origin",
        "created",
    }
    assert first["allow"] == {"networks": [], "users": []}


def test_the_stream_sends_what_changed_since_a_cursor(served: Running) -> None:
    first = block(served, "192.0.2.7")
    cursor = call(served, "GET", "/api/decisions/stream", token=APP).json()["cursor"]
    second = block(served, "198.51.100.0/24", scope="network")
    assert call(served, "DELETE", f"/api/decisions/{first['id']}").status_code == 200
    step = call(served, "GET", "/api/decisions/stream", token=APP, params={"cursor": cursor}).json()
    assert step["full"] is False
    assert [d["id"] for d in step["new"]] == [second["id"]]
    assert step["deleted"] == [first["id"]]
    quiet = call(
        served, "GET", "/api/decisions/stream", token=APP, params={"cursor": step["cursor"]}
    ).json()
    assert (quiet["full"], quiet["new"], quiet["deleted"]) == (False, [], [])


@pytest.mark.parametrize("cursor", ["nonsense", "otherepoch.3", ""])
def test_an_unknown_cursor_gets_the_full_set(served: Running, cursor: str) -> None:
    block(served, "192.0.2.7")
    answer = call(
        served, "GET", "/api/decisions/stream", token=APP, params={"cursor": cursor}
    ).json()
    assert answer["full"] is True
    assert len(answer["new"]) == 1


def test_unblock_by_value_removes_every_active_decision_on_it(served: Running) -> None:
    block(served, "192.0.2.7")
    block(served, "192.0.2.7", action="challenge")
    block(served, "192.0.2.8")
    removed = call(served, "DELETE", "/api/decisions/192.0.2.7").json()["removed"]
    assert len(removed) == 2
    left = call(served, "GET", "/api/decisions").json()["decisions"]
    assert [d["value"] for d in left] == ["192.0.2.8"]
    assert call(served, "DELETE", "/api/decisions/192.0.2.7").status_code == 404


def test_the_allowlist_goes_out_with_the_stream(served: Running) -> None:
    assert call(served, "POST", "/api/allowlist", json={"value": "10.1.2.3/8"}).status_code == 201
    assert call(served, "POST", "/api/allowlist", json={"value": "probe-hash"}).status_code == 201
    allow = call(served, "GET", "/api/decisions/stream", token=APP).json()["allow"]
    assert allow == {"networks": ["10.0.0.0/8"], "users": ["probe-hash"]}
    assert call(served, "DELETE", "/api/allowlist/10.0.0.0/8").status_code == 200
    entries = call(served, "GET", "/api/allowlist").json()["allowlist"]
    assert [e["value"] for e in entries] == ["probe-hash"]


def test_a_user_named_by_its_label_is_decided_and_allowed_by_its_hash(served: Running) -> None:
    """Applications match a user's decision on its user.hash: a label (what a person types,
    and what ``GET /api/users/{user}`` accepts) is resolved to it, never stored as it is."""
    served.processor.ingest("traces", logins(1), json_format=False)
    label, user_hash = "alice@example.com", "h-alice@example.com"
    assert block(served, label, scope="user")["value"] == user_hash
    assert block(served, f"{label}|192.0.2.7", scope="user_ip")["value"] == f"{user_hash}|192.0.2.7"
    assert block(served, "h-nobody-yet", scope="user")["value"] == "h-nobody-yet"
    assert call(served, "POST", "/api/allowlist", json={"value": label}).status_code == 201
    allow = call(served, "GET", "/api/decisions/stream", token=APP).json()["allow"]
    assert allow["users"] == [user_hash]


def test_changes_are_audited_with_who_made_them(served: Running) -> None:
    made = block(served, "192.0.2.7", by="alice")
    call(served, "DELETE", f"/api/decisions/{made['id']}", params={"by": "bob"})
    audit = call(served, "GET", "/api/decisions/audit").json()["audit"]
    assert [(e["op"], e["by"]) for e in audit] == [("remove", "bob"), ("add", "alice")]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"scope": "network", "value": "198.51.100.0/33", "duration": "1h"}, "not a CIDR"),
        ({"scope": "network", "value": "300.1.2.0/24", "duration": "1h"}, "not a CIDR"),
        ({"scope": "ip", "value": "192.0.2.1:80", "duration": "1h"}, "not an IP address"),
        ({"scope": "ip", "value": "192.0.2.1", "duration": "-5m"}, "duration"),
        ({"scope": "ip", "value": "192.0.2.1", "duration": 0}, "more than 0"),
        ({"scope": "ip", "value": "192.0.2.1", "duration": "400d"}, "at most"),
        ({"scope": "ip", "value": "192.0.2.1", "duration": "soon"}, "30s, 15m"),
        ({"scope": "ip", "value": "192.0.2.1"}, "duration is required"),
        ({"scope": "planet", "value": "x", "duration": "1h"}, "unknown scope 'planet'"),
        (
            {"action": "ban", "scope": "ip", "value": "192.0.2.1", "duration": "1h"},
            "unknown action",
        ),
        ({"scope": "user_ip", "value": "192.0.2.1", "duration": "1h"}, "<user.hash>|<address>"),
        ({"scope": "service_campaign", "value": "asn=64500", "duration": "1h"}, "ua= or net="),
        (
            {
                "scope": "service_campaign",
                "value": ";".join(f"net=10.{i}.0.0/16" for i in range(33)),
                "duration": "1h",
            },
            "at most 32",
        ),
        ({"scope": "ip", "value": "192.0.2.1", "duration": "1h", "colour": 1}, "unknown field"),
    ],
)
def test_bad_decisions_get_400_with_a_clear_message(
    served: Running, body: dict[str, Any], message: str
) -> None:
    response = call(served, "POST", "/api/decisions", json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_a_body_that_is_not_json_is_400(served: Running) -> None:
    response = call(served, "POST", "/api/decisions", content=b"{nope")
    assert response.status_code == 400
    assert "not JSON" in response.json()["error"]


def test_a_bad_allowlist_entry_is_400(served: Running) -> None:
    response = call(served, "POST", "/api/allowlist", json={"value": "10.0.0.0/8", "kind": "asn"})
    assert response.status_code == 400


# -- tokens ----------------------------------------------------------------------------------------


def test_an_application_token_reads_the_stream_and_sends_events(served: Running) -> None:
    assert call(served, "GET", "/api/decisions/stream", token=APP).status_code == 200
    response = call(
        served,
        "POST",
        "/v1/traces",
        token=APP,
        content=logins(1),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/decisions", {"scope": "ip", "value": "192.0.2.1", "duration": "1h"}),
        ("DELETE", "/api/decisions/192.0.2.1", None),
        ("POST", "/api/allowlist", {"value": "10.0.0.0/8"}),
        ("DELETE", "/api/allowlist/10.0.0.0/8", None),
        ("GET", "/api/decisions", None),
        ("GET", "/api/findings", None),
        ("GET", "/api/users", None),
    ],
)
def test_an_application_token_may_not_change_decisions_nor_read_users(
    served: Running, method: str, path: str, body: Any
) -> None:
    response = call(served, method, path, token=APP, json=body)
    assert response.status_code == 403
    assert "admin token" in response.json()["error"]


def test_an_application_token_trying_to_unblock_is_refused_and_nothing_changes(
    served: Running,
) -> None:
    made = block(served, "192.0.2.7")
    assert call(served, "DELETE", f"/api/decisions/{made['id']}", token=APP).status_code == 403
    assert len(call(served, "GET", "/api/decisions").json()["decisions"]) == 1


@pytest.mark.parametrize("token", [None, "wrong-token-0123456789"])
def test_no_token_or_an_unknown_one_is_401(served: Running, token: str | None) -> None:
    assert call(served, "GET", "/api/decisions/stream", token=token).status_code == 401
    assert call(served, "GET", "/api/decisions", token=token).status_code == 401
