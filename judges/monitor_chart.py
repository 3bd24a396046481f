"""The daily monitor's chart: the corrected pass rate per day with its 95% interval, the lead's threshold as a dashed
line, and the days whose interval lies wholly below it drawn in red. Server-rendered SVG through annotate.charts'
helpers (every text escaped, a <desc> that says the figures in words)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString

from annotate import charts


@dataclass(frozen=True)
class DayPoint:
    label: str  # the day, as shown under the axis
    value: float | None
    lo: float | None
    hi: float | None
    alert: bool
    note: str = ""  # e.g. "40 of 40 records"


def monitor_chart(
    days: Sequence[DayPoint], *, title: str, threshold: float | None, width: int = 680, height: int = 220
) -> SafeString:
    left, right, top, bottom = 44, 16, 12, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(days), 1)

    def px(i: int) -> float:
        return left + plot_w * (i + 0.5) / n

    def py(v: float) -> float:
        return top + plot_h * (1 - min(max(v, 0.0), 1.0))

    body = []
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        body.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{py(tick):.1f}" y2="{py(tick):.1f}" stroke="{charts.GRID}"/>'
        )
        body.append(charts._text(left - 6, py(tick) + 4, f"{tick:g}", anchor="end", fill=charts.MUTED, size=11))
    descs = []
    shown = [(i, d) for i, d in enumerate(days) if d.value is not None]
    if len(shown) > 1:
        path = " ".join(f"{'M' if j == 0 else 'L'}{px(i):.1f},{py(d.value or 0):.1f}" for j, (i, d) in enumerate(shown))
        body.append(f'<path d="{path}" fill="none" stroke="{charts.ACCENT}" stroke-width="2"/>')
    for i, day in enumerate(days):
        body.append(charts._text(px(i), height - 10, day.label, anchor="middle", fill=charts.MUTED, size=11))
        if day.value is None:
            descs.append(f"{day.label}: not defined")
            continue
        colour = charts.BAD if day.alert else charts.ACCENT
        text = f"{day.label}: {charts.fmt(day.value)}{charts._interval(day.lo, day.hi)}"
        text += (f", {day.note}" if day.note else "") + (", below the threshold" if day.alert else "")
        descs.append(text)
        if day.lo is not None and day.hi is not None:
            body.append(
                f'<line x1="{px(i):.1f}" x2="{px(i):.1f}" y1="{py(day.lo):.1f}" y2="{py(day.hi):.1f}" '
                f'stroke="{colour}" stroke-width="2" stroke-opacity="0.7"/>'
            )
        css = "day alert" if day.alert else "day"
        body.append(
            f'<circle class="{css}" cx="{px(i):.1f}" cy="{py(day.value):.1f}" r="{6 if day.alert else 4}" '
            f'fill="{colour}" stroke="#fff"><title>{escape(text)}</title></circle>'
        )
    if threshold is not None:
        body.append(charts._target_line(left, left + plot_w, py(threshold), py(threshold), f"threshold {threshold:g}"))
        descs.append(f"threshold: {threshold:g}")
    return charts._svg(width, height, title, "; ".join(descs) or "no days yet", body, "chart-monitor")
