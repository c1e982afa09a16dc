"""Every ``USERMON_*`` environment variable, as a documented constant.

Configuration resolves as: explicit argument > environment variable > default, in one place per
host (:mod:`usermon.settings` for the SDK, :mod:`usermon.processor.settings` for the processor).
No other module reads ``os.environ``. ``docs/configuration.md`` lists them all for users.
"""

from __future__ import annotations

from typing import Final

# -- SDK (in the application) ----------------------------------------------------------------------

USERMON_MODE: Final = "USERMON_MODE"
"""``identification`` (default), ``anonymization`` or ``disabled``: what manual calls emit."""

USERMON_AUTO_MODE: Final = "USERMON_AUTO_MODE"
"""Mode for the framework instrumentors: ``identification`` (default), ``anonymization`` or
``disabled``. An unknown value is a startup error."""

USERMON_HASH_KEY: Final = "USERMON_HASH_KEY"
"""Secret key for HMAC-SHA256 pseudonymization. Required for anonymization mode to emit anything
identifying; also keys ``user.hash`` in identification mode when set."""

USERMON_TRUSTED_PROXIES: Final = "USERMON_TRUSTED_PROXIES"
"""Which proxies may set X-Forwarded-For / Forwarded: a comma-separated list of CIDRs, or a hop
count. Unset: forwarding headers are ignored and the peer address is the client."""

USERMON_EVENT_SIGNAL: Final = "USERMON_EVENT_SIGNAL"
"""``span`` (default), ``logs`` or ``both``: where events are emitted."""

USERMON_STRICT: Final = "USERMON_STRICT"
"""``true`` makes usermon raise on misuse instead of logging (for tests only)."""

USERMON_LOOKUP_USER_EXISTS: Final = "USERMON_LOOKUP_USER_EXISTS"
"""``true`` lets instrumentors spend a database query to set ``usermon.user.exists`` on failures."""

USERMON_PROTECT: Final = "USERMON_PROTECT"
"""``on`` keeps a local copy of the processor's decisions, synced in the background, for
``usermon.check()``; ``off`` (default) syncs nothing and ``check()`` answers ``None``."""

USERMON_DECISIONS_URL: Final = "USERMON_DECISIONS_URL"
"""Base URL of the usermon processor serving ``/api/decisions/stream`` (``http://`` or
``https://``); required when USERMON_PROTECT is on."""

USERMON_DECISIONS_TOKEN: Final = "USERMON_DECISIONS_TOKEN"  # noqa: S105 (a variable name)
"""Bearer token the decision sync sends (an application token that may read decisions)."""

USERMON_DECISIONS_INTERVAL: Final = "USERMON_DECISIONS_INTERVAL"
"""Seconds between two decision syncs (default 5; a positive number)."""

# -- processor -------------------------------------------------------------------------------------

USERMON_LISTEN: Final = "USERMON_LISTEN"
"""HOST:PORT the processor's OTLP/HTTP receiver and API listen on (default ``127.0.0.1:4400``)."""

USERMON_GRPC_LISTEN: Final = "USERMON_GRPC_LISTEN"
"""HOST:PORT for the optional OTLP/gRPC receiver (off when unset)."""

USERMON_STORE: Final = "USERMON_STORE"
"""Store URL: ``sqlite:///path`` (default), ``memory://``, ``redis://``, ``postgresql://``."""

USERMON_STATE_URL: Final = "USERMON_STATE_URL"
"""Optional second store URL for shared windowed state (``redis://``) when USERMON_STORE is
``postgresql://``."""

USERMON_TOKEN: Final = "USERMON_TOKEN"  # noqa: S105 (a variable name, not a secret)
"""The processor's admin bearer token: everything (ingest, API, changing decisions); mandatory
when listening on a non-loopback address."""

USERMON_APP_TOKEN: Final = "USERMON_APP_TOKEN"  # noqa: S105 (a variable name, not a secret)
"""Application bearer tokens of the processor, comma-separated: they may send events
(``/v1/*``) and read the decision stream, nothing else (docs/protection.md, "Tokens")."""

USERMON_MAX_BODY_BYTES: Final = "USERMON_MAX_BODY_BYTES"
"""Largest accepted request body, before and after decompression."""

USERMON_OTLP_ENDPOINT: Final = "USERMON_OTLP_ENDPOINT"
"""Where the processor sends findings (logs) and counters (metrics) over OTLP/HTTP."""

USERMON_RULES: Final = "USERMON_RULES"
"""Path of a rules file overriding the detectors' default thresholds."""

USERMON_GEOIP_DB: Final = "USERMON_GEOIP_DB"
"""Path of a MaxMind-format City/Country database (GeoLite2, DB-IP lite)."""

USERMON_ASN_DB: Final = "USERMON_ASN_DB"
"""Path of a MaxMind-format ASN database."""

USERMON_TOR_EXITS: Final = "USERMON_TOR_EXITS"
"""File path or URL of a Tor bulk exit list."""

USERMON_TOR_REFRESH: Final = "USERMON_TOR_REFRESH"
"""Seconds between refreshes of the Tor exit list (default 3600; 0: read it once, at startup)."""

USERMON_IP_RANGES: Final = "USERMON_IP_RANGES"
"""Path of an IP-ranges CSV: ``cidr,category,name``."""

USERMON_LATENESS: Final = "USERMON_LATENESS"
"""Seconds an event may arrive behind the newest one and still be processed (default 3600)."""

USERMON_MAX_KEYS: Final = "USERMON_MAX_KEYS"
"""Cap on the processor's in-memory state keys (default 500000); least recently used go first."""

USERMON_CHECKPOINT_INTERVAL: Final = "USERMON_CHECKPOINT_INTERVAL"
"""Seconds between the SQLite store's checkpoints of the processor's state (default 30)."""

USERMON_MAX_INFLIGHT: Final = "USERMON_MAX_INFLIGHT"
"""Ingest requests the processor takes at once before answering 429 (default 64)."""

USERMON_MAX_INFLIGHT_BYTES: Final = "USERMON_MAX_INFLIGHT_BYTES"
"""Bytes of request bodies (as received and as decompressed) held at once across ingest requests
before answering 429 (default and minimum: twice USERMON_MAX_BODY_BYTES, 32 MiB)."""

USERMON_HEADER_TIMEOUT: Final = "USERMON_HEADER_TIMEOUT"
"""Seconds a connection has to send a request's line and headers before it is closed
(default 10)."""

USERMON_BODY_TIMEOUT: Final = "USERMON_BODY_TIMEOUT"
"""Seconds an ingest request has to send its whole body, once its headers are in, before it is
answered 408 and closed (default 30)."""

USERMON_TRACE_URL: Final = "USERMON_TRACE_URL"
"""The dashboard's link to a trace in the tracing backend: a URL with ``{trace_id}`` in it, e.g.
``http://jaeger:16686/trace/{trace_id}``."""

USERMON_LOG_LEVEL: Final = "USERMON_LOG_LEVEL"
"""The processor's own log level: ``debug``, ``info`` (default), ``warning``, ``error``."""
