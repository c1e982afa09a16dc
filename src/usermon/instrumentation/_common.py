"""What every usermon instrumentor shares: the opening of ``_instrument``, patches, the guard.

This module owns the rules all four instrumentors follow. :func:`open_instrumentation` is the
opening of every ``_instrument``: the framework's version is checked (the auto loader skips that
check, see :func:`require`) and the SDK settings are validated, so a bad ``USERMON_AUTO_MODE`` is
a loud startup error; :func:`tracer_from` turns the ``tracer_provider`` argument into the tracer
of the spans usermon starts when no span is recording. Patching goes through ``wrapt``
(:func:`wrap`) and is undone by ``opentelemetry.instrumentation.utils.unwrap`` (:func:`unwrap`),
as the OpenTelemetry instrumentations do; a second :func:`wrap` of the same attribute does
nothing, and undoing puts back exactly what was there. Every piece of our own code that runs
inside a login runs under :func:`guarded`, which logs and swallows our failure, while the host's
own exceptions are never caught here at all. It also owns the "claimed attempt" flag with which
an outer instrumentor (DRF) tells an inner one (Django's ``user_login_failed`` receiver) that
this attempt is already being reported, so one attempt produces one event.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Collection, Iterator, Mapping
from contextvars import ContextVar
from types import ModuleType
from typing import Any, Final

from opentelemetry import trace

from usermon.export_check import warn_if_not_exported
from usermon.settings import Mode, Settings, get_settings

__all__ = [
    "Wrapper",
    "attempt_claimed",
    "auto_mode",
    "claim_attempt",
    "guarded",
    "open_instrumentation",
    "require",
    "startup_settings",
    "tracer_from",
    "unwrap",
    "wrap",
]

_logger = logging.getLogger("usermon.instrumentation")

Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]
"""A ``wrapt`` wrapper: ``(wrapped, instance, args, kwargs) -> result``."""


def require(dependencies: Collection[str]) -> None:
    """Raise ``DependencyConflictError`` unless ``dependencies`` are installed at a good version.

    ``opentelemetry-instrument`` calls ``instrument(skip_dep_check=True)`` after checking only
    the distribution's ``instruments`` extra. usermon deliberately has no such extra (one missing
    framework would then switch off all four instrumentors), so each instrumentor checks its own
    framework here. The auto loader logs a ``DependencyConflictError`` and moves on to the next
    instrumentor; a missing framework is a ``ModuleNotFoundError`` it skips quietly.
    """
    from opentelemetry.instrumentation.dependencies import (
        DependencyConflictError,
        get_dependency_conflicts,
    )

    conflict = get_dependency_conflicts(dependencies)
    if conflict is not None:
        if not conflict.found:
            # Not installed at all: the loader treats this one as "skip quietly".
            raise ModuleNotFoundError(str(conflict))
        raise DependencyConflictError(conflict)


def startup_settings() -> Settings:
    """The SDK settings, validated: a bad ``USERMON_*`` value raises ``ConfigurationError`` now;
    and, once per process, a warning when the events would have no exporter to leave by."""
    settings = get_settings(strict_validation=True)
    warn_if_not_exported(settings)
    return settings


def open_instrumentation(instruments: Collection[str], framework: str) -> bool:
    """The opening of every ``_instrument``: check the framework, validate the settings, and
    say whether to connect anything (not with ``USERMON_AUTO_MODE=disabled``, logged at INFO)."""
    require(instruments)
    settings = startup_settings()
    if settings.auto_mode is Mode.DISABLED:
        _logger.info("USERMON_AUTO_MODE=disabled: %s logins are not tracked", framework)
        return False
    return True


def tracer_from(kwargs: Mapping[str, Any]) -> trace.Tracer | None:
    """The tracer of ``instrument(tracer_provider=...)``, for the spans usermon starts when no
    span is recording; ``None`` without one (then the global provider's, as for manual calls)."""
    provider = kwargs.get("tracer_provider")
    if provider is None:
        return None
    from usermon import __version__

    return trace.get_tracer("usermon", __version__, provider)


def auto_mode() -> Mode:
    """The mode events from instrumentors are recorded in (``USERMON_AUTO_MODE``)."""
    return get_settings().auto_mode


@contextlib.contextmanager
def guarded(what: str) -> Iterator[None]:
    """Run our own code inside a login: a failure is logged and swallowed, never raised.

    Only in strict mode (``USERMON_STRICT``, for tests) does it propagate, so that a bug in an
    instrumentor fails the test that exercises it instead of hiding in a log.
    """
    try:
        yield
    except Exception:
        try:
            strict = get_settings().strict
        except Exception:  # settings themselves broken: stay on the safe side
            strict = False
        if strict:
            raise
        _logger.exception("usermon: recording %s failed; the login goes on unrecorded", what)


_claimed: ContextVar[bool] = ContextVar("usermon_attempt_claimed", default=False)


@contextlib.contextmanager
def claim_attempt() -> Iterator[None]:
    """Mark the login attempt running inside the block as reported by the caller."""
    token = _claimed.set(True)
    try:
        yield
    finally:
        _claimed.reset(token)


def attempt_claimed() -> bool:
    """Whether an outer instrumentor already reports the attempt in progress."""
    return _claimed.get()


_MISSING: Final = object()

# What wrap() installed, by (owner, name): the proxy, and whether the attribute was inherited
# (then undoing deletes ours instead of copying the base class's function onto ``owner``).
_installed: dict[tuple[object, str], tuple[object, bool]] = {}


def wrap(owner: type | ModuleType, name: str, wrapper: Wrapper) -> None:
    """Wrap ``owner.name`` (a class's or a module's) with ``wrapper`` through ``wrapt``; a second
    call does nothing. A module function is seen by callers that look it up in its module at
    call time (not by a ``from module import name`` made earlier)."""
    import wrapt

    installed = _installed.get((owner, name))
    if installed is not None and owner.__dict__.get(name) is installed[0]:
        return
    inherited = name not in owner.__dict__
    wrapt.wrap_function_wrapper(owner, name, wrapper)
    _installed[(owner, name)] = (owner.__dict__[name], inherited)


def unwrap(owner: type | ModuleType, name: str) -> None:
    """Undo :func:`wrap` exactly; nothing to undo (or another wrapper on top of ours) does
    nothing."""
    installed = _installed.pop((owner, name), None)
    if installed is None or owner.__dict__.get(name, _MISSING) is not installed[0]:
        return
    if installed[1]:  # inherited
        delattr(owner, name)
    else:
        from opentelemetry.instrumentation.utils import unwrap as otel_unwrap

        otel_unwrap(owner, name)
