"""Login and signup counts per minute and per service, for the dashboard's activity chart.

This module owns the one time series the processor keeps: for each ``service.name``, how many
logins succeeded, failed, and how many signups there were in each minute of event time, over
the last :data:`SPAN_MINUTES` minutes before the newest event seen. It lives in the processor's
memory (fed by :meth:`~usermon.processor.service.Processor.ingest`, including the journal replayed
at startup), is bounded (:data:`MAX_SERVICES` services, one small row per minute each), and is
per replica: on a shared store each replica charts what it processed itself.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from usermon.processor.model import Event

__all__ = ["MAX_SERVICES", "SPAN_MINUTES", "Activity"]

SPAN_MINUTES = 24 * 60
"""How far back (minutes of event time before the newest event) the series reaches."""

MAX_SERVICES = 32
"""Services charted at most; events of further services count under ``(other)``."""

OTHER = "(other)"
UNNAMED = "(unnamed)"


class Activity:
    """Per-minute ``[ok, failed, signups]`` per service. Thread-safe."""

    def __init__(self) -> None:
        self._series: dict[str, dict[int, list[int]]] = {}
        self._newest = 0
        self._lock = threading.Lock()

    def add(self, events: Iterable[Event]) -> None:
        with self._lock:
            # A batch mostly holds one service's events of one minute: the row of the previous
            # event is reused while the next one falls in the same minute of the same service.
            row: list[int] = [0, 0, 0]
            last_service: str | None = None
            start = end = 0.0  # the previous row's minute, in seconds: [start, end)
            for event in events:
                t = event.time
                if not (start <= t < end and event.service is last_service):
                    minute = int(t // 60)
                    if minute <= self._newest - SPAN_MINUTES:
                        start = end = 0.0
                        continue  # older than the chart reaches
                    last_service = event.service
                    row = self._row(last_service or UNNAMED, minute)
                    start, end = minute * 60.0, (minute + 1) * 60.0
                    if minute > self._newest:
                        self._newest = minute
                        self._trim()
                if event.kind != "login":
                    row[2] += 1
                elif event.success:
                    row[0] += 1
                else:
                    row[1] += 1

    def _row(self, service: str, minute: int) -> list[int]:
        series = self._series.get(service)
        if series is None:
            if len(self._series) >= MAX_SERVICES:
                service = OTHER
            series = self._series.setdefault(service, {})
        row = series.get(minute)
        if row is None:
            row = series[minute] = [0, 0, 0]
        return row

    def _trim(self) -> None:
        oldest = self._newest - SPAN_MINUTES
        for series in self._series.values():
            if len(series) > SPAN_MINUTES or (series and min(series) <= oldest):
                for minute in [m for m in series if m <= oldest]:
                    del series[minute]

    def series(
        self, minutes: int = 60, step: int = 1
    ) -> tuple[int, dict[str, list[tuple[int, int, int]]]]:
        """``(first minute, {service: [(ok, failed, signups) per step]})`` for the last
        ``minutes`` minutes before the newest event, summed ``step`` minutes a point (epoch
        minutes; zeros where none)."""
        minutes = max(1, min(minutes, SPAN_MINUTES))
        step = max(1, step)
        with self._lock:
            last = self._newest - self._newest % step + step - 1  # the newest step, whole
            first = last - minutes + 1
            first -= first % step
            out: dict[str, list[tuple[int, int, int]]] = {}
            for service, series in sorted(self._series.items()):
                if not any(first <= m <= last for m in series):
                    continue
                points = []
                for start in range(first, last + 1, step):
                    rows = [series.get(m) for m in range(start, start + step)]
                    points.append(tuple(sum(r[i] for r in rows if r) for i in range(3)))
                out[service] = points  # type: ignore[assignment]
            return first, out
