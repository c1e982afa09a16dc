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
    "OPTIONS",
    "Option",
    "Settings",
    "SettingsError",
    "is_loopback",
    "parse_listen",
    "resolve",
]


class SettingsError(ValueError):
    """A setting is invalid: the message says which and why."""


_LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class Option:
    """One setting of ``usermon serve``: its flag, its variable, its default and its help, declared
    once; the command's options are made from these (:mod:`usermon.cli`)."""

    name: str
    flag: str
    env: str
    default: Any
    help: str
    kind: str = "str"  # str, int, float, path (an existing file), or choice (of ``choices``)
    metavar: str | None = None
    shown_default: str | None = None  # how --help shows the default; None: not shown
    choices: tuple[str, ...] = ()
    multiple: bool = False  # the flag may be given several times


OPTIONS: tuple[Option, ...] = (
    Option(
        "listen",
        "--listen",
        V.USERMON_LISTEN,
        "127.0.0.1:4400",
        "Address of the OTLP/HTTP receiver and the API. Any non-loopback address requires --token.",
        metavar="HOST:PORT",
        shown_default="127.0.0.1:4400",
    ),
    Option(
        "store",
        "--store",
        V.USERMON_STORE,
        "sqlite:///usermon.db",
        "Where state and findings live: sqlite:///path (journaled, survives crashes), "
        "memory:// (tests), redis://, redis+sentinel://, postgresql://.",
        metavar="URL",
        shown_default="sqlite:///usermon.db",
    ),
    Option(
        "state_url",
        "--state-url",
        V.USERMON_STATE_URL,
        None,
        "Shared windowed state (redis:// or redis+sentinel://) next to a postgresql:// store.",
        metavar="URL",
    ),
    Option(
        "token",
        "--token",
        V.USERMON_TOKEN,
        None,
        "Bearer token required for ingest and API; mandatory off loopback. Prefer the "
        "environment variable: flags show in process lists.",
    ),
    Option(
        "app_tokens",
        "--app-token",
        V.USERMON_APP_TOKEN,
        None,
        "An application token: may send events and read the decision stream, nothing else "
        "(comma-separated in the variable; the flag repeats).",
        multiple=True,
    ),
    Option(
        "max_body_bytes",
        "--max-body-bytes",
        V.USERMON_MAX_BODY_BYTES,
        16 * 1024 * 1024,
        "Largest request body, before and after gzip; larger gets 413.",
        kind="int",
        shown_default="16 MiB",
    ),
    Option(
        "grpc_listen",
        "--grpc-listen",
        V.USERMON_GRPC_LISTEN,
        None,
        "Also receive OTLP/gRPC here (needs usermon[grpc]).",
        metavar="HOST:PORT",
        shown_default="off",
    ),
    Option(
        "otlp_endpoint",
        "--otlp-endpoint",
        V.USERMON_OTLP_ENDPOINT,
        None,
        "OTLP/HTTP base URL to send findings (logs) and counters (metrics) to, e.g. "
        "http://localhost:4318.",
        metavar="URL",
        shown_default="off",
    ),
    Option(
        "rules",
        "--rules",
        V.USERMON_RULES,
        None,
        "Rules file overriding the detectors' thresholds.",
        kind="path",
    ),
    Option(
        "geoip_db",
        "--geoip-db",
        V.USERMON_GEOIP_DB,
        None,
        "MaxMind-format City/Country database.",
        kind="path",
    ),
    Option(
        "asn_db", "--asn-db", V.USERMON_ASN_DB, None, "MaxMind-format ASN database.", kind="path"
    ),
    Option(
        "tor_exits",
        "--tor-exits",
        V.USERMON_TOR_EXITS,
        None,
        "Tor bulk exit list, file or URL.",
        metavar="PATH|URL",
    ),
    Option(
        "tor_refresh",
        "--tor-refresh",
        V.USERMON_TOR_REFRESH,
        3600.0,
        "Seconds between refreshes of the Tor exit list; 0 reads it once at startup.",
        kind="float",
        metavar="SECONDS",
        shown_default="3600",
    ),
    Option(
        "ip_ranges",
        "--ip-ranges",
        V.USERMON_IP_RANGES,
        None,
        "IP-ranges CSV (cidr,category,name).",
        kind="path",
    ),
    Option(
        "lateness",
        "--lateness",
        V.USERMON_LATENESS,
        3600.0,
        "Seconds an event may arrive behind the newest and still count.",
        kind="float",
        metavar="SECONDS",
        shown_default="3600",
    ),
    Option(
        "max_keys",
        "--max-keys",
        V.USERMON_MAX_KEYS,
        500_000,
        "Cap on in-memory state keys, least recently used go first; counting-map fields "
        "(deduplication) are capped at twice it.",
        kind="int",
        shown_default="500000",
    ),
    Option(
        "checkpoint_interval",
        "--checkpoint-interval",
        V.USERMON_CHECKPOINT_INTERVAL,
        30.0,
        "Seconds between checkpoints of the state (SQLite store).",
        kind="float",
        metavar="SECONDS",
        shown_default="30",
    ),
    Option(
        "max_inflight",
        "--max-inflight",
        V.USERMON_MAX_INFLIGHT,
        64,
        "Ingest requests handled at once, once their bodies are in, before 429.",
        kind="int",
        shown_default="64",
    ),
    Option(
        "max_inflight_bytes",
        "--max-inflight-bytes",
        V.USERMON_MAX_INFLIGHT_BYTES,
        None,
        "Bytes of request bodies held at once across ingest requests, as received and as "
        "decompressed, before 429.",
        kind="int",
        shown_default="and minimum: twice --max-body-bytes, 32 MiB",
    ),
    Option(
        "header_timeout",
        "--header-timeout",
        V.USERMON_HEADER_TIMEOUT,
        10.0,
        "Time to send a request's line and headers before the connection is closed.",
        kind="float",
        metavar="SECONDS",
        shown_default="10",
    ),
    Option(
        "body_timeout",
        "--body-timeout",
        V.USERMON_BODY_TIMEOUT,
        30.0,
        "Time to send a whole ingest body once the headers are in, else 408.",
        kind="float",
        metavar="SECONDS",
        shown_default="30",
    ),
    Option(
        "log_level",
        "--log-level",
        V.USERMON_LOG_LEVEL,
        "info",
        "The processor's own log level.",
        kind="choice",
        shown_default="info",
        choices=_LOG_LEVELS,
    ),
    Option(
        "trace_url",
        "--trace-url",
        V.USERMON_TRACE_URL,
        None,
        "The dashboard's link to a trace, with {trace_id} in it, e.g. "
        "http://localhost:16686/trace/{trace_id}.",
        metavar="URL",
        shown_default="no link",
    ),
)
"""Every setting of ``usermon serve``, in the order ``--help`` lists them."""

DEFAULTS: dict[str, Any] = {o.name: o.default for o in OPTIONS}

# setting -> (environment variable, flag)
_SOURCES: dict[str, tuple[str, str]] = {o.name: (o.env, o.flag) for o in OPTIONS}


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
    trace_url: str | None = None  # the dashboard's trace link, with "{trace_id}" in it
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
    trace_url = raw["trace_url"]
    if trace_url is not None:
        trace_url = str(trace_url)
        if "{trace_id}" not in trace_url or not trace_url.startswith(("http://", "https://")):
            raise SettingsError(
                f"--trace-url / {V.USERMON_TRACE_URL} must be an http(s):// URL with {{trace_id}} "
                f"in it, e.g. http://localhost:16686/trace/{{trace_id}}, not {trace_url!r}"
            )
    level = str(raw["log_level"]).lower()
    if level not in _LOG_LEVELS:
        raise SettingsError(f"--log-level / {V.USERMON_LOG_LEVEL} must be one of {_LOG_LEVELS}")
    for option in OPTIONS:
        path = raw[option.name]
        if option.kind == "path" and path is not None and not os.path.isfile(str(path)):
            raise SettingsError(f"{option.flag} / {option.env}: no such file: {path}")
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
        trace_url=trace_url,
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
