"""The SVG charts: well-formed XML, every user text escaped, figures readable without the picture."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from annotate import charts

NS = "{http://www.w3.org/2000/svg}"
EVIL = '<script>alert(1)</script>" onload="x'


def _parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # noqa: S314 - our own output
    assert root.tag == f"{NS}svg"
    assert root.get("role") == "img"
    return root


def _no_script(root: ET.Element) -> None:
    for el in root.iter():
        assert not el.tag.endswith("script")
        assert not any(name.startswith("on") for name in el.attrib)


def test_interval_bars_escape_labels_and_describe_figures() -> None:
    svg = charts.interval_bars(
        [charts.Bar(EVIL, 0.81, 0.7, 0.9), charts.Bar("tone", None)], title="κ per criterion", target=0.6
    )
    root = _parse(svg)
    _no_script(root)
    desc = root.find(f"{NS}desc")
    assert desc is not None and desc.text is not None
    assert "0.81 (95% CI 0.70 to 0.90)" in desc.text
    assert EVIL in desc.text  # the text survives, as text
    assert "target: 0.60" in desc.text
    # The value above target is drawn green, and the row with no figure says so instead of drawing a bar.
    bars = root.findall(f".//{NS}rect[@class='bar']")
    assert len(bars) == 1 and bars[0].get("fill") == charts.GOOD
    assert "not enough labels" in svg


def test_interval_bars_clamp_values_outside_the_scale() -> None:
    root = _parse(charts.interval_bars([charts.Bar("k", -0.4, -0.9, 0.1)], title="t", lo=-1.0, hi=1.0))
    rect = root.find(f".//{NS}rect[@class='bar']")
    assert rect is not None
    assert float(rect.get("x", "0")) >= 170  # never left of the plot
    assert float(rect.get("width", "0")) > 0


def test_heatmap_counts_and_row_shares() -> None:
    root = _parse(charts.heatmap([[8, 2], [1, 9]], row_labels=["pass", "fail"], col_labels=["pass", EVIL], title="t"))
    _no_script(root)
    cells = root.findall(f".//{NS}rect[@class='cell']")
    assert [c.get("fill") for c in cells] == [charts.GOOD, charts.BAD, charts.BAD, charts.GOOD]
    desc = root.find(f"{NS}desc")
    assert desc is not None and desc.text is not None
    assert "humans pass, judge pass: 8 (80% of the row)" in desc.text
    assert "humans fail, judge pass: 1 (10% of the row)" in desc.text


def test_line_chart_and_scatter_describe_every_point() -> None:
    line = _parse(
        charts.line_chart(
            [charts.Series("κ", [charts.Point("v1", 0.4, 0.3, 0.5), charts.Point("v2", 0.7, 0.6, 0.8)])],
            title="t",
            target=0.6,
        )
    )
    assert len(line.findall(f".//{NS}circle")) == 2
    assert line.find(f".//{NS}path") is not None
    sc = _parse(
        charts.scatter(
            [charts.Point("small", 0.92, xv=0.1, highlight=True), charts.Point("no price", 0.95)],
            title="t",
            x_title="USD per 1,000 verdicts",
            y_title="κ",
        )
    )
    desc = sc.find(f"{NS}desc")
    assert desc is not None and desc.text is not None
    assert "no price: κ 0.95" in desc.text and "unknown" in desc.text
    circles = sc.findall(f".//{NS}circle")
    assert len(circles) == 1 and circles[0].get("fill") == charts.GOOD


def test_column_chart() -> None:
    root = _parse(charts.column_chart([("Mon", 3), ("Tue", 0), ("Wed", 12)], title="labels per day", unit="labels"))
    assert len(root.findall(f".//{NS}rect")) == 3
    assert charts.fmt(float("nan")) == "–"


def test_interval_bars_take_a_target_per_row() -> None:
    svg = charts.interval_bars(
        [charts.Bar("TPR", 0.95, 0.9, 0.99, target=0.9), charts.Bar("TNR", 0.78, 0.6, 0.9, target=0.9)], title="t"
    )
    root = _parse(svg)
    bars = root.findall(f".//{NS}rect[@class='bar']")
    assert [b.get("fill") for b in bars] == [charts.GOOD, charts.BAD]
    assert len(root.findall(f".//{NS}line[@class='target']")) == 2
    desc = root.find(f"{NS}desc")
    assert desc is not None and desc.text is not None and "TNR: 0.78 (95% CI 0.60 to 0.90); target 0.90" in desc.text


def test_a_line_chart_legend_can_hold_longer_names() -> None:
    series = [charts.Series("Follows the instruction", [charts.Point("v1", 0.4), charts.Point("v2", 0.5)])]
    short = _parse(charts.line_chart(series, title="t"))
    long = _parse(charts.line_chart(series, title="t", legend_chars=24))
    texts = [t.text for t in short.findall(f".//{NS}text")]
    assert "Follows the i…" in texts and "Follows the instruction" not in texts
    assert "Follows the instruction" in [t.text for t in long.findall(f".//{NS}text")]


def test_scatter_labels_of_nearby_points_do_not_overlap() -> None:
    """Two models at nearly the same cost and figure: their labels go to different places, not one on the other."""
    points = [
        charts.Point("v14 llama-2-70b-chat · Vanilla", 0.61, xv=0.50),
        charts.Point("v7 gpt-3.5-turbo-0613 · Vanilla", 0.62, xv=0.52),
        charts.Point("v3 gpt-4-0613 · Vanilla", 0.80, xv=3.0),
    ]
    root = _parse(charts.scatter(points, title="t", x_title="x", y_title="y"))
    labels = [t for t in root.findall(f".//{NS}text") if t.text and t.text.startswith("v")]
    assert len(labels) == 3
    boxes = [
        charts._label_box(float(t.get("x", 0)), float(t.get("y", 0)), t.text or "", t.get("text-anchor", "start"))
        for t in labels
    ]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)
