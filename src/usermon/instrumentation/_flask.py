"""How the Flask integrations answer a refused login (``docs/protection.md``).

This module owns the Flask side of enforcement shared by the Flask-HTTPAuth and Flask-Login
instrumentors: the ``USERMON_BLOCKED_HANDLER`` config key of the application (a function of the
decision, or its dotted path, returning anything a Flask view may return, or ``None`` for the
default answer), the default 429 with
``Retry-After`` for a decision about an address, a network or a campaign, and the rule that a
challenge handler's response wins over both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from usermon import enforcement
from usermon.decisions import Decision

__all__ = ["BLOCKED_HANDLER", "blocked_handler", "refusal_response", "too_many_attempts"]

BLOCKED_HANDLER: Final = "USERMON_BLOCKED_HANDLER"
"""The Flask config key of the function that answers every refused login."""


def blocked_handler() -> Callable[[Decision], Any] | None:
    """The current application's ``USERMON_BLOCKED_HANDLER``, as a function, or ``None``."""
    import flask

    handler = flask.current_app.config.get(BLOCKED_HANDLER)
    if isinstance(handler, str) and handler:
        from werkzeug.utils import import_string

        handler = import_string(handler)
    return handler if callable(handler) else None


def too_many_attempts(decision: Decision) -> Any:
    """The default answer to a refused address, network or campaign: 429 with Retry-After."""
    import flask

    return flask.Response(
        enforcement.TOO_MANY_ATTEMPTS,
        status=429,
        mimetype="text/plain",
        headers={"Retry-After": str(enforcement.retry_after(decision))},
    )


def refusal_response(decision: Decision, challenge_response: Any, hidden: Any) -> Any:
    """The response to send for a refused login: the challenge handler's, else the
    ``USERMON_BLOCKED_HANDLER``'s unless it returns ``None`` (the application's code: its errors
    pass through), else ``hidden`` for a decision about an account, else the default 429."""
    import flask

    if challenge_response is not None:
        return flask.make_response(challenge_response)
    handler = blocked_handler()
    answer = handler(decision) if handler is not None else None
    if answer is not None:
        return flask.make_response(answer)
    if enforcement.hides_refusal(decision):
        return hidden
    return too_many_attempts(decision)
