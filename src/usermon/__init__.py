"""usermon: user monitoring for Python web applications, on OpenTelemetry.

Report every login attempt and every signup; usermon records them as OpenTelemetry span events that
travel through your existing pipeline to your tracing backend and to the usermon processor::

    import usermon

    usermon.auth_track(True, {"email": user.email})
    usermon.signup_track(email=user.email)

With protection on (``USERMON_PROTECT``), ``usermon.check(ip=..., identifiers=...)`` answers
from a local copy of the processor's decisions whether a login should go on (docs/protection.md).

This package's top level is the in-app SDK. Importing it loads only the standard library and
``opentelemetry-api``; frameworks, the OpenTelemetry SDK and the processor load only when used.
"""

from __future__ import annotations

__version__ = "0.1.0"

from usermon.decisions import Decision
from usermon.enforcement import set_challenge_handler
from usermon.protection import ProtectionStatus, check, protection_status
from usermon.settings import ConfigurationError, EventSignal, Mode, configure
from usermon.tracking import TrackContext, auth_track, signup_track

__all__ = [
    "ConfigurationError",
    "Decision",
    "EventSignal",
    "Mode",
    "ProtectionStatus",
    "TrackContext",
    "__version__",
    "auth_track",
    "check",
    "configure",
    "protection_status",
    "set_challenge_handler",
    "signup_track",
]
