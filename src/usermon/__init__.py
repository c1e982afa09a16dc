"""usermon: user monitoring for Python web applications, on OpenTelemetry.

Report every login attempt and every signup; usermon records them as OpenTelemetry span events that
travel through your existing pipeline to your tracing backend and to the usermon processor.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
