"""Charts drawn on the server as SVG: no chart library, no script, nothing inline that the CSP would block.

Every chart is an `<svg role="img">` with a `<title>` and a `<desc>` that says in words what the picture shows, so a
screen reader gets the figures; every mark carries its own `<title>` (shown on hover). All text goes through
`escape`; numbers are formatted here. Pages should still print the figures in a table next to the chart.

Colours are presentation attributes from one palette (readable in a screenshot and in print); classes let the
stylesheet adjust them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

INK = "#1f2933"
MUTED = "#7b8794"
GRID = "#e4e7eb"
ACCENT = "#2563eb"
GOOD = "#15803d"
BAD = "#b91c1c"
TARGET = "#d97706"
SERIES = ("#2563eb", "#d97706", "#7c3aed", "#0f766e", "#be185d", "#4b5563")
FONT = 'font-family="system-ui, -apple-system, Segoe UI, sans-serif"'


def fmt(value: float | None, digits: int = 2) -> str:
    """A figure as text; None and NaN read as an en dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _interval(lo: float | None, hi: float | None, digits: int = 2) -> str:
    if lo is None or hi is None:
        return ""
    return f" (95% CI {fmt(lo, digits)} to {fmt(hi, digits)})"


def _svg(width: int, height: int, title: str, desc: str, body: list[str], css: str) -> SafeString:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {escape(css)}" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" {FONT} font-size="12">'
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>"
    )
    return mark_safe(head + "".join(body) + "</svg>")  # noqa: S308 - every text above and in body is escaped


def _text(
    x: float, y: float, text: str, *, anchor: str = "start", fill: str = INK, size: int = 12, extra: str = ""
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}" font-size="{size}"{extra}>'
        f"{escape(text)}</text>"
    )


def _target_line(x1: float, x2: float, y1: float, y2: float, title: str) -> str:
    return (
        f'<line class="target" x1="{x1:.1f}" x2="{x2:.1f}" y1="{y1:.1f}" y2="{y2:.1f}" stroke="{TARGET}" '
        f'stroke-width="2" stroke-dasharray="4 3"><title>{escape(title)}</title></line>'
    )


def _zero_line(x1: float, x2: float, y1: float, y2: float) -> str:
    """The line at 0 on a scale that goes below it, darker than the grid."""
    return f'<line class="zero" x1="{x1:.1f}" x2="{x2:.1f}" y1="{y1:.1f}" y2="{y2:.1f}" stroke="{MUTED}"/>'


def _dodge(positions: Sequence[tuple[float, float]], radius: float) -> list[tuple[float, float]]:
    """The positions, each moved sideways (right, left, further right...) off any earlier one it would cover, so that
    no point hides under another; a point whose place is free stays where it is."""
    placed: list[tuple[float, float]] = []
    gap = 2 * radius + 1
    for x, y in positions:
        for k in range(64):
            shift = 0.0 if k == 0 else gap * ((k + 1) // 2) * (1 if k % 2 else -1)
            if all(math.hypot(x + shift - px, y - py) >= gap for px, py in placed):
                break
        placed.append((x + shift, y))
    return placed


@dataclass(frozen=True)
class Bar:
    """One row of an interval chart: a point estimate with its 95% interval."""

    label: str
    value: float | None
    lo: float | None = None
    hi: float | None = None
    note: str = ""
    # A target for this row only (the chart's `target` applies to every row): drawn as a tick, colours the bar.
    target: float | None = None


def interval_bars(
    rows: Sequence[Bar],
    *,
    title: str,
    lo: float = 0.0,
    hi: float = 1.0,
    target: float | None = None,
    target_label: str = "target",
    digits: int = 2,
    width: int = 560,
) -> SafeString:
    """Horizontal bars from `lo` (or 0 for signed scales) to each value, with the interval drawn as a whisker."""
    label_w, value_w, row_h, top = 170, 150, 26, 10
    plot_w = width - label_w - value_w
    height = top + row_h * max(len(rows), 1) + 24
    span = (hi - lo) or 1.0

    def x(v: float) -> float:
        return label_w + plot_w * (min(max(v, lo), hi) - lo) / span

    origin = x(0.0) if lo < 0 < hi else x(lo)
    body = [f'<rect x="{label_w}" y="{top - 4}" width="{plot_w}" height="{row_h * len(rows) + 4}" fill="#f8fafc"/>']
    for tick in _ticks(lo, hi):
        body.append(
            f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{top - 4}" y2="{top + row_h * len(rows)}" '
            f'stroke="{GRID}"/>'
        )
        body.append(_text(x(tick), top + row_h * len(rows) + 16, _tick(tick), anchor="middle", fill=MUTED, size=11))
    if lo < 0 < hi:
        body.append(_zero_line(x(0.0), x(0.0), top - 4, top + row_h * len(rows)))
    # One target mark per row that has a target: the chart's line across every row when no row has its own, else a
    # tick on each row at its own target or the chart's.
    per_row = any(row.target is not None for row in rows)
    descs = []
    for i, row in enumerate(rows):
        y = top + i * row_h
        mid = y + row_h / 2
        body.append(_text(label_w - 8, mid + 4, _clip(row.label, 26), anchor="end"))
        text = f"{row.label}: {fmt(row.value, digits)}{_interval(row.lo, row.hi, digits)}"
        if row.note:
            text += f"; {row.note}"
        descs.append(text)
        if row.value is None or math.isnan(row.value):
            body.append(_text(label_w + 6, mid + 4, "not enough labels", fill=MUTED, size=11))
            continue
        left, right = sorted((origin, x(row.value)))
        goal = row.target if row.target is not None else target
        colour = ACCENT if goal is None else (GOOD if row.value >= goal else BAD)
        body.append(
            f'<rect class="bar" x="{left:.1f}" y="{y + 6}" width="{max(right - left, 1.5):.1f}" height="{row_h - 12}" '
            f'fill="{colour}" fill-opacity="0.8"><title>{escape(text)}</title></rect>'
        )
        if row.lo is not None and row.hi is not None:
            x1, x2 = x(row.lo), x(row.hi)
            body.append(
                f'<g stroke="{INK}" stroke-width="1.5"><line x1="{x1:.1f}" x2="{x2:.1f}" y1="{mid}" y2="{mid}"/>'
                f'<line x1="{x1:.1f}" x2="{x1:.1f}" y1="{mid - 5}" y2="{mid + 5}"/>'
                f'<line x1="{x2:.1f}" x2="{x2:.1f}" y1="{mid - 5}" y2="{mid + 5}"/></g>'
            )
        if per_row and goal is not None:
            tx = x(goal)
            body.append(_target_line(tx, tx, y + 2, y + row_h - 2, f"{row.label} target {fmt(goal, digits)}"))
            descs[-1] += f"; target {fmt(goal, digits)}"
        body.append(
            _text(width - value_w + 8, mid + 4, f"{fmt(row.value, digits)}{_short_interval(row.lo, row.hi, digits)}")
        )
    if target is not None:
        if not per_row:
            tx = x(target)
            body.append(
                _target_line(tx, tx, top - 6, top + row_h * len(rows) + 2, f"{target_label} {fmt(target, digits)}")
            )
        descs.append(f"{target_label}: {fmt(target, digits)}")
    return _svg(width, height, title, "; ".join(descs) or "no data", body, "chart-bars")


def _short_interval(lo: float | None, hi: float | None, digits: int) -> str:
    return "" if lo is None or hi is None else f"  [{fmt(lo, digits)}, {fmt(hi, digits)}]"


def _label_box(x: float, y: float, text: str, anchor: str, size: int = 11) -> tuple[float, float, float, float]:
    """The box (x0, y0, x1, y1) a text at baseline (x, y) covers, at about 0.6 em a character."""
    w = 0.6 * size * len(text)
    x0 = x - w if anchor == "end" else x
    return x0, y - size, x0 + w, y + 3


def _place_labels(
    labels: Sequence[tuple[float, float, str]], width: float, height: float
) -> list[tuple[float, float, str, str]]:
    """(x, y, text, anchor) for each point's label (cx, cy, text): beside its point, at the first of a few places
    (right above, right below, left above, left below, further up or down) that covers no point and no label placed
    before and stays inside the chart. A label with no free place is left out: the point's tooltip and the chart's
    description still name it."""
    # The points themselves are in the way too: a label does not cover another point's dot.
    placed: list[tuple[float, float, float, float]] = [(cx - 7, cy - 7, cx + 7, cy + 7) for cx, cy, _ in labels]
    out = []
    offsets = [(9, -7, "start"), (9, 15, "start"), (-9, -7, "end"), (-9, 15, "end")]
    offsets += [(9, -21, "start"), (9, 29, "start"), (-9, -21, "end"), (-9, 29, "end")]
    for cx, cy, text in labels:
        for dx, dy, anchor in offsets:
            box = _label_box(cx + dx, cy + dy, text, anchor)
            inside = box[0] >= 0 and box[2] <= width and box[1] >= 0 and box[3] <= height
            if inside and not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                placed.append(box)
                out.append((cx + dx, cy + dy, text, anchor))
                break
    return out


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _tick(value: float) -> str:
    """An axis label: as few digits as the value needs (0, 0.25, 0.5, 1)."""
    return f"{value:.3g}"


def _step(lo: float, hi: float, n: int = 4) -> float:
    """The round step (1, 2, 2.5 or 5 times a power of ten) whose number of intervals between lo and hi is nearest
    `n` (the larger step on a tie): 0.25 from 0 to 1, 0.5 from -1 to 1, 0.1 from 0.5 to 1."""
    raw = (hi - lo) / n
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(raw))
    steps = [m * magnitude for m in (1, 2, 2.5, 5, 10)]
    return min(reversed(steps), key=lambda step: abs((hi - lo) / step - n))


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    """Round ticks inside [lo, hi]: the multiples of `_step` (0, 0.25, 0.5, 0.75, 1 on a scale from 0 to 1)."""
    if hi <= lo:
        return [lo]
    step = _step(lo, hi, n)
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    return [round(k * step, 12) + 0.0 for k in range(first, last + 1)]


def heatmap(
    matrix: Sequence[Sequence[int]],
    *,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str,
    row_title: str = "humans",
    col_title: str = "judge",
    cell: int = 84,
) -> SafeString:
    """A confusion matrix: each cell shaded by its share of its row (so recall reads across), with counts printed.
    Diagonal cells (agreement) are green, the others red."""
    left, top = 120, 44
    width = left + cell * len(col_labels) + 16
    height = top + cell * len(row_labels) + 16
    body = [_text(left + cell * len(col_labels) / 2, 14, col_title, anchor="middle", fill=MUTED)]
    for j, name in enumerate(col_labels):
        body.append(_text(left + cell * j + cell / 2, top - 10, name, anchor="middle", size=13))
    body.append(
        _text(
            14,
            top + cell * len(row_labels) / 2,
            row_title,
            anchor="middle",
            fill=MUTED,
            extra=f' transform="rotate(-90 14 {top + cell * len(row_labels) / 2:.1f})"',
        )
    )
    descs = []
    for i, name in enumerate(row_labels):
        total = sum(matrix[i]) or 1
        body.append(_text(left - 10, top + cell * i + cell / 2 + 4, name, anchor="end", size=13))
        for j, count in enumerate(matrix[i]):
            share = count / total
            colour = GOOD if i == j else BAD
            text = f"{row_title} {name}, {col_title} {col_labels[j]}: {count} ({share:.0%} of the row)"
            descs.append(text)
            x, y = left + cell * j, top + cell * i
            body.append(
                f'<rect class="cell" x="{x}" y="{y}" width="{cell - 3}" height="{cell - 3}" fill="{colour}" '
                f'fill-opacity="{0.08 + 0.8 * share:.2f}" stroke="{GRID}"><title>{escape(text)}</title></rect>'
            )
            ink = "#ffffff" if share > 0.55 else INK
            body.append(
                _text(
                    x + (cell - 3) / 2,
                    y + cell / 2 - 2,
                    f"{count:,}",
                    anchor="middle",
                    fill=ink,
                    size=16,
                    extra=' font-weight="600"',
                )
            )
            body.append(
                _text(x + (cell - 3) / 2, y + cell / 2 + 16, f"{share:.0%}", anchor="middle", fill=ink, size=11)
            )
    return _svg(width, height, title, "; ".join(descs), body, "chart-heatmap")


@dataclass(frozen=True)
class Point:
    """One point of a series (x is a category label) or of a scatter (x is a number in `xv`)."""

    label: str
    value: float | None
    lo: float | None = None
    hi: float | None = None
    xv: float | None = None
    highlight: bool = False
    note: str = ""


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[Point]


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    lo: float = 0.0,
    hi: float = 1.0,
    target: float | None = None,
    target_label: str = "target",
    width: int = 560,
    height: int = 220,
    digits: int = 2,
    legend_chars: int = 14,
) -> SafeString:
    """Figures across ordered categories (versions, rubric versions): one line per series, intervals as bands of
    whiskers, a dashed target line. Legend entries are clipped to `legend_chars` characters; a longer legend takes
    its room from the plot."""
    left, top, bottom = 44, 12, 30
    right = 120 if legend_chars <= 14 else 34 + 6 * legend_chars
    plot_w, plot_h = width - left - right, height - top - bottom
    labels = [p.label for p in series[0].points] if series else []
    n = max(len(labels), 1)
    span = (hi - lo) or 1.0

    def px(i: int) -> float:
        return left + (plot_w * (i + 0.5) / n)

    def py(v: float) -> float:
        return top + plot_h * (1 - (min(max(v, lo), hi) - lo) / span)

    body = []
    for tick in _ticks(lo, hi):
        body.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py(tick):.1f}" y2="{py(tick):.1f}" stroke="{GRID}"/>')
        body.append(_text(left - 6, py(tick) + 4, _tick(tick), anchor="end", fill=MUTED, size=11))
    if lo < 0 < hi:
        body.append(_zero_line(left, left + plot_w, py(0.0), py(0.0)))
    for i, name in enumerate(labels):
        body.append(_text(px(i), height - 10, _clip(name, 12), anchor="middle", fill=MUTED, size=11))
    descs = []
    shown = [
        [(i, p) for i, p in enumerate(s.points) if p.value is not None and not math.isnan(p.value)] for s in series
    ]
    # Series that meet at a point are drawn side by side there, not on top of each other.
    flat = [(k, i, p) for k, pts in enumerate(shown) for i, p in pts]
    spots = _dodge([(px(i), py(p.value)) for _k, i, p in flat], 5.0)  # type: ignore[arg-type]
    at = {(k, i): spot for (k, i, _p), spot in zip(flat, spots, strict=True)}
    for k, s in enumerate(series):
        colour = SERIES[k % len(SERIES)]
        pts = shown[k]
        if len(pts) > 1:
            path = " ".join(
                f"{'M' if j == 0 else 'L'}{at[k, i][0]:.1f},{at[k, i][1]:.1f}" for j, (i, _p) in enumerate(pts)
            )
            body.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for i, p in pts:
            assert p.value is not None
            cx, cy = at[k, i]
            text = f"{s.name}, {p.label}: {fmt(p.value, digits)}{_interval(p.lo, p.hi, digits)}"
            descs.append(text)
            if p.lo is not None and p.hi is not None:
                body.append(
                    f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{py(p.lo):.1f}" y2="{py(p.hi):.1f}" '
                    f'stroke="{colour}" stroke-width="1.5" stroke-opacity="0.6"/>'
                )
            body.append(
                f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{5 if p.highlight else 3.5}" fill="{colour}" '
                f'stroke="#fff"><title>{escape(text)}</title></circle>'
            )
        body.append(
            f'<rect x="{width - right + 10}" y="{top + 16 * k}" width="10" height="10" fill="{colour}"/>'
            + _text(width - right + 24, top + 16 * k + 9, _clip(s.name, legend_chars), size=11)
        )
    if target is not None:
        body.append(_target_line(left, left + plot_w, py(target), py(target), f"{target_label} {fmt(target, digits)}"))
        descs.append(f"{target_label}: {fmt(target, digits)}")
    return _svg(width, height, title, "; ".join(descs) or "no data", body, "chart-line")


def scatter(
    points: Sequence[Point],
    *,
    title: str,
    x_title: str,
    y_title: str,
    lo: float = 0.0,
    hi: float = 1.0,
    target: float | None = None,
    width: int = 560,
    height: int = 260,
    digits: int = 2,
) -> SafeString:
    """Numbers against numbers (cost per 1,000 verdicts against agreement); highlighted points are drawn larger and
    green. Points without an x (`xv` None, e.g. no price) are listed in the description only."""
    left, right, top, bottom = 48, 24, 12, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [p.xv for p in points if p.xv is not None]
    x_hi = max(xs) * 1.15 if xs and max(xs) > 0 else 1.0
    x_hi = math.ceil(x_hi / _step(0.0, x_hi) - 1e-9) * _step(0.0, x_hi)  # the axis ends on a round tick
    span = (hi - lo) or 1.0

    def px(v: float) -> float:
        return left + plot_w * v / x_hi

    def py(v: float) -> float:
        return top + plot_h * (1 - (min(max(v, lo), hi) - lo) / span)

    body = [
        f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="{MUTED}"/>',
        _text(left + plot_w / 2, height - 6, x_title, anchor="middle", fill=MUTED, size=11),
        _text(
            12,
            top + plot_h / 2,
            y_title,
            anchor="middle",
            fill=MUTED,
            size=11,
            extra=f' transform="rotate(-90 12 {top + plot_h / 2:.1f})"',
        ),
    ]
    for tick in _ticks(lo, hi):
        body.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py(tick):.1f}" y2="{py(tick):.1f}" stroke="{GRID}"/>')
        body.append(_text(left - 6, py(tick) + 4, _tick(tick), anchor="end", fill=MUTED, size=11))
    for tick in _ticks(0.0, x_hi):
        body.append(_text(px(tick), top + plot_h + 14, _tick(tick), anchor="middle", fill=MUTED, size=11))
    if lo < 0 < hi:
        body.append(_zero_line(left, left + plot_w, py(0.0), py(0.0)))
    descs = []
    labels: list[tuple[float, float, str]] = []
    drawn = [p for p in points if p.xv is not None and p.value is not None and not math.isnan(p.value)]
    # Points at the same place (two models at $0 with the same figure) are drawn side by side.
    spots = dict(
        zip(map(id, drawn), _dodge([(px(p.xv), py(p.value)) for p in drawn], 7.0), strict=True)  # type: ignore[arg-type]
    )
    for p in points:
        text = f"{p.label}: {y_title} {fmt(p.value, digits)}{_interval(p.lo, p.hi, digits)}, {x_title} " + (
            fmt(p.xv, 3) if p.xv is not None else "unknown"
        )
        if p.note:
            text += f"; {p.note}"
        descs.append(text)
        if p.xv is None or p.value is None or math.isnan(p.value):
            continue
        colour = GOOD if p.highlight else ACCENT
        cx, cy = spots[id(p)]
        if p.lo is not None and p.hi is not None:
            body.append(
                f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{py(p.lo):.1f}" y2="{py(p.hi):.1f}" '
                f'stroke="{colour}" stroke-opacity="0.6" stroke-width="1.5"/>'
            )
        body.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{7 if p.highlight else 5}" fill="{colour}" '
            f'stroke="#fff"><title>{escape(text)}</title></circle>'
        )
        labels.append((cx, cy, _clip(p.label, 24)))
    for x, y, text, anchor in _place_labels(labels, width, height):
        body.append(_text(x, y, text, anchor=anchor, size=11))
    if target is not None:
        body.append(_target_line(left, left + plot_w, py(target), py(target), f"target {fmt(target, digits)}"))
        descs.append(f"target: {fmt(target, digits)}")
    return _svg(width, height, title, "; ".join(descs) or "no data", body, "chart-scatter")


def column_chart(
    values: Sequence[tuple[str, float]], *, title: str, unit: str = "", width: int = 560, height: int = 140
) -> SafeString:
    """Vertical columns for counts over time (labels per day, throughput)."""
    left, top, bottom = 36, 10, 24
    plot_w, plot_h = width - left - 8, height - top - bottom
    most = max((v for _, v in values), default=0) or 1
    # The axis ends on a round tick (a whole number): 0, 10, 20, 30, 40 for a top column of 37.
    step = max(_step(0.0, most, 2), 1.0)
    top_value = math.ceil(most / step - 1e-9) * step
    n = max(len(values), 1)
    col = plot_w / n
    body = [f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="{MUTED}"/>']
    for tick in (step * k for k in range(round(top_value / step) + 1)):
        y = top + plot_h - plot_h * tick / top_value
        if tick:
            body.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        body.append(_text(left - 6, y + 4, f"{tick:,.0f}", anchor="end", fill=MUTED, size=11))
    descs = []
    for i, (name, v) in enumerate(values):
        h = plot_h * v / top_value
        text = f"{name}: {v:,.0f}{(' ' + unit) if unit else ''}"
        descs.append(text)
        body.append(
            f'<rect x="{left + col * i + 1:.1f}" y="{top + plot_h - h:.1f}" width="{max(col - 2, 1):.1f}" '
            f'height="{h:.1f}" fill="{ACCENT}" fill-opacity="0.8"><title>{escape(text)}</title></rect>'
        )
        if n <= 14 or i % max(n // 7, 1) == 0:
            body.append(
                _text(left + col * i + col / 2, height - 8, _clip(name, 10), anchor="middle", fill=MUTED, size=10)
            )
    return _svg(width, height, title, "; ".join(descs) or "no data", body, "chart-columns")


def scale_floor(figures: list[dict[str, Any]]) -> float:
    """Where a chart of agreement figures starts: 0, or below it when a figure or its interval is negative, at a
    value that keeps the ticks round (the scale ends at 1)."""
    lows = [f["ci_low"] if f.get("ci_low") is not None else f["value"] for f in figures if f.get("value") is not None]
    low = min(lows, default=0.0)
    return 0.0 if low >= 0 else (-0.6 if low >= -0.6 else -1.0)
