"""The framework versions that :class:`DRFInstrumentor` instruments."""

from __future__ import annotations

from typing import Final

_instruments: Final = ("django >= 4.2", "djangorestframework >= 3.14")
