"""Detectors: one small class per attack pattern, each fed every enriched event.

:func:`default_detectors` builds the set the processor runs, configured from the rules file.
"""

from __future__ import annotations

from usermon.processor.detectors.base import Detector

__all__ = ["Detector", "default_detectors"]


def default_detectors() -> list[Detector]:
    """The detectors the processor runs by default."""
    return []
