"""The agreement maths against independent implementations, hand-worked examples and the edge cases a lead meets."""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from collections import Counter
from statistics import NormalDist
from typing import Any

import krippendorff
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats
from sklearn.metrics import cohen_kappa_score, confusion_matrix, precision_score, recall_score
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

from annotate.stats import agreement as ag
from annotate.stats import proportions
from annotate.stats.agreement import FAIL, PASS, TIE, A, B, Figure

# The reasons and worked examples are written with the figures' own symbols (κ, α, −), as the module writes them.

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------------------------------------------------
# Strategies and helpers.


@st.composite
def human_labels(draw: st.DrawFn, max_items: int = 12, max_raters: int = 5) -> tuple[np.ndarray, ...]:
    """(item, rater, value, k): each item gets ratings from a random subset of raters, at most one each."""
    k = draw(st.integers(2, 4))
    n_raters = draw(st.integers(1, max_raters))
    n_items = draw(st.integers(0, max_items))
    item, rater, value = [], [], []
    for i in range(n_items):
        for r in draw(st.lists(st.integers(0, n_raters - 1), unique=True, max_size=n_raters)):
            item.append(i)
            rater.append(r)
            value.append(draw(st.integers(0, k - 1)))
    return (*(np.array(x, dtype=np.int64) for x in (item, rater, value)), k)


def aligned_pairs(k: int, min_size: int = 0, max_size: int = 60) -> st.SearchStrategy[tuple[np.ndarray, np.ndarray]]:
    return st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)), min_size=min_size, max_size=max_size).map(
        lambda pairs: (np.array([p[0] for p in pairs], dtype=np.int64), np.array([p[1] for p in pairs], dtype=np.int64))
    )


def figures_in(obj: Any) -> list[Figure]:
    if isinstance(obj, Figure):
        return [obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [f for field in dataclasses.fields(obj) for f in figures_in(getattr(obj, field.name))]
    if isinstance(obj, list | tuple):
        return [f for x in obj for f in figures_in(x)]
    return []


def assert_no_nan_anywhere(obj: Any) -> None:
    """Walks every field, tuple, list and array of an output and fails on NaN or infinity."""
    if isinstance(obj, float | np.floating):
        assert math.isfinite(obj), obj
    elif isinstance(obj, np.ndarray):
        if obj.dtype.kind == "f":
            assert np.isfinite(obj).all(), obj
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for field in dataclasses.fields(obj):
            assert_no_nan_anywhere(getattr(obj, field.name))
    elif isinstance(obj, list | tuple):
        for x in obj:
            assert_no_nan_anywhere(x)


def assert_well_formed(figure: Figure) -> None:
    assert isinstance(figure, Figure)
    if figure.value is None:
        assert figure.reason and figure.reason.strip(), figure
        assert figure.ci_low is None and figure.ci_high is None
    else:
        assert figure.reason is None
        assert (figure.ci_low is None) == (figure.ci_high is None)
        if figure.ci_low is not None and figure.ci_high is not None:
            assert figure.ci_low <= figure.ci_high


def everything(item: np.ndarray, rater: np.ndarray, value: np.ndarray, k: int, n_boot: int = 40) -> list[Any]:
    """Every public computation on one label set (judge reports use rater 0 as 'human' and rater 1 as 'judge')."""
    boot = {"n_boot": n_boot, "seed": 3}
    a, b = rater_columns(item, rater, value, 0, 1)
    a3, b3 = np.minimum(a, 2), np.minimum(b, 2)
    return [
        ag.percent_agreement(item, rater, value, k, **boot),
        ag.fleiss_kappa(item, rater, value, k, **boot),
        ag.krippendorff_alpha_nominal(item, rater, value, k, **boot),
        ag.pairwise_cohen_kappas(item, rater, value, k, min_shared=2, **boot),
        ag.consensus(item, value, k),
        ag.cohen_kappa(a, b, k, **boot),
        ag.binary_judge_report(a % 2, b % 2, **boot),
        ag.pairwise_judge_report(a3, b3, **boot),
        ag.position_consistency(a3, b3, **boot),
    ]


def rater_columns(
    item: np.ndarray, rater: np.ndarray, value: np.ndarray, i: int, j: int
) -> tuple[np.ndarray, np.ndarray]:
    """The labels of raters i and j on the items both rated, aligned by item."""
    by_i = {int(t): int(v) for t, r, v in zip(item, rater, value, strict=True) if r == i}
    by_j = {int(t): int(v) for t, r, v in zip(item, rater, value, strict=True) if r == j}
    shared = sorted(by_i.keys() & by_j.keys())
    return np.array([by_i[t] for t in shared], dtype=np.int64), np.array([by_j[t] for t in shared], dtype=np.int64)


def quietly(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Calls a reference implementation that warns (and returns NaN) where the figure is undefined."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# --------------------------------------------------------------------------------------------------------------------
# Against independent implementations.


@pytest.mark.slow
@SETTINGS
@given(st.integers(2, 4).flatmap(lambda k: st.tuples(st.just(k), aligned_pairs(k, min_size=1))))
def test_cohen_kappa_matches_sklearn_and_is_undefined_exactly_where_sklearn_gives_nan(case):
    k, (a, b) = case
    expected = quietly(cohen_kappa_score, a, b, labels=list(range(k)))
    got = ag.cohen_kappa(a, b, k, n_boot=0)
    assert got.n == a.size
    if math.isnan(expected):
        assert got.value is None and got.reason == "only one category present: κ is not defined"
    else:
        assert got.value == pytest.approx(expected, abs=1e-9)


@pytest.mark.slow
@SETTINGS
@given(aligned_pairs(2))
def test_the_binary_judge_report_matches_sklearn_figure_by_figure(case):
    human, judge = case
    report = ag.binary_judge_report(human, judge, n_boot=0)
    assert report.n == human.size
    if human.size == 0:
        assert all(f.value is None for f in figures_in(report))
        return
    assert report.confusion == tuple(map(tuple, confusion_matrix(human, judge, labels=[FAIL, PASS]).tolist()))
    expected = {
        "accuracy": float(np.mean(human == judge)),
        "kappa": quietly(cohen_kappa_score, human, judge, labels=[FAIL, PASS]),
        "tpr": recall_score(human, judge, pos_label=PASS, labels=[FAIL, PASS], zero_division=np.nan),
        "tnr": recall_score(human, judge, pos_label=FAIL, labels=[FAIL, PASS], zero_division=np.nan),
        "fail_precision": precision_score(human, judge, pos_label=FAIL, labels=[FAIL, PASS], zero_division=np.nan),
        "fail_recall": recall_score(human, judge, pos_label=FAIL, labels=[FAIL, PASS], zero_division=np.nan),
    }
    for name, want in expected.items():
        figure = getattr(report, name)
        if math.isnan(want):
            assert figure.value is None and figure.reason, name
        else:
            assert figure.value == pytest.approx(want, abs=1e-9), name


def gwet_fleiss_kappa(item: np.ndarray, value: np.ndarray, k: int) -> float:
    """Fleiss' κ for a varying number of ratings per item, written out from Gwet's Handbook of Inter-Rater
    Reliability (4th ed.) as his irrCAC package computes it, over the items with two or more ratings:
    p_a = mean_i Σ_c r_ic(r_ic − 1) / (r_i(r_i − 1)), π_c = mean_i r_ic / r_i, p_e = Σ_c π_c². NaN where undefined."""
    per_item: dict[int, Counter] = {}
    for i, v in zip(item.tolist(), value.tolist(), strict=True):
        per_item.setdefault(i, Counter())[v] += 1
    rows = [[counts[c] for c in range(k)] for counts in per_item.values() if sum(counts.values()) >= 2]
    if not rows:
        return math.nan
    p_a = sum(sum(x * (x - 1) for x in row) / (sum(row) * (sum(row) - 1)) for row in rows) / len(rows)
    pi = [sum(row[c] / sum(row) for row in rows) / len(rows) for c in range(k)]
    p_e = sum(p * p for p in pi)
    return math.nan if p_e == 1 else (p_a - p_e) / (1 - p_e)


@SETTINGS
@given(human_labels())
def test_fleiss_kappa_uses_every_item_with_two_or_more_ratings_as_gwet_generalises_it(case):
    item, rater, value, k = case
    per_item = Counter(item.tolist())
    got = ag.fleiss_kappa(item, rater, value, k, n_boot=0)
    expected = gwet_fleiss_kappa(item, value, k)
    assert got.n == sum(1 for m in per_item.values() if m >= 2)
    if got.n == 0:
        assert got.value is None and got.reason == "no items with two or more ratings: κ is not defined"
    elif math.isnan(expected):
        assert got.value is None and got.reason == "only one category present: κ is not defined"
    else:
        assert got.value == pytest.approx(expected, abs=1e-9)


@SETTINGS
@given(human_labels())
def test_fleiss_kappa_matches_statsmodels_where_every_item_has_the_same_number_of_ratings(case):
    item, rater, value, k = case
    per_item = Counter(item.tolist())
    for m in sorted({m for m in per_item.values() if m >= 2}):
        rows = np.array([value[item == i] for i in sorted(per_item) if per_item[i] == m])
        table, _ = aggregate_raters(rows, n_cat=k)
        expected = quietly(statsmodels_fleiss_kappa, table, method="fleiss")
        # An explicit m is Fleiss' original κ on the items with exactly m ratings...
        only_m = ag.fleiss_kappa(item, rater, value, k, m=m, n_boot=0)
        # ... and the generalised κ on those items alone is the same number.
        keep = np.isin(item, [i for i in per_item if per_item[i] == m])
        alone = ag.fleiss_kappa(item[keep], rater[keep], value[keep], k, n_boot=0)
        assert only_m.n == alone.n == rows.shape[0]
        if math.isnan(expected):
            assert only_m.value is None and alone.value is None
        else:
            assert only_m.value == pytest.approx(expected, abs=1e-9)
            assert alone.value == pytest.approx(expected, abs=1e-9)


def test_fleiss_kappa_over_items_with_two_and_three_ratings_on_a_hand_worked_example():
    # Item 0: pass, pass, fail; item 1: pass, pass; item 2: fail, fail; item 3: pass (one rating: left out).
    item = np.array([0, 0, 0, 1, 1, 2, 2, 3])
    rater = np.array([0, 1, 2, 0, 1, 1, 2, 0])
    value = np.array([PASS, PASS, FAIL, PASS, PASS, FAIL, FAIL, PASS])
    # p_a = (2/6 + 1 + 1) / 3 = 7/9; π_pass = (2/3 + 1 + 0) / 3 = 5/9, π_fail = 4/9; p_e = 41/81.
    # κ = (7/9 − 41/81) / (1 − 41/81) = (22/81) / (40/81) = 0.55.
    got = ag.fleiss_kappa(item, rater, value, 2, n_boot=0)
    assert got.value == pytest.approx(0.55) and got.n == 3
    # The items with exactly 2 ratings alone agree perfectly.
    assert ag.fleiss_kappa(item, rater, value, 2, m=2, n_boot=0).value == pytest.approx(1.0)


@SETTINGS
@given(human_labels())
def test_krippendorff_alpha_matches_the_krippendorff_package_with_missing_ratings(case):
    item, rater, value, k = case
    got = ag.krippendorff_alpha_nominal(item, rater, value, k, n_boot=0)
    if item.size == 0 or max(Counter(item.tolist()).values()) < 2:
        assert got.value is None and got.reason == "no items with two or more ratings: α is not defined"
        return
    reliability = np.full((int(rater.max()) + 1, int(item.max()) + 1), np.nan)
    reliability[rater, item] = value
    expected = quietly(
        krippendorff.alpha, reliability_data=reliability, level_of_measurement="nominal", value_domain=list(range(k))
    )
    assert got.n == sum(1 for m in Counter(item.tolist()).values() if m >= 2)
    if math.isnan(expected):
        assert got.value is None and got.reason == "only one category present: α is not defined"
    else:
        assert got.value == pytest.approx(expected, abs=1e-9)


@SETTINGS
@given(human_labels(max_items=25))
def test_pairwise_kappas_cover_every_overlapping_pair_and_match_sklearn_pair_by_pair(case):
    item, rater, value, k = case
    got = ag.pairwise_cohen_kappas(item, rater, value, k, min_shared=3, n_boot=0)
    raters = sorted(set(rater.tolist()))
    expected_pairs = []
    for i, j in itertools.combinations(raters, 2):
        a, b = rater_columns(item, rater, value, i, j)
        if a.size:
            expected_pairs.append((i, j, a, b))
    assert [(p.rater_i, p.rater_j, p.n) for p in got] == [(i, j, a.size) for i, j, a, _ in expected_pairs]
    for pair, (_, _, a, b) in zip(got, expected_pairs, strict=True):
        assert pair.kappa.n == a.size
        if a.size < 3:
            assert pair.kappa.value is None and pair.kappa.reason and "fewer than 3" in pair.kappa.reason
            continue
        expected = quietly(cohen_kappa_score, a, b, labels=list(range(k)))
        if math.isnan(expected):
            assert pair.kappa.value is None and pair.kappa.reason
        else:
            assert pair.kappa.value == pytest.approx(expected, abs=1e-9)


@SETTINGS
@given(human_labels())
def test_percent_agreement_is_the_share_of_agreeing_rating_pairs_within_items(case):
    item, rater, value, k = case
    agree = total = 0
    used = 0
    for i in set(item.tolist()):
        ratings = value[item == i].tolist()
        if len(ratings) < 2:
            continue
        used += 1
        for x, y in itertools.combinations(ratings, 2):
            agree += x == y
            total += 1
    got = ag.percent_agreement(item, rater, value, k, n_boot=0)
    assert got.n == used
    if total == 0:
        assert got.value is None and got.reason
    else:
        assert got.value == pytest.approx(agree / total, abs=1e-12)


# --------------------------------------------------------------------------------------------------------------------
# Never NaN, and every figure defined or refused with a reason.


@settings(max_examples=80, deadline=None)
@given(human_labels(max_items=8, max_raters=4))
def test_no_output_anywhere_is_nan_and_every_figure_is_defined_or_gives_a_reason(case):
    item, rater, value, k = case
    outputs = everything(item, rater, value, k)
    assert_no_nan_anywhere(outputs)
    for figure in figures_in(outputs):
        assert_well_formed(figure)


@SETTINGS
@given(
    p=st.floats(0, 1),
    tpr=st.floats(0, 1),
    tnr=st.floats(0, 1),
    n_unlabeled=st.integers(0, 200),
    n_pos=st.integers(0, 50),
    n_neg=st.integers(0, 50),
)
def test_the_corrected_pass_rate_is_never_nan_and_stays_within_zero_and_one(p, tpr, tnr, n_unlabeled, n_pos, n_neg):
    figure = ag.corrected_pass_rate(p, n_unlabeled, tpr, tnr, n_pos, n_neg, n_boot=50)
    assert_well_formed(figure)
    assert_no_nan_anywhere(figure)
    for number in (figure.value, figure.ci_low, figure.ci_high):
        assert number is None or 0.0 <= number <= 1.0


def test_a_figure_refuses_to_hold_nan_or_a_value_without_its_reason_rules():
    with pytest.raises(ValueError):
        Figure(value=math.nan, ci_low=None, ci_high=None, n=3, reason=None)
    with pytest.raises(ValueError):
        Figure(value=None, ci_low=None, ci_high=None, n=0, reason=None)
    with pytest.raises(ValueError):
        Figure(value=0.5, ci_low=0.1, ci_high=None, n=3, reason=None)


EMPTY = np.array([], dtype=np.int64)


def test_empty_input_gives_no_figures_only_reasons():
    outputs = everything(EMPTY, EMPTY, EMPTY, 2)
    assert_no_nan_anywhere(outputs)
    figures = figures_in(outputs)
    assert figures and all(f.value is None and f.reason for f in figures)
    assert (
        ag.percent_agreement(EMPTY, EMPTY, EMPTY, 2).reason
        == "no items with two or more ratings: agreement is not defined"
    )
    assert ag.cohen_kappa(EMPTY, EMPTY, 2).reason == "no items rated by both: κ is not defined"
    assert ag.binary_judge_report(EMPTY, EMPTY).accuracy.reason == "no items: accuracy is not defined"
    assert ag.pairwise_cohen_kappas(EMPTY, EMPTY, EMPTY, 2) == []
    assert ag.consensus(EMPTY, EMPTY, 2).label.size == 0


def test_one_category_only_leaves_kappa_and_alpha_undefined_but_agreement_at_one():
    item = np.repeat(np.arange(30), 3)
    rater = np.tile(np.arange(3), 30)
    value = np.full(90, PASS)
    assert ag.percent_agreement(item, rater, value, 2).value == 1.0
    for figure in (
        ag.fleiss_kappa(item, rater, value, 2),
        ag.cohen_kappa(value[:30], value[30:60], 2),
        *(p.kappa for p in ag.pairwise_cohen_kappas(item, rater, value, 2)),
    ):
        assert figure.value is None and figure.reason == "only one category present: κ is not defined"
    alpha = ag.krippendorff_alpha_nominal(item, rater, value, 2)
    assert alpha.value is None and alpha.reason == "only one category present: α is not defined"
    report = ag.binary_judge_report(value, value)
    assert report.tnr.value is None and report.tnr.reason == "no items the humans failed: TNR is not defined"
    assert report.fail_precision.reason == "the judge failed no item: precision of fail is not defined"
    assert report.tpr.value == 1.0 and report.accuracy.value == 1.0


def test_when_everyone_agrees_the_figures_are_one_with_no_false_zero_width_interval():
    item = np.repeat(np.arange(40), 2)
    rater = np.tile([0, 1], 40)
    value = np.repeat(np.arange(40) % 2, 2)
    for figure in (
        ag.percent_agreement(item, rater, value, 2),
        ag.fleiss_kappa(item, rater, value, 2),
        ag.krippendorff_alpha_nominal(item, rater, value, 2),
        ag.pairwise_cohen_kappas(item, rater, value, 2)[0].kappa,
    ):
        assert figure.value == pytest.approx(1.0)
        # Every resample also agrees perfectly: [1, 1] would claim certainty that 40 items cannot give.
        assert figure.ci_low is None and figure.ci_high is None


def test_a_perfect_judge_gets_the_clopper_pearson_interval_not_one_to_one():
    report = ag.binary_judge_report(np.array([PASS] * 12 + [FAIL] * 8), np.array([PASS] * 12 + [FAIL] * 8))
    assert report.accuracy.value == 1.0
    # Clopper–Pearson for n of n: the lower bound p solves p^n = 0.025, so p = 0.025^(1/n) (0.832 for 20).
    assert report.accuracy.ci_low == pytest.approx(0.025 ** (1 / 20)) and report.accuracy.ci_high == 1.0
    assert report.tnr.ci_low == pytest.approx(0.025 ** (1 / 8))
    wrong = ag.binary_judge_report(np.array([PASS] * 10), np.array([FAIL] * 10))
    assert wrong.accuracy.value == 0.0 and wrong.accuracy.ci_low == 0.0
    assert wrong.accuracy.ci_high == pytest.approx(1 - 0.025 ** (1 / 10))


def test_one_annotator_gives_no_human_agreement_figures():
    item, rater, value = np.arange(10), np.zeros(10, dtype=np.int64), np.arange(10) % 2
    for figure in (
        ag.percent_agreement(item, rater, value, 2),
        ag.fleiss_kappa(item, rater, value, 2),
        ag.krippendorff_alpha_nominal(item, rater, value, 2),
    ):
        assert figure.value is None and figure.reason and figure.reason.startswith("no items with two or more ratings")
    assert ag.pairwise_cohen_kappas(item, rater, value, 2) == []
    assert (ag.consensus(item, value, 2).label == value).all()


def test_a_single_item_gives_figures_without_intervals():
    item, rater, value = np.zeros(3, dtype=np.int64), np.arange(3), np.array([PASS, PASS, FAIL])
    agreement = ag.percent_agreement(item, rater, value, 2)
    assert agreement.value == pytest.approx(1 / 3) and agreement.n == 1 and agreement.ci_low is None
    # Hand-computed: P̄ = (2·1 + 0) / (3·2) = 1/3, P_e = (1/3)² + (2/3)² = 5/9, κ = (1/3 − 5/9) / (4/9) = −1/2.
    assert ag.fleiss_kappa(item, rater, value, 2).value == pytest.approx(-0.5)
    # o[pass, pass] = 2·1/2 = 1, n = 3, Σ n_c² = 5: α = 1 − 2·(3 − 1) / (9 − 5) = 0.
    assert ag.krippendorff_alpha_nominal(item, rater, value, 2).value == pytest.approx(0.0)
    one = ag.cohen_kappa([PASS], [FAIL], 2)
    assert one.value == 0.0 and one.ci_low is None


def test_bad_input_is_refused_rather_than_miscounted():
    with pytest.raises(ValueError, match="more than once"):
        ag.krippendorff_alpha_nominal([0, 0, 1], [3, 3, 4], [0, 1, 1], 2)
    with pytest.raises(ValueError, match="outside"):
        ag.cohen_kappa([0, 2], [0, 1], 2)
    with pytest.raises(ValueError, match="aligned"):
        ag.binary_judge_report([0, 1], [0])
    with pytest.raises(ValueError, match="integer codes"):
        ag.cohen_kappa(np.array([0.0, 1.0]), np.array([0.0, 1.0]), 2)
    with pytest.raises(ValueError, match="negative"):
        ag.percent_agreement([-1, 0], [0, 1], [0, 0], 2)


# --------------------------------------------------------------------------------------------------------------------
# Bootstrap intervals.


def typical_labels(seed: int = 7, n_items: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three of six raters per item; each rater copies the item's true label with probability 0.8."""
    rng = np.random.default_rng(seed)
    raters = np.argsort(rng.random((n_items, 6)), axis=1)[:, :3]
    item = np.repeat(np.arange(n_items), 3)
    truth = (rng.random(n_items) < 0.65).astype(np.int64)
    value = np.where(rng.random(item.size) < 0.8, truth[item], 1 - truth[item])
    return item, raters.reshape(-1), value


def test_the_same_seed_gives_identical_intervals_and_another_seed_different_ones():
    item, rater, value = typical_labels()
    for fn in (ag.percent_agreement, ag.fleiss_kappa, ag.krippendorff_alpha_nominal):
        assert fn(item, rater, value, 2, seed=11) == fn(item, rater, value, 2, seed=11)
        assert fn(item, rater, value, 2, seed=11).ci_low != fn(item, rater, value, 2, seed=12).ci_low
    human, judge = value[::3], value[1::3]
    assert ag.binary_judge_report(human, judge, seed=5) == ag.binary_judge_report(human, judge, seed=5)
    assert ag.binary_judge_report(human, judge, seed=5) != ag.binary_judge_report(human, judge, seed=6)
    kappas = ag.pairwise_cohen_kappas(item, rater, value, 2, seed=2)
    assert kappas == ag.pairwise_cohen_kappas(item, rater, value, 2, seed=2)
    # A pair's interval depends on its own labels and the seed, not on the other raters.
    only_0_1 = np.isin(rater, [0, 1])
    alone = ag.pairwise_cohen_kappas(item[only_0_1], rater[only_0_1], value[only_0_1], 2, seed=2)
    assert alone[0] == next(p for p in kappas if (p.rater_i, p.rater_j) == (0, 1))
    assert ag.corrected_pass_rate(0.6, 300, 0.9, 0.8, 80, 60, seed=4) == ag.corrected_pass_rate(
        0.6, 300, 0.9, 0.8, 80, 60, seed=4
    )


def test_on_typical_data_every_interval_exists_and_contains_its_estimate():
    item, rater, value = typical_labels()
    human, judge = value[::3], value[1::3]
    verdicts = np.random.default_rng(1).integers(0, 3, size=(2, 300))
    verdicts[1, :200] = verdicts[0, :200]
    outputs = [
        ag.percent_agreement(item, rater, value, 2),
        ag.fleiss_kappa(item, rater, value, 2),
        ag.krippendorff_alpha_nominal(item, rater, value, 2),
        ag.pairwise_cohen_kappas(item, rater, value, 2),
        ag.cohen_kappa(human, judge, 2),
        ag.binary_judge_report(human, judge),
        ag.pairwise_judge_report(verdicts[0], verdicts[1]),
        ag.position_consistency(verdicts[0], verdicts[1]),
        ag.corrected_pass_rate(0.6, 300, 0.9, 0.8, 80, 60),
    ]
    figures = figures_in(outputs)
    assert len(figures) > 20
    for figure in figures:
        assert figure.value is not None and figure.ci_low is not None and figure.ci_high is not None, figure
        assert figure.ci_low < figure.value < figure.ci_high, figure
        assert figure.ci_high - figure.ci_low < 0.5, figure


def test_resampling_pattern_counts_gives_the_same_interval_as_resampling_item_indices():
    """The fast bootstrap draws how many items of each kind a resample holds; with its own draws it must agree with
    scipy's BCa, which draws items by index."""
    item, rater, value = typical_labels(seed=3, n_items=150)
    counts = np.zeros((150, 2), dtype=np.int64)
    np.add.at(counts, (item, value), 1)

    def alpha(indices: np.ndarray, axis: int = -1) -> np.ndarray:
        c = counts[indices]
        n_c = c.sum(axis=-2)
        n = n_c.sum(axis=-1)
        observed = ((c**2).sum(axis=-1) - 3).sum(axis=-1) / 2
        return 1 - (n - 1) * (n - observed) / (n * n - (n_c**2).sum(axis=-1))

    naive = scipy_stats.bootstrap(
        (np.arange(150),), alpha, n_resamples=4000, method="BCa", rng=np.random.default_rng(99), vectorized=True
    ).confidence_interval
    fast = ag.krippendorff_alpha_nominal(item, rater, value, 2, n_boot=4000, seed=1)
    assert fast.ci_low == pytest.approx(naive.low, abs=0.015)
    assert fast.ci_high == pytest.approx(naive.high, abs=0.015)


def test_a_rate_over_few_items_gets_its_exact_interval_given_how_many_items_it_counts():
    # Two human "fail"s in 30 items: TNR = 1/2 is a proportion of 2 items, and its interval says how little that is.
    human = np.array([FAIL, FAIL] + [PASS] * 28)
    judge = np.array([FAIL, PASS] + [PASS] * 24 + [FAIL] * 4)
    report = ag.binary_judge_report(human, judge)
    assert (report.tnr.value, report.tnr.n) == (0.5, 2)
    assert (report.tnr.ci_low, report.tnr.ci_high) == pytest.approx(proportion_confint(1, 2, method="beta"))
    assert report.fail_recall == report.tnr
    assert report.tpr.value == pytest.approx(24 / 28) and report.tpr.n == 28
    single = ag.binary_judge_report(np.array([FAIL] + [PASS] * 29), np.array([FAIL] + [PASS] * 29))
    assert (single.tnr.value, single.tnr.n) == (1.0, 1)
    # statsmodels leaves NaN for the bound past n of n; the exact bound there is 1.
    assert (single.tnr.ci_low, single.tnr.ci_high) == pytest.approx((0.025, 1.0))


def test_no_bootstrap_interval_is_given_when_too_many_resamples_lack_what_the_figure_needs():
    # One item holds the only "fail" ratings: about 37% of resamples lack it and κ is undefined on them, and so is
    # the jackknife sample without it. κ = 1 is reported without a made-up interval.
    item = np.repeat(np.arange(30), 2)
    rater = np.tile([0, 1], 30)
    value = np.array([FAIL, FAIL] + [PASS] * 58)
    for figure in (
        ag.fleiss_kappa(item, rater, value, 2),
        ag.krippendorff_alpha_nominal(item, rater, value, 2),
        ag.cohen_kappa(value[::2], value[1::2], 2),
    ):
        assert figure.value == pytest.approx(1.0)
        assert figure.ci_low is None and figure.ci_high is None


def statsmodels_exact(successes: int, trials: int) -> tuple[float, float]:
    low, high = proportion_confint(successes, trials, alpha=0.05, method="beta")
    # statsmodels gives NaN where the bound is exactly 0 (no successes) or 1 (all).
    return (0.0 if successes == 0 else low), (1.0 if successes == trials else high)


@SETTINGS
@given(st.integers(0, 60), st.integers(1, 60))
def test_every_rate_of_a_judge_report_has_the_clopper_pearson_interval_statsmodels_gives(successes, trials):
    successes = min(successes, trials)
    human = np.full(trials, PASS)
    judge = np.array([PASS] * successes + [FAIL] * (trials - successes))
    report = ag.binary_judge_report(human, judge, n_boot=50)
    expected = statsmodels_exact(successes, trials)
    for figure in (report.tpr, report.accuracy):
        assert (figure.ci_low, figure.ci_high) == pytest.approx(expected, abs=1e-12)
    assert proportions.clopper_pearson_interval(successes, trials) == pytest.approx(expected, abs=1e-12)
    # Wilson's interval stays for the production estimate's human-only rate (judges.estimates).
    assert proportions.wilson_interval(successes, trials) == pytest.approx(
        proportion_confint(successes, trials, alpha=0.05, method="wilson"), abs=1e-12
    )
    pairwise = ag.pairwise_judge_report(np.full(trials, A), np.array([A] * successes + [B] * (trials - successes)))
    assert (pairwise.agreement.ci_low, pairwise.agreement.ci_high) == pytest.approx(expected, abs=1e-12)
    consistency = ag.position_consistency(np.full(trials, A), np.array([A] * successes + [TIE] * (trials - successes)))
    assert (consistency.ci_low, consistency.ci_high) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("successes", "trials"), [(0, 1), (1, 3), (4, 5), (37, 300), (5_000, 12_345), (999, 1_000_000)]
)
def test_the_exact_interval_matches_statsmodels_at_large_counts_too(successes, trials):
    assert proportions.clopper_pearson_interval(successes, trials) == pytest.approx(
        statsmodels_exact(successes, trials), rel=1e-7, abs=1e-11
    )


def test_the_exact_interval_refuses_impossible_counts():
    for successes, trials in ((1, 0), (-1, 3), (4, 3)):
        with pytest.raises(ValueError, match="successes"):
            proportions.clopper_pearson_interval(successes, trials)


def test_a_judges_kappa_interval_is_the_wald_interval_statsmodels_gives_at_large_n():
    # The Dirichlet posterior of the shares is asymptotically normal around the observed table, so at thousands of
    # items its κ interval approaches the asymptotic (Fleiss, Cohen & Everitt 1969) interval, computed independently.
    from statsmodels.stats.inter_rater import cohens_kappa

    rng = np.random.default_rng(8)
    human = (rng.random(4000) < 0.7).astype(np.int64)
    judge = np.where(rng.random(4000) < 0.85, human, 1 - human)
    table = confusion_matrix(human, judge, labels=[FAIL, PASS])
    low, high = ag._kappa_posterior_interval(table, n_boot=20_000, seed=3)
    expected = cohens_kappa(table)
    assert ag.binary_judge_report(human, judge, n_boot=0).kappa.value == pytest.approx(expected.kappa, abs=1e-12)
    assert low == pytest.approx(expected.kappa_low, abs=0.004)
    assert high == pytest.approx(expected.kappa_upp, abs=0.004)


def test_a_judge_agreeing_on_every_item_still_gets_a_kappa_interval_below_one():
    # 26 passes and 4 fails, all agreed: every bootstrap resample gives κ = 1 (or none), which said nothing. The
    # posterior gives the unseen disagreements some share. Its lower bound: κ of a table where 1 of the 30 items
    # disagreed is 0.86, so 30 items cannot rule out κ well below that.
    human = np.array([PASS] * 26 + [FAIL] * 4)
    report = ag.binary_judge_report(human, human, seed=1)
    assert report.kappa.value == 1.0
    assert report.kappa.ci_low is not None and report.kappa.ci_high is not None
    assert 0.3 < report.kappa.ci_low < 0.86 < report.kappa.ci_high < 1.0
    pairwise = ag.pairwise_judge_report(
        np.array([A] * 12 + [B] * 12 + [TIE] * 6), np.array([A] * 12 + [B] * 12 + [TIE] * 6)
    )
    assert pairwise.kappa.ci_low is not None and pairwise.kappa.ci_low < 0.95 < pairwise.kappa.ci_high <= 1.0


def test_a_judges_kappa_draws_are_the_dirichlet_posterior_of_the_table():
    # Independent draws of the same posterior (normalised Gamma variates, 200,000 of them) give the same quantiles
    # up to Monte Carlo error.
    table = np.array([[3, 2], [4, 21]])
    got = ag._kappa_posterior_interval(table, n_boot=50_000, seed=4)
    gamma = np.random.default_rng(99).gamma(table.reshape(-1) + 0.5, size=(200_000, 4))
    p = (gamma / gamma.sum(axis=1, keepdims=True)).reshape(-1, 2, 2)
    observed = p[:, 0, 0] + p[:, 1, 1]
    chance = (p.sum(axis=2) * p.sum(axis=1)).sum(axis=1)
    low, high = np.quantile((observed - chance) / (1 - chance), [0.025, 0.975])
    assert got == pytest.approx((low, high), abs=0.01)


def scipy_bca_on_the_same_resamples(
    monkeypatch: pytest.MonkeyPatch, pattern: np.ndarray, n_patterns: int, statistic: Any, figure: Any
) -> tuple[tuple[float, float], Figure]:
    """scipy.stats.bootstrap's BCa interval (which resamples item indices and jackknifes item by item) and ours,
    fed the very same resamples: scipy's drawn indices, counted per pattern in our order (`pattern[i]` is item i's),
    are what our `_resample` returns. `statistic(indices)` computes the figure on the items at `indices` (last axis)."""
    n = pattern.size
    drawn: list[np.ndarray] = []

    def recording(indices: np.ndarray, axis: int = -1) -> np.ndarray:
        if indices.ndim == 2 and indices.shape[-1] == n:
            drawn.append(indices)
        return statistic(indices)

    result = scipy_stats.bootstrap(
        (np.arange(n),), recording, n_resamples=2000, method="BCa", rng=np.random.default_rng(5), vectorized=True
    )
    counts = np.stack([np.bincount(pattern[row], minlength=n_patterns) for row in np.concatenate(drawn)])
    assert counts.shape == (2000, n_patterns)

    def same_resamples(freq: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
        assert (freq == np.bincount(pattern, minlength=n_patterns)).all()
        return np.vstack([freq[None, :], counts])

    monkeypatch.setattr(ag, "_resample", same_resamples)
    return (float(result.confidence_interval.low), float(result.confidence_interval.high)), figure()


def mixed_design(seed: int, n_items: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Items with 2 or 3 of 5 raters, each copying the item's true label with probability 0.8; and each item's
    category counts."""
    rng = np.random.default_rng(seed)
    sizes = rng.choice([2, 3], size=n_items)
    item = np.repeat(np.arange(n_items), sizes)
    rater = np.concatenate([rng.permutation(5)[:m] for m in sizes])
    truth = rng.random(n_items) < 0.6
    value = np.where(rng.random(item.size) < 0.8, truth[item], ~truth[item]).astype(np.int64)
    counts = np.zeros((n_items, 2), dtype=np.int64)
    np.add.at(counts, (item, value), 1)
    return item, rater, value, counts


def our_patterns(counts: np.ndarray) -> tuple[np.ndarray, int]:
    """Each item's pattern number in the order the module keeps its distinct rows."""
    distinct, _ = ag._patterns(counts)
    pattern = np.array([np.flatnonzero((distinct == row).all(axis=1))[0] for row in counts])
    return pattern, distinct.shape[0]


@pytest.mark.parametrize("seed", [1, 2])
def test_the_bca_intervals_of_kappa_and_alpha_are_scipys_on_the_same_resamples(monkeypatch, seed):
    item, rater, value, counts = mixed_design(seed)
    pattern, n_patterns = our_patterns(counts)

    def fleiss(indices: np.ndarray) -> np.ndarray:
        rows = counts[indices].astype(float)  # (..., items, k)
        r = rows.sum(axis=-1)
        p_a = ((rows * (rows - 1)).sum(axis=-1) / (r * (r - 1))).mean(axis=-1)
        p_e = ((rows / r[..., None]).mean(axis=-2) ** 2).sum(axis=-1)
        return (p_a - p_e) / (1 - p_e)

    def alpha(indices: np.ndarray) -> np.ndarray:
        rows = counts[indices].astype(float)
        r = rows.sum(axis=-1)
        n_c = rows.sum(axis=-2)
        n = n_c.sum(axis=-1)
        agree = ((rows * (rows - 1)).sum(axis=-1) / (r - 1)).sum(axis=-1)
        return 1 - (n - 1) * (n - agree) / (n * n - (n_c**2).sum(axis=-1))

    for statistic, ours in (
        (fleiss, lambda: ag.fleiss_kappa(item, rater, value, 2, n_boot=2000)),
        (alpha, lambda: ag.krippendorff_alpha_nominal(item, rater, value, 2, n_boot=2000)),
    ):
        expected, got = scipy_bca_on_the_same_resamples(monkeypatch, pattern, n_patterns, statistic, ours)
        assert got.value == pytest.approx(float(statistic(np.arange(counts.shape[0]))))
        assert (got.ci_low, got.ci_high) == pytest.approx(expected, abs=1e-9)
        monkeypatch.undo()

    rng = np.random.default_rng(seed)
    human = (rng.random(40) < 0.6).astype(np.int64)
    judge = np.where(rng.random(40) < 0.8, human, 1 - human)

    def cohen(indices: np.ndarray) -> np.ndarray:
        h, j = human[indices], judge[indices]
        p_o = (h == j).mean(axis=-1)
        p_e = h.mean(axis=-1) * j.mean(axis=-1) + (1 - h.mean(axis=-1)) * (1 - j.mean(axis=-1))
        return (p_o - p_e) / (1 - p_e)

    expected, got = scipy_bca_on_the_same_resamples(
        monkeypatch, human * 2 + judge, 4, cohen, lambda: ag.binary_judge_report(human, judge, n_boot=2000).kappa
    )
    assert (got.ci_low, got.ci_high) == pytest.approx(expected, abs=1e-9)


def test_past_the_pole_of_the_bca_formula_the_bound_is_the_most_extreme_resample():
    # |a| ≤ 1/6 always, so a·(z₀ − 1.96) ≥ 1 needs z₀ ≤ −4.04: one resample of 100,001 at the estimate, the rest above
    # it (z₀ = Φ⁻¹(1/200,002) = −4.42), and one item whose removal moves the figure up a lot (a → −1/6).
    boot = np.r_[0.5, np.linspace(0.6, 1.0, 100_000)]
    jack = np.r_[np.zeros(9_999), 1.0]
    d = jack.mean() - jack
    accel = (d**3).sum() / (6 * (d**2).sum() ** 1.5)
    z0 = NormalDist().inv_cdf(1 / 200_002)
    assert accel * (z0 - 1.959963984540054) >= 1
    # The formula's raw level would wrap round to the upper tail; the bound is the lowest resample instead.
    assert ag._bca_bounds(0.5, boot, jack, np.ones_like(jack)) == (
        0.0,
        pytest.approx(NormalDist().cdf(z0 + (z0 + 1.959963984540054) / (1 - accel * (z0 + 1.959963984540054)))),
    )


def test_turning_resampling_off_gives_values_without_intervals():
    item, rater, value = typical_labels()
    figures = figures_in(
        [
            ag.krippendorff_alpha_nominal(item, rater, value, 2, n_boot=0),
            ag.binary_judge_report(value[::3], value[1::3], n_boot=0),
            ag.corrected_pass_rate(0.6, 300, 0.9, 0.8, 80, 60, n_boot=0),
        ]
    )
    assert all(f.value is not None and f.ci_low is None for f in figures)


# --------------------------------------------------------------------------------------------------------------------
# Hand-computed examples.


def test_the_binary_judge_report_on_a_hand_worked_example():
    # Confusion, rows = human, columns = judge, order [fail, pass]: [[3, 1], [2, 4]].
    human = np.array([FAIL] * 4 + [PASS] * 6)
    judge = np.array([FAIL, FAIL, FAIL, PASS, FAIL, FAIL, PASS, PASS, PASS, PASS])
    report = ag.binary_judge_report(human, judge)
    assert report.n == 10
    assert report.confusion == ((3, 1), (2, 4))
    assert report.accuracy.value == pytest.approx(7 / 10)
    # p_o = 0.7; marginals human (4, 6), judge (5, 5): p_e = (20 + 30) / 100 = 0.5; κ = 0.2 / 0.5.
    assert report.kappa.value == pytest.approx(0.4)
    assert (report.tpr.value, report.tpr.n) == (pytest.approx(4 / 6), 6)
    assert (report.tnr.value, report.tnr.n) == (pytest.approx(3 / 4), 4)
    assert (report.fail_precision.value, report.fail_precision.n) == (pytest.approx(3 / 5), 5)
    assert report.fail_recall == report.tnr


def test_the_pairwise_judge_report_on_a_hand_worked_example():
    human = np.array([A, A, B, B, TIE, TIE, A, B])
    judge = np.array([A, B, B, TIE, TIE, A, A, B])
    report = ag.pairwise_judge_report(human, judge)
    assert report.confusion == ((2, 1, 0), (0, 2, 1), (1, 0, 1))
    assert report.agreement.value == pytest.approx(5 / 8)
    # Items 3, 4 and 5 have a tie on either side; of the other five, the judge agrees on four.
    assert (report.agreement_without_ties.value, report.agreement_without_ties.n) == (pytest.approx(4 / 5), 5)
    # Marginals (3, 3, 2) on both sides: p_e = 22/64, p_o = 40/64, κ = 18/42.
    assert report.kappa.value == pytest.approx(3 / 7)


def test_position_consistency_on_a_hand_worked_example():
    figure = ag.position_consistency([A, B, TIE, A], [A, A, TIE, A])
    assert (figure.value, figure.n) == (pytest.approx(3 / 4), 4)


def test_the_rogan_gladen_correction_on_a_hand_worked_example():
    figure = ag.corrected_pass_rate(0.6, 500, 0.9, 0.8, 200, 200)
    assert figure.value == pytest.approx(0.4 / 0.7, abs=1e-12)
    assert figure.ci_low is not None and figure.ci_high is not None
    assert figure.ci_low < 0.4 / 0.7 < figure.ci_high
    # Below the judge's false-pass rate the corrected rate clips to zero rather than going negative.
    assert ag.corrected_pass_rate(0.1, 500, 0.9, 0.8, 200, 200).value == 0.0


@pytest.mark.parametrize(("tpr", "tnr"), [(0.5, 0.5), (0.3, 0.6), (0.0, 0.0)])
def test_a_judge_no_better_than_chance_gets_no_corrected_pass_rate(tpr, tnr):
    figure = ag.corrected_pass_rate(0.6, 500, tpr, tnr, 200, 200)
    assert figure.value is None
    assert figure.reason == "the judge is no better than chance (TPR + TNR ≤ 1): the pass rate cannot be corrected"


# --------------------------------------------------------------------------------------------------------------------
# Consensus.


def test_consensus_takes_a_strict_majority_and_flags_the_rest_for_adjudication():
    # item 0: pass pass fail; item 1: pass fail; item 2: a single fail; item 3: unrated; item 4: a b tie.
    item = np.array([0, 0, 0, 1, 1, 2, 4, 4, 4])
    value = np.array([PASS, PASS, FAIL, PASS, FAIL, FAIL, A, B, TIE])
    result = ag.consensus(item, value, 3)
    assert result.label.tolist() == [PASS, -1, FAIL, -1, -1]
    assert result.majority.tolist() == [PASS, -1, FAIL, -1, -1]
    assert result.margin.tolist() == [1, 0, 1, 0, 0]
    assert result.n_ratings.tolist() == [3, 2, 1, 0, 3]
    assert result.needs_adjudication.tolist() == [False, True, False, False, True]
    assert result.source.tolist() == [ag.Source.MAJORITY, ag.Source.NONE, ag.Source.MAJORITY, ag.Source.NONE, 0]


def test_a_higher_margin_sends_narrow_majorities_to_adjudication_but_keeps_the_majority_visible():
    item = np.array([0, 0, 0, 1, 1, 1])
    value = np.array([PASS, PASS, FAIL, PASS, PASS, PASS])
    result = ag.consensus(item, value, 2, min_margin=2)
    assert result.label.tolist() == [-1, PASS]
    assert result.majority.tolist() == [PASS, PASS]
    assert result.needs_adjudication.tolist() == [True, False]


def test_gold_labels_override_the_majority_and_say_so():
    item = np.array([0, 0, 1, 1, 1])
    value = np.array([PASS, FAIL, FAIL, FAIL, PASS])
    result = ag.consensus(item, value, 2, gold=np.array([PASS, PASS, -1]))
    assert result.label.tolist() == [PASS, PASS, -1]
    assert result.source.tolist() == [ag.Source.GOLD, ag.Source.GOLD, ag.Source.NONE]
    assert result.majority.tolist() == [-1, FAIL, -1]
    assert result.needs_adjudication.tolist() == [False, False, False]
