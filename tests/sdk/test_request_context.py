"""Where the client address comes from: WSGI/ASGI capture, the trusted-proxy rule, fallbacks."""

from __future__ import annotations

import asyncio
from typing import Any

import flask
import pytest

from usermon.request_context import (
    RequestInfo,
    current_request,
    request_from_flask,
    resolve_client_ip,
    use_request,
)
from usermon.settings import ConfigurationError, parse_trusted_proxies

CLIENT = "203.0.113.7"
SPOOF = "198.51.100.66"

RESOLUTION_CASES = [
    # (peer, headers, trusted proxies, expected client)
    pytest.param("10.0.0.1", {}, None, "10.0.0.1", id="no-proxy-setting-peer-is-client"),
    pytest.param(
        "10.0.0.1",
        {"x-forwarded-for": SPOOF},
        None,
        "10.0.0.1",
        id="headers-ignored-without-trusted-proxies",
    ),
    pytest.param(
        "10.0.0.1",
        {"x-forwarded-for": CLIENT},
        "10.0.0.0/8",
        CLIENT,
        id="trusted-peer-forwards-client",
    ),
    pytest.param(
        "10.0.0.1",
        {"x-forwarded-for": f"{SPOOF}, {CLIENT}"},
        "10.0.0.0/8",
        CLIENT,
        id="right-most-untrusted-wins-over-spoofed-left",
    ),
    pytest.param(
        "10.0.0.1",
        {"x-forwarded-for": f"{SPOOF}, {CLIENT}, 10.0.0.9"},
        "10.0.0.0/8",
        CLIENT,
        id="skips-trusted-hops",
    ),
    pytest.param(
        "192.0.2.200",
        {"x-forwarded-for": SPOOF},
        "10.0.0.0/8",
        "192.0.2.200",
        id="untrusted-peer-is-the-client",
    ),
    pytest.param(
        "10.0.0.1",
        {"x-forwarded-for": "10.0.0.3, 10.0.0.2"},
        "10.0.0.0/8",
        "10.0.0.3",
        id="all-trusted-left-most",
    ),
    pytest.param(
        "10.0.0.1",
        {"forwarded": f'for={SPOOF};proto=http, for="{CLIENT}:4711";by=10.0.0.1'},
        "10.0.0.0/8",
        CLIENT,
        id="rfc7239-forwarded-with-port",
    ),
    pytest.param(
        "10.0.0.1",
        {"forwarded": 'for="[2001:db8::17]:4711"'},
        "10.0.0.0/8",
        "2001:db8::17",
        id="rfc7239-ipv6",
    ),
    pytest.param(
        "10.0.0.1",
        {"forwarded": "for=_hidden"},
        "10.0.0.0/8",
        None,
        id="rfc7239-obfuscated-is-unknown",
    ),
    pytest.param(
        "10.0.0.1",
        {"x-forwarded-for": CLIENT, "forwarded": f"for={SPOOF}"},
        "10.0.0.0/8",
        CLIENT,
        id="x-forwarded-for-preferred",
    ),
    pytest.param(
        "10.0.0.1",
        {"x-forwarded-for": f"{SPOOF}, {CLIENT}"},
        "1",
        CLIENT,
        id="hop-count-one",
    ),
    pytest.param(
        "10.0.0.1",
        {"x-forwarded-for": f"{SPOOF}, {CLIENT}, 10.1.1.1"},
        2,
        CLIENT,
        id="hop-count-two",
    ),
    pytest.param(
        "10.0.0.1",
        {"x-forwarded-for": CLIENT},
        3,
        CLIENT,
        id="hop-count-longer-than-chain-takes-left-most",
    ),
    pytest.param("10.0.0.1", {}, 1, "10.0.0.1", id="hop-count-without-header-peer"),
    pytest.param(
        "::ffff:10.0.0.1",
        {"x-forwarded-for": CLIENT},
        "10.0.0.0/8",
        CLIENT,
        id="ipv4-mapped-peer-is-trusted",
    ),
    pytest.param(None, {"x-forwarded-for": CLIENT}, "10.0.0.0/8", None, id="no-peer"),
    pytest.param("not-an-ip", {}, None, None, id="garbage-peer"),
]


@pytest.mark.parametrize(("peer", "headers", "trusted", "expected"), RESOLUTION_CASES)
def test_resolve_client_ip(
    peer: str | None, headers: dict[str, str], trusted: str | int | None, expected: str | None
) -> None:
    assert resolve_client_ip(RequestInfo(peer, headers), trusted) == expected


def test_long_forwarding_chains_are_cut_from_the_forgeable_side() -> None:
    chain = ", ".join([SPOOF] * 10_000 + [CLIENT])
    info = RequestInfo("10.0.0.1", {"x-forwarded-for": chain})
    assert resolve_client_ip(info, "10.0.0.0/8") == CLIENT


@pytest.mark.parametrize("value", ["10.0.0.0/33", "nope", "10.0.0.0/8,garbage", "-1"])
def test_bad_trusted_proxies_are_a_configuration_error(value: str) -> None:
    with pytest.raises(ConfigurationError, match="USERMON_TRUSTED_PROXIES"):
        parse_trusted_proxies(value)


def test_trusted_proxies_accept_addresses_and_cidrs() -> None:
    proxies = parse_trusted_proxies(" 10.0.0.0/8 , 192.168.1.10, 2001:db8::/32 ")
    assert [str(n) for n in proxies.networks] == ["10.0.0.0/8", "192.168.1.10/32", "2001:db8::/32"]


def test_from_wsgi_environ() -> None:
    info = RequestInfo.from_wsgi_environ(
        {
            "REMOTE_ADDR": "10.0.0.1",
            "HTTP_X_FORWARDED_FOR": CLIENT,
            "HTTP_USER_AGENT": "curl/8",
            "wsgi.input": object(),
        }
    )
    assert info.peer_ip == "10.0.0.1"
    assert info.headers == {"x-forwarded-for": CLIENT, "user-agent": "curl/8"}
    assert info.user_agent == "curl/8"


class _RecordingEnviron(dict[str, object]):
    """A WSGI environ that remembers which keys were read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read: list[str] = []

    def __getitem__(self, key: str) -> object:
        self.read.append(key)
        return super().__getitem__(key)

    def get(self, key: str, default: object = None) -> object:
        self.read.append(key)
        return super().get(key, default)

    def items(self) -> Any:
        self.read.append("*")
        return super().items()


def test_from_wsgi_environ_reads_only_the_keys_a_client_resolution_needs() -> None:
    # Under Django's runserver the environ also holds the whole process environment.
    environ = _RecordingEnviron({f"PROCESS_VAR_{n}": "x" for n in range(500)})
    environ.update(
        {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": CLIENT, "HTTP_USER_AGENT": "curl/8"}
    )
    info = RequestInfo.from_wsgi_environ(environ)
    assert resolve_client_ip(info, "10.0.0.0/8") == CLIENT
    assert info.user_agent == "curl/8"
    assert sorted(set(environ.read)) == ["HTTP_USER_AGENT", "HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"]


def test_wsgi_headers_have_the_names_a_copy_would_have() -> None:
    info = RequestInfo.from_wsgi_environ(
        {"HTTP_X_FORWARDED_FOR": CLIENT, "HTTP_X_NUMBER": 7, "HTTP_STRASSE": "s", "PATH": "/bin"}
    )
    assert info.headers.get("x-forwarded-for") == CLIENT
    assert info.headers.get("X-Forwarded-For") is None
    assert info.headers.get("x_forwarded_for") is None
    assert info.headers.get("straße") is None  # str.upper() would make it "STRASSE"
    assert info.headers.get("x-number") is None  # not a str: not a header
    assert "path" not in info.headers
    assert dict(info.headers) == {"x-forwarded-for": CLIENT, "strasse": "s"}
    assert len(info.headers) == 2


def test_from_asgi_scope_joins_repeated_headers_in_order() -> None:
    info = RequestInfo.from_asgi_scope(
        {
            "type": "http",
            "client": ("10.0.0.1", 5555),
            "headers": [
                (b"X-Forwarded-For", SPOOF.encode()),
                (b"x-forwarded-for", CLIENT.encode()),
                (b"user-agent", b"httpx"),
            ],
        }
    )
    assert info.peer_ip == "10.0.0.1"
    assert info.headers["x-forwarded-for"] == f"{SPOOF}, {CLIENT}"
    assert resolve_client_ip(info, "10.0.0.0/8") == CLIENT
    assert info.user_agent == "httpx"


def test_from_asgi_scope_without_client() -> None:
    info = RequestInfo.from_asgi_scope({"type": "http", "headers": []})
    assert info.peer_ip is None
    assert info.user_agent is None


def test_use_request_is_scoped_to_the_block() -> None:
    info = RequestInfo("192.0.2.1", {})
    assert current_request() is None
    with use_request(info):
        assert current_request() is info
    assert current_request() is None


def test_use_request_is_isolated_between_asyncio_tasks() -> None:
    async def handler(address: str) -> str | None:
        with use_request(RequestInfo(address, {})):
            await asyncio.sleep(0)
            seen = current_request()
            return seen.peer_ip if seen else None

    async def main() -> list[str | None]:
        return list(await asyncio.gather(*(handler(f"192.0.2.{i}") for i in range(1, 20))))

    assert asyncio.run(main()) == [f"192.0.2.{i}" for i in range(1, 20)]


def test_flask_request_is_found_inside_a_flask_request() -> None:
    app = flask.Flask(__name__)
    seen: list[RequestInfo | None] = []

    @app.post("/login")
    def login() -> str:
        seen.append(request_from_flask())
        return "ok"

    client = app.test_client()
    response = client.post(
        "/login", headers={"User-Agent": "pytest-agent"}, environ_base={"REMOTE_ADDR": CLIENT}
    )
    assert response.status_code == 200
    [info] = seen
    assert info is not None
    assert info.peer_ip == CLIENT
    assert info.user_agent == "pytest-agent"


def test_no_flask_request_outside_a_request() -> None:
    assert request_from_flask() is None
