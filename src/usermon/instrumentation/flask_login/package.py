"""The framework versions that :class:`FlaskLoginInstrumentor` instruments."""

from __future__ import annotations

from typing import Final

_instruments: Final = ("flask-login >= 0.6",)
