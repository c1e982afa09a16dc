"""The framework versions that :class:`FlaskHTTPAuthInstrumentor` instruments."""

from __future__ import annotations

from typing import Final

_instruments: Final = ("flask-httpauth >= 4.8",)
