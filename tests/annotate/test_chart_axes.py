"""Charts that read right (issue 16): round ticks, a zero line on signed scales, one target mark per figure that has
a target, and no point drawn over another."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from annotate import charts

NS = "{http://www.w3.org/2000/svg}"


def _root(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - our own output


def _tick_labels(root: ET.Element, fill: str = charts.MUTED) -> list[str]:
    return [t.text or "" for t in root.iter(f"{NS}text") if t.get("fill") == fill and t.get("font-size") == "11"]


@pytest.mark.parametrize(
    ("lo", "hi", "ticks"),
    [
        (0.0, 1.0, [0.0, 0.25, 0.5, 0.75, 1.0]),
        (-1.0, 1.0, [-1.0, -0.5, 0.0, 0.5, 1.0]),
        (-0.6, 1.0, [-0.5, 0.0, 0.5, 1.0]),
        (0.5, 1.0, [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]),
        (0.0, 0.0345, [0.0, 0.01, 0.02, 0.03]),
    ],
)
def test_ticks_are_round(lo, hi, ticks) -> None:
    assert charts._ticks(lo, hi) == pytest.approx(ticks)
    assert all(str(charts._tick(t)) != "-0" for t in charts._ticks(lo, hi))


def test_axis_labels_read_as_round_numbers() -> None:
    bars = _root(charts.interval_bars([charts.Bar("κ", 0.5)], title="t", lo=-0.6, hi=1.0))
    assert _tick_labels(bars) == ["-0.5", "0", "0.5", "1"]
    line = _root(charts.line_chart([charts.Series("s", [charts.Point("v1", 0.3)])], title="t"))
    assert _tick_labels(line)[:5] == ["0", "0.25", "0.5", "0.75", "1"]
    sc = _root(
        charts.scatter([charts.Point("m", 0.8, xv=0.03)], title="t", x_title="USD per 1,000 verdicts", y_title="κ")
    )
    # x from 0 to a round end above 0.03 × 1.15, in round steps.
    x_ticks = [t.text for t in sc.iter(f"{NS}text") if t.get("y") == "234.0"]
    assert x_ticks == ["0", "0.01", "0.02", "0.03", "0.04"]
    columns = _root(charts.column_chart([("Mon", 37), ("Tue", 3)], title="t"))
    assert _tick_labels(columns) == ["0", "20", "40"]
    assert _tick_labels(_root(charts.column_chart([("Mon", 1)], title="t"))) == ["0", "1"]
    assert _tick_labels(_root(charts.column_chart([("Mon", 0)], title="t"))) == ["0", "1"]


def test_a_zero_line_only_when_values_can_be_negative() -> None:
    for signed, svg in (
        (True, charts.interval_bars([charts.Bar("κ", -0.2)], title="t", lo=-1.0)),
        (True, charts.line_chart([charts.Series("s", [charts.Point("v1", -0.2)])], title="t", lo=-0.5)),
        (True, charts.scatter([charts.Point("m", -0.2, xv=1)], title="t", x_title="x", y_title="y", lo=-1.0)),
        (False, charts.interval_bars([charts.Bar("κ", 0.2)], title="t")),
        (False, charts.line_chart([charts.Series("s", [charts.Point("v1", 0.2)])], title="t")),
    ):
        assert (len(_root(svg).findall(f".//{NS}line[@class='zero']")) == 1) is signed


def test_one_target_mark_per_bar_that_has_a_target() -> None:
    # A chart-wide target and a row with its own: each row gets one mark, at its own target or the chart's.
    root = _root(
        charts.interval_bars(
            [charts.Bar("TPR", 0.9, target=0.8), charts.Bar("TNR", 0.7), charts.Bar("none", None)],
            title="t",
            target=0.6,
        )
    )
    marks = root.findall(f".//{NS}line[@class='target']")
    assert [m.findtext(f"{NS}title") for m in marks] == ["TPR target 0.80", "TNR target 0.60"]
    # Only a chart-wide target: one line across the rows.
    root = _root(charts.interval_bars([charts.Bar("a", 0.9), charts.Bar("b", 0.7)], title="t", target=0.6))
    assert len(root.findall(f".//{NS}line[@class='target']")) == 1


def _centres(root: ET.Element) -> list[tuple[float, float, float]]:
    return [(float(c.get("cx", 0)), float(c.get("cy", 0)), float(c.get("r", 0))) for c in root.iter(f"{NS}circle")]


def _overlapping(circles: list[tuple[float, float, float]]) -> bool:
    return any(
        ((x1 - x2) ** 2 + (y1 - y2) ** 2) ** 0.5 < max(r1, r2)
        for i, (x1, y1, r1) in enumerate(circles)
        for x2, y2, r2 in circles[i + 1 :]
    )


def test_no_point_hides_under_another() -> None:
    same = [charts.Point("v1 stand-in-a", 0.8, xv=0.0), charts.Point("v2 stand-in-b", 0.8, xv=0.0)]
    sc = _root(charts.scatter([*same, charts.Point("v3", 0.5, xv=2.0)], title="t", x_title="x", y_title="y"))
    circles = _centres(sc)
    assert len(circles) == 3 and not _overlapping(circles)
    alone = _centres(_root(charts.scatter([charts.Point("v3", 0.5, xv=2.0)], title="t", x_title="x", y_title="y")))
    assert circles[2] == alone[0]  # a point with room stays where it is
    series = [charts.Series(name, [charts.Point("v1", 0.5), charts.Point("v2", 0.75)]) for name in ("TPR", "TNR", "κ")]
    line = _root(charts.line_chart(series, title="t"))
    assert len(_centres(line)) == 6 and not _overlapping(_centres(line))
