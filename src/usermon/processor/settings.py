"""The processor's settings: flags > ``USERMON_*`` environment variables > defaults, in one place.

This module owns reading the processor's configuration. :func:`resolve` takes what the command
line gave (``None`` for "not given"), falls back to the environment, then to the defaults below,
validates everything, and returns one frozen :class:`Settings`. Every problem is a
:class:`SettingsError` whose message names the flag and the variable, raised before anything
listens.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from usermon import environment_variables as V

__all__ = [
    "DEFAULTS",
    "Settings",
    "SettingsError",
    "is_loopback",
    "parse_listen",
    "resolve",
]


class SettingsError(ValueError):
    """A setting is invalid: the message says which and why."""


DEFAULTS: dict[str, Any] = {
    "listen": "127.0.0.1:4400",
    "grpc_listen": None,
    "store": "sqlite:///usermon.db",
    "state_url": None,
    "token": None,
    "app_tokens": None,
    "max_body_bytes": 16 * 1024 * 1024,
    "otlp_endpoint": None,
    "rules": None,
    "geoip_db": None,
    "asn_db": None,
    "tor_exits": None,
    "tor_refresh": 3600.0,
    "ip_ranges": None,
    "lateness": 3600.0,
    "max_keys": 500_000,
    "checkpoint_interval": 30.0,
    "max_inflight": 64,
    "max_inflight_bytes": None,  # twice max_body_bytes: one largest gzip body and its output
    "header_timeout": 10.0,
    "body_timeout": 30.0,
    "log_level": "info",
}

# setting -> (environment variable, flag)
_SOURCES: dict[str, tuple[str, str]] = {
    "listen": (V.USERMON_LISTEN, "--listen"),
    "grpc_listen": (V.USERMON_GRPC_LISTEN, "--grpc-listen"),
    "store": (V.USERMON_STORE, "--store"),
    "state_url": (V.USERMON_STATE_URL, "--state-url"),
    "token": (V.USERMON_TOKEN, "--token"),
    "app_tokens": (V.USERMON_APP_TOKEN, "--app-token"),
    "max_body_bytes": (V.USERMON_MAX_BODY_BYTES, "--max-body-bytes"),
    "otlp_endpoint": (V.USERMON_OTLP_ENDPOINT, "--otlp-endpoint"),
    "rules": (V.USERMON_RULES, "--rules"),
    "geoip_db": (V.USERMON_GEOIP_DB, "--geoip-db"),
    "asn_db": (V.USERMON_ASN_DB, "--asn-db"),
    "tor_exits": (V.USERMON_TOR_EXITS, "--tor-exits"),
    "tor_refresh": (V.USERMON_TOR_REFRESH, "--tor-refresh"),
    "ip_ranges": (V.USERMON_IP_RANGES, "--ip-ranges"),
    "lateness": (V.USERMON_LATENESS, "--lateness"),
    "max_keys": (V.USERMON_MAX_KEYS, "--max-keys"),
    "checkpoint_interval": (V.USERMON_CHECKPOINT_INTERVAL, "--checkpoint-interval"),
    "max_inflight": (V.USERMON_MAX_INFLIGHT, "--max-inflight"),
    "max_inflight_bytes": (V.USERMON_MAX_INFLIGHT_BYTES, "--max-inflight-bytes"),
    "header_timeout": (V.USERMON_HEADER_TIMEOUT, "--header-timeout"),
    "body_timeout": (V.USERMON_BODY_TIMEOUT, "--body-timeout"),
    "log_level": (V.USERMON_LOG_LEVEL, "--log-level"),
}

_LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything ``usermon serve`` runs with (see docs/processor.md for each)."""

    listen_host: str
    listen_port: int
    grpc_listen: tuple[str, int] | None
    store: str
    state_url: str | None
    token: str | None
    max_body_bytes: int
    otlp_endpoint: str | None
    rules: str | None
    geoip_db: str | None
    asn_db: str | None
    tor_exits: str | None
    tor_refresh: float  # seconds; 0 = never refresh
    ip_ranges: str | None
    lateness: float
    max_keys: int
    checkpoint_interval: float
    max_inflight: int
    max_inflight_bytes: int
    header_timeout: float  # seconds for a request's line and headers
    body_timeout: float  # seconds for a request's whole body, once its headers are in
    log_level: str
    app_tokens: tuple[str, ...] = ()  # may ingest and read decisions, nothing else

    def __repr__(self) -> str:  # the token must never reach a log line
        shown = {k: getattr(self, k) for k in self.__slots__}
        if shown["token"]:
            shown["token"] = "***"  # noqa: S105 - a mask, not a password
        shown["app_tokens"] = ("***",) * len(self.app_tokens)
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is only reachable from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_listen(value: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) into its parts; port 0 picks a free port."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise SettingsError(f"{what} must be HOST:PORT, e.g. 127.0.0.1:4400, not {value!r}")
    try:
        number = int(port)
    except ValueError:
        raise SettingsError(f"{what}: port {port!r} is not a number") from None
    if not 0 <= number <= 65535:
        raise SettingsError(f"{what}: port {number} is out of range")
    return host.strip("[]"), number


def _number(name: str, raw: Any, kind: type, minimum: float) -> Any:
    env, flag = _SOURCES[name]
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"{flag} / {env} must be a number, not {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{flag} / {env} must be at least {minimum}, not {value}")
    return value


def resolve(
    flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Settings from ``flags`` (``None`` values mean "not given"), then ``env`` (default:
    ``os.environ``), then :data:`DEFAULTS`; validated."""
    flags = flags or {}
    environ = os.environ if env is None else env
    unknown = set(flags) - set(_SOURCES)
    if unknown:
        raise SettingsError(f"unknown setting(s): {sorted(unknown)}")
    raw: dict[str, Any] = {}
    for name, (variable, _) in _SOURCES.items():
        value = flags.get(name)
        if value is None or value == "":
            value = environ.get(variable) or None
        raw[name] = DEFAULTS[name] if value is None else value

    host, port = parse_listen(str(raw["listen"]), "--listen / USERMON_LISTEN")
    grpc = None
    if raw["grpc_listen"]:
        grpc = parse_listen(str(raw["grpc_listen"]), "--grpc-listen / USERMON_GRPC_LISTEN")
    token = raw["token"]
    exposed = [h for h in (host, grpc[0] if grpc else None) if h is not None and not is_loopback(h)]
    if exposed and not token:
        raise SettingsError(
            f"listening on {exposed[0]} (not loopback) needs a bearer token: set --token or "
            f"{V.USERMON_TOKEN}, and give it to the Collector's exporter as an Authorization header"
        )
    app_tokens = _tokens(raw["app_tokens"])
    if token is not None and str(token) in app_tokens:
        raise SettingsError(
            f"--app-token / {V.USERMON_APP_TOKEN} must differ from the admin token "
            f"(--token / {V.USERMON_TOKEN})"
        )
    store = str(raw["store"])
    if "://" not in store:
        raise SettingsError(
            f"--store / {V.USERMON_STORE} must be a URL such as sqlite:///usermon.db, memory://, "
            f"redis://host:6379/0 or postgresql://user@host/db, not {store!r}"
        )
    endpoint = raw["otlp_endpoint"]
    if endpoint is not None and not str(endpoint).startswith(("http://", "https://")):
        raise SettingsError(
            f"--otlp-endpoint / {V.USERMON_OTLP_ENDPOINT} must be an http(s):// URL, e.g. "
            f"http://localhost:4318, not {endpoint!r}"
        )
    level = str(raw["log_level"]).lower()
    if level not in _LOG_LEVELS:
        raise SettingsError(f"--log-level / {V.USERMON_LOG_LEVEL} must be one of {_LOG_LEVELS}")
    for path_setting in ("rules", "geoip_db", "asn_db", "ip_ranges"):
        path = raw[path_setting]
        if path is not None and not os.path.isfile(str(path)):
            env_name, flag = _SOURCES[path_setting]
            raise SettingsError(f"{flag} / {env_name}: no such file: {path}")
    max_body = _number("max_body_bytes", raw["max_body_bytes"], int, 1024)
    inflight_bytes = 2 * max_body
    if raw["max_inflight_bytes"] is not None:
        inflight_bytes = _number("max_inflight_bytes", raw["max_inflight_bytes"], int, 2048)
    if inflight_bytes < 2 * max_body:
        env_name, flag = _SOURCES["max_inflight_bytes"]
        raise SettingsError(
            f"{flag} / {env_name} ({inflight_bytes}) must be at least twice --max-body-bytes "
            f"({max_body}): a gzip body and what it inflates to are held together"
        )
    return Settings(
        listen_host=host,
        listen_port=port,
        grpc_listen=grpc,
        store=store,
        state_url=raw["state_url"],
        token=token,
        max_body_bytes=max_body,
        otlp_endpoint=str(endpoint).rstrip("/") if endpoint else None,
        rules=raw["rules"],
        geoip_db=raw["geoip_db"],
        asn_db=raw["asn_db"],
        tor_exits=raw["tor_exits"],
        tor_refresh=_number("tor_refresh", raw["tor_refresh"], float, 0),
        ip_ranges=raw["ip_ranges"],
        lateness=_number("lateness", raw["lateness"], float, 0),
        max_keys=_number("max_keys", raw["max_keys"], int, 1000),
        checkpoint_interval=_number("checkpoint_interval", raw["checkpoint_interval"], float, 0.1),
        max_inflight=_number("max_inflight", raw["max_inflight"], int, 1),
        max_inflight_bytes=inflight_bytes,
        header_timeout=_number("header_timeout", raw["header_timeout"], float, 0.1),
        body_timeout=_number("body_timeout", raw["body_timeout"], float, 0.1),
        log_level=level,
        app_tokens=app_tokens,
    )


def _printable_token(token: str) -> bool:
    return bool(token) and all(33 <= ord(c) <= 126 for c in token)


def _tokens(raw: Any) -> tuple[str, ...]:
    """Application tokens: a comma-separated string (the variable, a flag) or a sequence of
    them (a repeated flag)."""
    if raw is None:
        return ()
    parts = [raw] if isinstance(raw, str) else list(raw)
    tokens = [t.strip() for part in parts for t in str(part).split(",") if t.strip()]
    for token in tokens:
        if not _printable_token(token) or len(token) < 16:
            env, flag = _SOURCES["app_tokens"]
            raise SettingsError(
                f"{flag} / {env}: each token must be at least 16 printable ASCII characters "
                "without spaces or commas"
            )
    return tuple(dict.fromkeys(tokens))
