"""What every usermon instrumentor shares: startup checks, reversible patches, and the guard.

This module owns the three rules all four instrumentors follow. At ``instrument()`` time the
framework's version is checked (the auto loader skips that check, see :func:`require`) and the
SDK settings are validated, so a bad ``USERMON_AUTO_MODE`` is a loud startup error. A patch is a
:class:`Patch`: it remembers exactly what it replaced and puts exactly that back. Every piece of
our own code that runs inside a login runs under :func:`guarded`, which logs and swallows our
failure, while the host's own exceptions are never caught here at all. It also owns the
"claimed attempt" flag with which an outer instrumentor (DRF) tells an inner one (Django's
``user_login_failed`` receiver) that this attempt is already being reported, so one attempt
produces one event.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Collection, Iterator
from contextvars import ContextVar
from typing import Any, Final

from usermon.export_check import warn_if_not_exported
from usermon.settings import Mode, Settings, get_settings

__all__ = [
    "Patch",
    "attempt_claimed",
    "auto_mode",
    "claim_attempt",
    "guarded",
    "require",
    "startup_settings",
]

_logger = logging.getLogger("usermon.instrumentation")

WRAPPED_MARK: Final = "__usermon_wrapped__"
"""Attribute set on every wrapper we install, naming what it wraps (tests look for leftovers)."""


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


class Patch:
    """Replace ``owner.name`` with a wrapper of it, and undo exactly that.

    If ``name`` was inherited rather than defined on ``owner``, undoing deletes our attribute so
    lookup reaches the base class again, instead of copying the base's function onto ``owner``.
    """

    _MISSING: Final = object()

    def __init__(
        self,
        owner: type,
        name: str,
        make_wrapper: Callable[[Callable[..., Any]], Callable[..., Any]],
    ) -> None:
        self.owner = owner
        self.name = name
        self._make_wrapper = make_wrapper
        self._saved: object = self._MISSING
        self._applied = False

    def apply(self) -> None:
        """Install the wrapper; a second call while applied does nothing."""
        if self._applied:
            return
        self._saved = self.owner.__dict__.get(self.name, self._MISSING)
        original = getattr(self.owner, self.name)
        wrapper = self._make_wrapper(original)
        functools.update_wrapper(wrapper, original)
        setattr(wrapper, WRAPPED_MARK, f"{self.owner.__qualname__}.{self.name}")
        setattr(self.owner, self.name, wrapper)
        self._applied = True

    def undo(self) -> None:
        """Put back what :meth:`apply` replaced; a call while not applied does nothing."""
        if not self._applied:
            return
        if self._saved is self._MISSING:
            delattr(self.owner, self.name)
        else:
            setattr(self.owner, self.name, self._saved)
        self._saved = self._MISSING
        self._applied = False
