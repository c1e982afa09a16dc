"""The SDK's configuration: one frozen :class:`Settings`, resolved in one place.

Every SDK option resolves here, and only here, as: an argument to :func:`configure` > the
``USERMON_*`` environment variable (names in :mod:`usermon.environment_variables`) > the default.
The result is cached, because ``auth_track`` reads it on every call, and the cache is invalidated
by :func:`configure` and :func:`reset`. A bad value is a :class:`ConfigurationError` wherever the
application can still act on it (``configure()``, an instrumentor's ``instrument()``, which calls
``get_settings(strict_validation=True)``). When a bad environment variable is first met inside a
login instead, it is logged loudly once and the settings fall back to emitting nothing identifying:
monitoring never raises into a login.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final

from usermon import environment_variables as env
from usermon.pseudonymize import keyed_hash_object

_logger = logging.getLogger("usermon")

__all__ = [
    "ConfigurationError",
    "EventSignal",
    "Mode",
    "Settings",
    "TrustedProxies",
    "add_listener",
    "configure",
    "get_settings",
    "parse_trusted_proxies",
    "reset",
    "restore_overrides",
    "snapshot_overrides",
]


class ConfigurationError(ValueError):
    """A usermon option has a value usermon cannot use. Raised at startup, never inside a login."""


class Mode(str, Enum):
    """What a tracking call emits (the same words the other monitoring agents use)."""

    IDENTIFICATION = "identification"
    """Identifier values leave the process as normalized."""
    ANONYMIZATION = "anonymization"
    """Every identifier value and ``user.hash`` are keyed HMAC-SHA256; no raw identifier leaves."""
    DISABLED = "disabled"
    """Nothing is emitted."""


class EventSignal(str, Enum):
    """Which OpenTelemetry signal carries usermon events."""

    SPAN = "span"
    """Span events on the current span (the default; what the Collector configs route on)."""
    LOGS = "logs"
    """Log records with ``event_name`` through the Logs API (OTEP 4430 events)."""
    BOTH = "both"
    """Both, with identical timestamps and trace/span ids so a consumer can deduplicate."""


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class TrustedProxies:
    """Which hops in front of the application may set X-Forwarded-For / Forwarded.

    Either ``networks`` (a peer inside one of them is a trusted proxy) or ``hops`` (that many
    proxies always sit in front of the application); neither means forwarding headers are ignored.
    """

    networks: tuple[Network, ...] = ()
    hops: int = 0

    @property
    def enabled(self) -> bool:
        """Whether any forwarding header is read at all."""
        return bool(self.networks) or self.hops > 0

    def trusts(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Whether ``address`` is one of the trusted proxy networks."""
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)


NO_PROXIES: Final = TrustedProxies()


def parse_trusted_proxies(value: str | int | TrustedProxies | None) -> TrustedProxies:
    """Parse USERMON_TRUSTED_PROXIES: comma-separated CIDRs (or addresses), or a hop count.

    Raises :class:`ConfigurationError` with the offending item on a bad value.
    """
    if value is None:
        return NO_PROXIES
    if isinstance(value, TrustedProxies):
        return value
    if isinstance(value, bool):
        raise ConfigurationError(f"trusted_proxies must be CIDRs or a hop count, not {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigurationError(f"trusted_proxies hop count must be >= 0, got {value}")
        return TrustedProxies(hops=value)
    if not isinstance(value, str):
        raise ConfigurationError(
            f"trusted_proxies must be a string of CIDRs or a hop count, not {type(value).__name__}"
        )
    text = value.strip()
    if not text:
        return NO_PROXIES
    if text.isdigit():
        return TrustedProxies(hops=int(text))
    networks: list[Network] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigurationError(
                f"{env.USERMON_TRUSTED_PROXIES}: {item!r} is not a CIDR or an IP address "
                "(expected e.g. '10.0.0.0/8,192.168.1.10' or a hop count like '1')"
            ) from None
    return TrustedProxies(networks=tuple(networks))


def _parse_mode(name: str, value: object) -> Mode:
    if isinstance(value, Mode):
        return value
    if isinstance(value, str):
        try:
            return Mode(value.strip().lower())
        except ValueError:
            pass
    choices = ", ".join(m.value for m in Mode)
    raise ConfigurationError(f"{name}: {value!r} is not a mode (expected one of: {choices})")


def _parse_signal(value: object) -> EventSignal:
    if isinstance(value, EventSignal):
        return value
    if isinstance(value, str):
        try:
            return EventSignal(value.strip().lower())
        except ValueError:
            pass
    choices = ", ".join(s.value for s in EventSignal)
    raise ConfigurationError(
        f"{env.USERMON_EVENT_SIGNAL}: {value!r} is not a signal (expected one of: {choices})"
    )


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"", "0", "false", "no", "off"})


def _parse_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ConfigurationError(f"{name}: {value!r} is not a boolean (expected true or false)")


def _parse_hash_key(value: object) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, bytes):
        raise ConfigurationError(
            f"{env.USERMON_HASH_KEY}: expected a string or bytes, not {type(value).__name__}"
        )
    if not value:
        return None
    if len(value) < 16:
        # A short key is guessable: hashed e-mail addresses could be reversed by brute force.
        raise ConfigurationError(
            f"{env.USERMON_HASH_KEY} is too short ({len(value)} bytes): use at least 16 random "
            "bytes, e.g. the output of `python -c 'import secrets; print(secrets.token_hex(32))'`"
        )
    return value


def _parse_decisions_url(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(
            f"{env.USERMON_DECISIONS_URL}: expected a URL string, not {type(value).__name__}"
        )
    text = value.strip()
    if not text:
        return None
    from urllib.parse import urlsplit  # light, and only when the option is set

    try:
        parts = urlsplit(text)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = None, False
    if (
        parts is None
        or not port_ok
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
    ):
        raise ConfigurationError(
            f"{env.USERMON_DECISIONS_URL}: {text!r} is not an http(s) base URL (expected e.g. "
            "'http://127.0.0.1:4400' or 'https://usermon.internal/', without query or fragment)"
        )
    return text.rstrip("/")


def _parse_decisions_token(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(
            f"{env.USERMON_DECISIONS_TOKEN}: expected a string, not {type(value).__name__}"
        )
    text = value.strip()
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in text):
        # It goes into an HTTP header: a newline would split it, a space would garble it.
        raise ConfigurationError(
            f"{env.USERMON_DECISIONS_TOKEN}: must be printable ASCII without spaces"
        )
    return text or None


def _parse_interval(value: object) -> float:
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not number > 0 or number == float("inf"):
        raise ConfigurationError(
            f"{env.USERMON_DECISIONS_INTERVAL}: {value!r} is not a positive number of seconds "
            "(expected e.g. '5')"
        )
    return number


DEFAULT_DECISIONS_INTERVAL: Final = 5.0
"""Seconds between two decision syncs unless USERMON_DECISIONS_INTERVAL says otherwise."""


@dataclass(frozen=True)
class Settings:
    """The SDK's resolved configuration. Build it with :func:`get_settings`, never by hand."""

    mode: Mode = Mode.IDENTIFICATION
    """Mode of manual ``auth_track`` / ``signup_track`` calls (USERMON_MODE)."""
    auto_mode: Mode = Mode.IDENTIFICATION
    """Mode of the framework instrumentors (USERMON_AUTO_MODE)."""
    hash_key: bytes | None = field(default=None, repr=False)
    """HMAC-SHA256 key (USERMON_HASH_KEY); ``None`` when unset."""
    trusted_proxies: TrustedProxies = NO_PROXIES
    """Who may set forwarding headers (USERMON_TRUSTED_PROXIES)."""
    event_signal: EventSignal = EventSignal.SPAN
    """Where events go (USERMON_EVENT_SIGNAL)."""
    strict: bool = False
    """Raise on misuse instead of logging (USERMON_STRICT; tests only)."""
    lookup_user_exists: bool = False
    """Let instrumentors query the database for ``usermon.user.exists``
    (USERMON_LOOKUP_USER_EXISTS)."""
    protect: bool = False
    """Keep a synced copy of the processor's decisions for ``usermon.check()``
    (USERMON_PROTECT)."""
    decisions_url: str | None = None
    """Base URL of the processor serving the decision stream (USERMON_DECISIONS_URL)."""
    decisions_token: str | None = field(default=None, repr=False)
    """Bearer token of the decision sync (USERMON_DECISIONS_TOKEN)."""
    decisions_interval: float = DEFAULT_DECISIONS_INTERVAL
    """Seconds between two decision syncs (USERMON_DECISIONS_INTERVAL)."""
    config_error: str | None = None
    """Set when the environment held a bad value: then nothing identifying is emitted."""
    _hmac: Any = field(default=None, repr=False, compare=False)
    memo: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)
    """Per-settings memo of computed identities (owned by :mod:`usermon.tracking`): results
    depend on the settings, so they live and die with them."""

    def __post_init__(self) -> None:
        # The keyed HMAC state is prepared once and copied per value: copying is several times
        # cheaper than keying a new HMAC object on every call.
        if self.hash_key is not None:
            object.__setattr__(self, "_hmac", keyed_hash_object(self.hash_key))

    @property
    def keyed_hash(self) -> Any:
        """A keyed HMAC-SHA256 object to ``.copy()`` per value, or ``None`` without a key."""
        return self._hmac


_OPTIONS: Final = (
    "mode",
    "auto_mode",
    "hash_key",
    "trusted_proxies",
    "event_signal",
    "strict",
    "lookup_user_exists",
    "protect",
    "decisions_url",
    "decisions_token",
    "decisions_interval",
)

_ENV_NAMES: Final[Mapping[str, str]] = {
    "mode": env.USERMON_MODE,
    "auto_mode": env.USERMON_AUTO_MODE,
    "hash_key": env.USERMON_HASH_KEY,
    "trusted_proxies": env.USERMON_TRUSTED_PROXIES,
    "event_signal": env.USERMON_EVENT_SIGNAL,
    "strict": env.USERMON_STRICT,
    "lookup_user_exists": env.USERMON_LOOKUP_USER_EXISTS,
    "protect": env.USERMON_PROTECT,
    "decisions_url": env.USERMON_DECISIONS_URL,
    "decisions_token": env.USERMON_DECISIONS_TOKEN,
    "decisions_interval": env.USERMON_DECISIONS_INTERVAL,
}


def _parse(name: str, value: object) -> object:
    if name in ("mode", "auto_mode"):
        return _parse_mode(_ENV_NAMES[name], value)
    if name == "hash_key":
        return _parse_hash_key(value)
    if name == "trusted_proxies":
        return parse_trusted_proxies(value)  # type: ignore[arg-type]
    if name == "event_signal":
        return _parse_signal(value)
    if name == "decisions_url":
        return _parse_decisions_url(value)
    if name == "decisions_token":
        return _parse_decisions_token(value)
    if name == "decisions_interval":
        return _parse_interval(value)
    return _parse_bool(_ENV_NAMES[name], value)


_lock = threading.Lock()
_overrides: dict[str, object] = {}
_cached: Settings | None = None
_interned: dict[Settings, Settings] = {}
_reported_errors: set[str] = set()


def _resolve(environ: Mapping[str, str]) -> Settings:
    """Resolve every option (argument > environment > default); raise on the first bad value."""
    values: dict[str, Any] = {}
    for name in _OPTIONS:
        if name in _overrides:
            values[name] = _overrides[name]  # already parsed by configure()
            continue
        raw = environ.get(_ENV_NAMES[name])
        if raw is not None:
            values[name] = _parse(name, raw)
    if values.get("protect") and not values.get("decisions_url"):
        raise ConfigurationError(
            f"{env.USERMON_PROTECT} is on but {env.USERMON_DECISIONS_URL} is not set: protection "
            "needs the processor's URL to sync decisions from (or turn it off)"
        )
    return Settings(**values)


def get_settings(*, strict_validation: bool = False) -> Settings:
    """The current settings, cached until :func:`configure` or :func:`reset`.

    With ``strict_validation=True`` (what instrumentors call in ``instrument()`` and what an
    application may call at startup) a bad environment variable raises
    :class:`ConfigurationError`. Without it, the error is logged once at ERROR level and the
    returned settings have ``config_error`` set, which makes tracking emit nothing identifying.
    """
    global _cached
    cached = _cached
    if cached is not None and (cached.config_error is None or not strict_validation):
        return cached
    with _lock:
        try:
            settings = _resolve(os.environ)
        except ConfigurationError as error:
            if strict_validation:
                raise
            settings = Settings(
                mode=Mode.ANONYMIZATION, auto_mode=Mode.ANONYMIZATION, config_error=str(error)
            )
            if str(error) not in _reported_errors:
                _reported_errors.add(str(error))
                _logger.error(
                    "usermon configuration error: %s. Until it is fixed usermon emits no "
                    "identifier, no user.hash and ignores forwarding headers.",
                    error,
                )
        # Equal settings resolve to the same object, so toggling back to a configuration keeps
        # its memo of computed identities warm.
        settings = _interned.setdefault(settings, settings)
        if len(_interned) > 64:
            _interned.clear()
        _cached = settings
        anonymizing = Mode.ANONYMIZATION in (settings.mode, settings.auto_mode)
        if anonymizing and settings.hash_key is None and settings.config_error is None:
            _warn_no_key_once()
        if not strict_validation:  # the first event: the application's providers are set by now
            from usermon.export_check import warn_if_not_exported

            warn_if_not_exported(settings)
        return settings


def _warn_no_key_once() -> None:
    key = "anonymization-without-key"
    if key not in _reported_errors:
        _reported_errors.add(key)
        _logger.error(
            "usermon is in anonymization mode without %s: login and signup events carry NO "
            "identifier and NO user.hash, so nothing can be attributed to a user. Set %s to a "
            "random secret of at least 16 bytes.",
            env.USERMON_HASH_KEY,
            env.USERMON_HASH_KEY,
        )


def configure(**overrides: object) -> Settings:
    """Set SDK options in code; they win over ``USERMON_*`` environment variables.

    Options: ``mode``, ``auto_mode`` (``"identification"``, ``"anonymization"``, ``"disabled"``
    or a :class:`Mode`), ``hash_key`` (str or bytes, >= 16 bytes), ``trusted_proxies`` (CIDRs
    string or a hop count), ``event_signal`` (``"span"``, ``"logs"``, ``"both"``), ``strict``,
    ``lookup_user_exists`` (bools), ``protect`` (bool), ``decisions_url`` (http(s) base URL),
    ``decisions_token`` (str), ``decisions_interval`` (seconds > 0). Passing ``None`` removes an
    override. Options not passed keep their current override. Raises :class:`ConfigurationError`
    on an unknown option or a bad value (including a bad environment variable for an option not
    overridden), and returns the new settings.
    """
    global _cached
    unknown = sorted(set(overrides) - set(_OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"unknown usermon option(s): {', '.join(unknown)} (known: {', '.join(_OPTIONS)})"
        )
    parsed = {name: _parse(name, value) for name, value in overrides.items() if value is not None}
    with _lock:
        previous = dict(_overrides)
        for name, value in overrides.items():
            if value is None:
                _overrides.pop(name, None)
        _overrides.update(parsed)
        _cached = None
    try:
        settings = get_settings(strict_validation=True)
    except ConfigurationError:
        # Options that are each fine can still clash (protect on without a URL): a configure()
        # that raises changes nothing, rather than leaving the process misconfigured.
        with _lock:
            _overrides.clear()
            _overrides.update(previous)
            _cached = None
        raise
    _notify(settings)
    return settings


def reset() -> None:
    """Forget every :func:`configure` override and re-read the environment on next use."""
    global _cached
    with _lock:
        _overrides.clear()
        _interned.clear()
        _cached = None
        _reported_errors.clear()
    _notify(None)


def snapshot_overrides() -> dict[str, object]:
    """A copy of the current :func:`configure` overrides (for :mod:`usermon.testing`)."""
    with _lock:
        return dict(_overrides)


def restore_overrides(overrides: Mapping[str, object]) -> None:
    """Replace the :func:`configure` overrides with a :func:`snapshot_overrides` copy."""
    global _cached
    with _lock:
        _overrides.clear()
        _overrides.update(overrides)
        _cached = None


_listeners: list[Callable[[Settings | None], None]] = []


def add_listener(listener: Callable[[Settings | None], None]) -> None:
    """Call ``listener`` after each :func:`configure` (with the new settings) and :func:`reset`
    (with ``None``); :mod:`usermon.protection` starts and stops its sync this way. A listener
    must not raise."""
    if listener not in _listeners:
        _listeners.append(listener)


def _notify(settings: Settings | None) -> None:
    for listener in list(_listeners):
        listener(settings)
