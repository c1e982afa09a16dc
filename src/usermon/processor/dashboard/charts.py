"""Charts drawn on the server as SVG: no script, no library, nothing to fetch.

Each function returns SVG markup (:class:`markupsafe.Markup`) with every text escaped, styled by
classes from ``static/dashboard.css`` (the Content-Security-Policy allows no inline style).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from markupsafe import Markup, escape

__all__ = ["bars", "lines"]

WIDTH = 640
HEIGHT = 160
PAD_LEFT = 40
PAD_BOTTOM = 20
PAD_TOP = 8


def _nice_max(value: int) -> int:
    """The smallest of 1, 2, 5 times a power of ten that is at least ``value`` (at least 1)."""
    if value <= 1:
        return 1
    magnitude: int = 10 ** (len(str(value)) - 1)
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= value)


def lines(
    title: str,
    first_minute: int,
    step: int,
    series: Sequence[tuple[str, str, Sequence[int]]],
) -> Markup:
    """A line chart of points ``step`` minutes apart from ``first_minute`` (epoch minutes);
    ``series`` is ``(label, css class, values)``, all of one length."""
    n = max((len(values) for _, _, values in series), default=0)
    top = _nice_max(max((max(values, default=0) for _, _, values in series), default=0))
    inner_w = WIDTH - PAD_LEFT - 8
    inner_h = HEIGHT - PAD_BOTTOM - PAD_TOP

    def x(i: int) -> float:
        return PAD_LEFT + (inner_w * i / max(n - 1, 1))

    def y(v: int) -> float:
        return PAD_TOP + inner_h - inner_h * v / top

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<line class="axis" x1="{PAD_LEFT}" y1="{y(0):.1f}" x2="{WIDTH - 8}" y2="{y(0):.1f}"/>',
        f'<line class="grid" x1="{PAD_LEFT}" y1="{y(top):.1f}" '
        f'x2="{WIDTH - 8}" y2="{y(top):.1f}"/>',
        f'<text class="tick" x="{PAD_LEFT - 4}" y="{y(top) + 4:.1f}">{top}</text>',
        f'<text class="tick" x="{PAD_LEFT - 4}" y="{y(0) + 4:.1f}">0</text>',
    ]
    if n:
        for i in (0, n - 1):
            minute = dt.datetime.fromtimestamp((first_minute + i * step) * 60, dt.timezone.utc)
            anchor = "start" if i == 0 else "end"
            parts.append(
                f'<text class="tick time {anchor}" x="{x(i):.1f}" y="{HEIGHT - 4}">'
                f'<tspan data-utc="{minute.isoformat()}">{minute:%m-%d %H:%M} UTC</tspan></text>'
            )
    for label, css, values in series:
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(
            f'<polyline class="line {escape(css)}" points="{points}">'
            f"<title>{escape(label)}: {sum(values)}</title></polyline>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text is escaped above


def bars(title: str, rows: Sequence[tuple[str, int, str]]) -> Markup:
    """Horizontal bars, one per ``(label, value, css class)``."""
    top = max((v for _, v, _ in rows), default=0) or 1
    row_h = 18
    height = row_h * len(rows) + 4
    label_w = 160
    parts = [
        f'<svg class="chart bars" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for i, (label, value, css) in enumerate(rows):
        w = (WIDTH - label_w - 60) * value / top
        yy = i * row_h + 2
        parts.append(
            f'<text class="barlabel" x="{label_w - 6}" y="{yy + 13}">{escape(label)}</text>'
            f'<rect class="bar {escape(css)}" x="{label_w}" y="{yy}" width="{w:.1f}" '
            f'height="{row_h - 4}"/>'
            f'<text class="barvalue" x="{label_w + w + 4:.1f}" y="{yy + 13}">{value}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text is escaped above
