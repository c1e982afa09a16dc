"""The framework versions that :class:`DjangoInstrumentor` instruments."""

from __future__ import annotations

from typing import Final

_instruments: Final = ("django >= 4.2",)
