"""The comparison maths: flips counted exactly, deltas equal to the difference of independently computed figures, paired
bootstrap intervals that contain them, zero for identical runs, and the target rule."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from annotate.stats import agreement
from judges import compare

FAIL, PASS = agreement.FAIL, agreement.PASS


def _binary_data(n: int = 200, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    human = rng.integers(0, 2, n)
    a = np.where(rng.random(n) < 0.7, human, 1 - human)  # right 70% of the time
    b = np.where(rng.random(n) < 0.85, human, 1 - human)  # right 85% of the time
    return human, a, b


def test_flips_are_counted_exactly_on_constructed_data() -> None:
    #        item:  0     1     2     3     4     5     6
    human = [PASS, PASS, FAIL, FAIL, PASS, FAIL, PASS]
    a = [FAIL, PASS, PASS, FAIL, PASS, PASS, FAIL]  # wrong on 0, 2, 5, 6
    b = [PASS, FAIL, FAIL, FAIL, PASS, PASS, FAIL]  # wrong on 1, 5, 6
    found = compare.flips(human, a, b, kind="binary")
    assert found.fixed.tolist() == [0, 2]
    assert found.broken.tolist() == [1]
    assert found.changed_wrong.tolist() == []
    assert (found.n_right_both, found.n_wrong_both, found.n) == (2, 2, 7)


def test_pairwise_flips_count_a_changed_wrong_answer_separately() -> None:
    a_, b_, tie = agreement.A, agreement.B, agreement.TIE
    human = [a_, b_, tie, a_]
    run_a = [tie, b_, a_, b_]  # wrong on 0, 2, 3
    run_b = [b_, b_, tie, b_]  # wrong on 0, 3
    found = compare.flips(human, run_a, run_b, kind="pairwise")
    assert found.fixed.tolist() == [2]
    assert found.broken.tolist() == []
    assert found.changed_wrong.tolist() == [0]  # tie before, the rejected output now
    assert found.n_wrong_both == 2


def test_each_delta_is_the_difference_of_the_figures_computed_independently() -> None:
    human, a, b = _binary_data()
    deltas = {d.name: d for d in compare.paired_deltas(human, a, b, kind="binary", n_boot=500)}
    report_a = agreement.binary_judge_report(human, a, n_boot=0)
    report_b = agreement.binary_judge_report(human, b, n_boot=0)
    for name in ("accuracy", "kappa", "tpr", "tnr", "fail_precision"):
        expected_a, expected_b = getattr(report_a, name).value, getattr(report_b, name).value
        d = deltas[name]
        assert d.a == pytest.approx(expected_a) and d.b == pytest.approx(expected_b)
        assert d.delta == pytest.approx(expected_b - expected_a)
        assert d.ci_low is not None and d.ci_high is not None
        assert d.ci_low <= d.delta <= d.ci_high, name
        assert d.n == human.size
    # κ also against an independent implementation.
    assert deltas["kappa"].delta == pytest.approx(cohen_kappa_score(human, b) - cohen_kappa_score(human, a))
    # A better judge: the accuracy gain is clearly positive on 200 items.
    assert deltas["accuracy"].ci_low > 0


def test_pairwise_deltas_match_the_pairwise_report() -> None:
    rng = np.random.default_rng(7)
    human = rng.integers(0, 3, 150)
    a = np.where(rng.random(150) < 0.6, human, rng.integers(0, 3, 150))
    b = np.where(rng.random(150) < 0.6, human, rng.integers(0, 3, 150))
    deltas = {d.name: d for d in compare.paired_deltas(human, a, b, kind="pairwise", n_boot=300)}
    ra, rb = agreement.pairwise_judge_report(human, a, n_boot=0), agreement.pairwise_judge_report(human, b, n_boot=0)
    for name in ("agreement", "agreement_without_ties", "kappa"):
        expected = getattr(rb, name).value - getattr(ra, name).value
        assert deltas[name].delta == pytest.approx(expected)
        assert deltas[name].ci_low <= deltas[name].delta <= deltas[name].ci_high


def test_identical_runs_differ_by_zero_with_a_zero_width_interval() -> None:
    human, a, _ = _binary_data()
    for d in compare.paired_deltas(human, a, a.copy(), kind="binary", n_boot=200):
        assert d.delta == 0.0 and d.ci_low == 0.0 and d.ci_high == 0.0, d.name
    found = compare.flips(human, a, a, kind="binary")
    assert found.fixed.size == found.broken.size == 0


def test_the_same_seed_gives_the_same_intervals_and_another_seed_others() -> None:
    human, a, b = _binary_data()
    first = compare.paired_deltas(human, a, b, kind="binary", n_boot=300, seed=11)
    again = compare.paired_deltas(human, a, b, kind="binary", n_boot=300, seed=11)
    other = compare.paired_deltas(human, a, b, kind="binary", n_boot=300, seed=12)
    assert first == again
    assert [d.ci_low for d in first] != [d.ci_low for d in other]
    assert [d.delta for d in first] == [d.delta for d in other]


def test_a_figure_undefined_for_a_run_gets_no_delta() -> None:
    human = [PASS, PASS, PASS]  # no human fail: TNR is not defined
    deltas = {d.name: d for d in compare.paired_deltas(human, [PASS, FAIL, PASS], [PASS] * 3, kind="binary")}
    assert deltas["tnr"].delta is None and deltas["tnr"].reason
    assert deltas["accuracy"].delta == pytest.approx(1 / 3)


def test_codes_out_of_range_and_misaligned_arrays_are_refused() -> None:
    with pytest.raises(ValueError):
        compare.paired_deltas([0, 1], [0, 2], [0, 1], kind="binary")
    with pytest.raises(ValueError):
        compare.flips([0, 1], [0], [0, 1], kind="binary")


# --- Targets ----------------------------------------------------------------------------------------------------


def _fig(value: float | None, low: float | None = None) -> dict:
    return {"value": value, "ci_low": low, "ci_high": None, "n": 50}


def test_a_target_is_met_by_the_point_estimate_and_the_lower_bound_is_reported() -> None:
    figures = {"tpr": _fig(0.95, 0.88), "tnr": _fig(0.78, 0.61)}
    check = compare.target_check(target="tpr_tnr", thresholds={"tpr": 0.9, "tnr": 0.9}, kind="binary", figures=figures)
    assert check.status == "not_yet"
    assert [(line.figure, line.met) for line in check.lines] == [("tpr", True), ("tnr", False)]
    assert [line.figure for line in check.failing] == ["tnr"]
    assert check.lines[0].firm is False  # 0.95 meets 0.90, but its lower bound 0.88 does not
    met = compare.target_check(target="tpr_tnr", thresholds={"tpr": 0.9, "tnr": 0.75}, kind="binary", figures=figures)
    assert met.status == "calibrated"


def test_the_human_kappa_target_uses_the_humans_own_kappa() -> None:
    figures = {"kappa": _fig(0.62, 0.5)}
    above = compare.target_check(target="kappa_human", thresholds={}, kind="binary", figures=figures, human_kappa=0.6)
    below = compare.target_check(target="kappa_human", thresholds={}, kind="binary", figures=figures, human_kappa=0.7)
    missing = compare.target_check(target="kappa_human", thresholds={}, kind="binary", figures=figures)
    assert (above.status, below.status, missing.status) == ("calibrated", "not_yet", "unknown")
    assert below.lines[0].target == 0.7


def test_an_undefined_figure_or_no_target_gives_no_verdict() -> None:
    figures = {"tpr": _fig(0.95), "tnr": {"value": None, "reason": "no items the humans failed", "n": 0}}
    check = compare.target_check(target="tpr_tnr", thresholds={"tpr": 0.9, "tnr": 0.9}, kind="binary", figures=figures)
    assert check.status == "unknown" and "humans failed" in check.lines[1].reason
    assert compare.target_check(target="", thresholds={}, kind="binary", figures=figures).status == "none"
    pairwise = compare.target_check(
        target="accuracy", thresholds={"accuracy": 0.8}, kind="pairwise", figures={"agreement": _fig(0.85)}
    )
    assert pairwise.status == "calibrated" and pairwise.lines[0].figure == "agreement"
