"""The usermon event contract, schema version 1: every event and attribute name, in one place.

This module is the single source of the names that travel between the in-app SDK and everything
downstream (the Collector configs, the processor, tracing-backend queries). Nothing else in usermon
spells these strings inline. The human-readable contract is ``docs/schema.md``; a change to a name
here is a new schema version, made by a documented step.
"""

from __future__ import annotations

from typing import Final

SCHEMA_VERSION: Final = 1
"""Version of the event contract these names belong to."""

# -- event names -----------------------------------------------------------------------------------

LOGIN_EVENT: Final = "usermon.login"
"""Span event (and optional log event) recorded for every login attempt, successful or not."""

SIGNUP_EVENT: Final = "usermon.signup"
"""Span event (and optional log event) recorded for every account creation."""

LOGIN_SPAN_NAME: Final = LOGIN_EVENT
"""Name of the short INTERNAL span started for a login when no span is recording."""

SIGNUP_SPAN_NAME: Final = SIGNUP_EVENT
"""Name of the short INTERNAL span started for a signup when no span is recording."""

FINDING_EVENT: Final = "usermon.finding"
"""Log event (``event_name``) the processor emits for each finding it opens or updates."""

DECISION_EVENT: Final = "usermon.decision"
"""Log event (``event_name``) the processor emits for each protection decision it makes or
removes (``usermon.decision.change`` says which)."""

# -- event attributes ------------------------------------------------------------------------------

LOGIN_SUCCESS: Final = "usermon.login.success"
"""bool: the outcome of a login attempt (login events only)."""

PRIMARY_KEY: Final = "usermon.primary_key"
"""string: the name of the chosen primary identifier key, e.g. ``email``."""

IDENTIFIER_PREFIX: Final = "usermon.identifiers."
"""Prefix of one attribute per identifier: ``usermon.identifiers.<key>`` holds the normalized value,
or its keyed hash in anonymization mode."""

USER_ID: Final = "user.id"
"""string: the primary key's normalized value. Identification mode only."""

USER_HASH: Final = "user.hash"
"""string: stable pseudonymous id of the whole identity (all identifiers, canonical order). The
aggregation key downstream."""

CLIENT_ADDRESS: Final = "client.address"
"""string: the client IP, resolved with the trusted-proxy setting."""

USER_AGENT: Final = "user_agent.original"
"""string: the client's User-Agent header."""

USER_EXISTS: Final = "usermon.user.exists"
"""bool, optional, failed logins only: whether the account exists."""

LOGIN_BLOCKED: Final = "usermon.login.blocked"
"""bool, optional, failed logins only: ``true`` when usermon protection refused the attempt
before any password was checked (a decision applied). Absent on every other attempt. Additive to
schema 1; the processor does not count a refused attempt as a password failure of the account."""

DECISION_ID: Final = "usermon.decision.id"
"""string, optional, with :data:`LOGIN_BLOCKED` only: the ``id`` of the decision that refused the
attempt."""

SOURCE: Final = "usermon.source"
"""string: who reported the event, one of :data:`SOURCES`."""

SCHEMA: Final = "usermon.schema_version"
"""int: the schema version of the event (:data:`SCHEMA_VERSION`). Absent means 1."""

# -- span attributes -------------------------------------------------------------------------------

TRACKED: Final = "usermon.tracked"
"""bool span attribute, ``true`` on every span that carries a usermon event: what a Collector
filters or routes on, since span-level processors cannot see events."""

# USER_HASH and USER_ID are also set on the span after a successful login or a signup, so the
# whole trace is attributed to that user.

# -- values ----------------------------------------------------------------------------------------

SOURCE_SDK: Final = "sdk"
SOURCE_DJANGO: Final = "django"
SOURCE_DRF: Final = "drf"
SOURCE_FLASK_LOGIN: Final = "flask_login"
SOURCE_FLASK_HTTPAUTH: Final = "flask_httpauth"
SOURCES: Final = frozenset(
    {SOURCE_SDK, SOURCE_DJANGO, SOURCE_DRF, SOURCE_FLASK_LOGIN, SOURCE_FLASK_HTTPAUTH}
)
"""Every value :data:`SOURCE` may take."""

PRIMARY_KEY_PREFERENCE: Final = ("email", "mail", "e-mail", "username", "login")
"""Primary-key candidates in order; with none present, the first key in alphabetical order."""

# -- resource attributes read downstream -----------------------------------------------------------

SERVICE_NAME: Final = "service.name"
"""Resource attribute naming the reporting service (standard OpenTelemetry)."""

# Older semantic-convention names still read as a fallback for the client address.
LEGACY_CLIENT_ADDRESSES: Final = ("net.peer.ip", "http.client_ip", "net.sock.peer.addr")

CLIENT_ADDRESS_ATTRIBUTES: Final = (CLIENT_ADDRESS, *LEGACY_CLIENT_ADDRESSES)
"""Where the client address is read from a span's or an event's attributes, first found wins:
the one rule the SDK (a span an HTTP instrumentation recorded) and the processor both apply."""
