"""The production estimates (PPI++, release differences, judge bias probes) against independent implementations:
ppi-python (`ppi_py`, the authors' package), statsmodels, and the formulas written out again here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from ppi_py import classical_mean_ci, ppi_mean_ci, ppi_mean_pointestimate
from scipy import stats as scipy_stats

from judges import estimates as est


def _production(rng: np.random.Generator, *, n: int, big_n: int, rate: float, tpr: float, tnr: float):
    """Human truth on n + N records and a judge with the given TPR/TNR; the first n are the labeled ones."""
    truth = (rng.random(n + big_n) < rate).astype(float)
    judge = np.where(truth == 1, rng.random(n + big_n) < tpr, rng.random(n + big_n) >= tnr).astype(float)
    return truth[:n], judge[:n], judge[n:], truth


@pytest.mark.parametrize(("seed", "tpr", "tnr"), [(1, 0.9, 0.85), (2, 0.7, 0.6), (3, 0.99, 0.95), (4, 0.5, 0.5)])
def test_ppi_mean_matches_ppi_python_with_power_tuning(seed, tpr, tnr):
    y, f_lab, f_unl, _ = _production(np.random.default_rng(seed), n=150, big_n=2000, rate=0.7, tpr=tpr, tnr=tnr)
    ours = est.ppi_mean(y, f_lab, f_unl, clip=False, pseudo=0, student=False)
    point = float(np.asarray(ppi_mean_pointestimate(y, f_lab, f_unl, lam=None)).item())
    low, high = (float(np.asarray(b).item()) for b in ppi_mean_ci(y, f_lab, f_unl, alpha=0.05, lam=None))
    assert ours.value == pytest.approx(point, abs=1e-12)
    assert ours.low == pytest.approx(low, abs=1e-12)
    assert ours.high == pytest.approx(high, abs=1e-12)
    assert (ours.n_labeled, ours.n_unlabeled) == (150, 2000)


def test_fixed_lambda_one_is_plain_ppi_and_zero_is_the_classical_mean():
    y, f_lab, f_unl, _ = _production(np.random.default_rng(7), n=80, big_n=500, rate=0.4, tpr=0.8, tnr=0.9)
    plain = est.ppi_mean(y, f_lab, f_unl, lam=1.0, clip=False, pseudo=0, student=False)
    low, high = (float(np.asarray(b).item()) for b in ppi_mean_ci(y, f_lab, f_unl, alpha=0.05, lam=1.0))
    assert (plain.low, plain.high) == (pytest.approx(low), pytest.approx(high))
    # Written out again: mean(f_unlabeled) + mean(Y − f_labeled).
    assert plain.value == pytest.approx(f_unl.mean() + (y - f_lab).mean())
    classical = est.ppi_mean(y, f_lab, f_unl, lam=0.0, clip=False, pseudo=0, student=False)
    c_low, c_high = (float(np.asarray(b).item()) for b in classical_mean_ci(y, alpha=0.05))
    assert classical.value == pytest.approx(y.mean())
    assert (classical.low, classical.high) == (pytest.approx(c_low), pytest.approx(c_high))


def test_the_tuned_lambda_is_the_variance_minimiser_written_out():
    y, f_lab, f_unl, _ = _production(np.random.default_rng(11), n=200, big_n=800, rate=0.55, tpr=0.85, tnr=0.8)
    lam = est.ppi_mean(y, f_lab, f_unl).lam
    # Var(θ̂(λ)) = λ²Var(f)/N + Var(Y − λf)/n: a grid search over λ finds the same minimum.
    grid = np.linspace(0, 1, 20001)
    var_f_all = np.var(np.concatenate([f_lab, f_unl]), ddof=1)
    cov = np.mean((y - y.mean()) * (f_lab - f_lab.mean()))
    variance = grid**2 * var_f_all / f_unl.size + (np.var(y) - 2 * grid * cov + grid**2 * var_f_all) / y.size
    assert lam == pytest.approx(grid[np.argmin(variance)], abs=1e-4)


def test_the_pseudo_records_keep_an_interval_when_the_judge_agreed_with_every_label():
    # 40 labels, the judge agreed with all: the textbook rectifier variance is 0 and the interval only reflects the
    # judge's own noise; the pseudo-records give the rectifier the variance of about one disagreement in 22.
    y = np.array([1.0] * 36 + [0.0] * 4)
    f_unl = np.array([1.0] * 1800 + [0.0] * 200)
    textbook = est.ppi_mean(y, y, f_unl, pseudo=0)
    ours = est.ppi_mean(y, y, f_unl)
    assert ours.value == textbook.value
    assert textbook.width is not None and ours.width is not None and ours.width > 2 * textbook.width
    lam = ours.lam
    assert lam is not None
    corners = np.array([0.0, -lam, 1.0, 1.0 - lam])
    r = np.concatenate([y - lam * y, corners])
    assert ours.se == pytest.approx(math.sqrt(np.var(lam * f_unl) / 2000 + np.var(r) / 40))


@pytest.mark.parametrize("df", [10, 29, 49, 99, 299, 5000])
def test_the_student_quantile_matches_scipy(df):
    assert est.student_quantile(0.95, df) == pytest.approx(scipy_stats.t.ppf(0.975, df), abs=2e-5)


def test_the_default_interval_uses_student_t_with_n_minus_one_degrees_of_freedom():
    y, f_lab, f_unl, _ = _production(np.random.default_rng(2), n=40, big_n=900, rate=0.6, tpr=0.8, tnr=0.7)
    normal, student = est.ppi_mean(y, f_lab, f_unl, student=False), est.ppi_mean(y, f_lab, f_unl)
    assert student.se == normal.se and student.value == normal.value
    assert student.width == pytest.approx(normal.width * scipy_stats.t.ppf(0.975, 39) / 1.959963984540054, rel=1e-5)


def test_a_good_judge_gives_a_narrower_interval_than_human_labels_alone():
    y, f_lab, f_unl, _ = _production(np.random.default_rng(5), n=200, big_n=5000, rate=0.8, tpr=0.95, tnr=0.9)
    ppi, human = est.ppi_mean(y, f_lab, f_unl), est.human_mean(y)
    assert ppi.width is not None and human.width is not None
    assert ppi.width < 0.75 * human.width


def test_a_judge_that_knows_nothing_gets_no_weight_and_costs_little():
    rng = np.random.default_rng(9)
    y = (rng.random(300) < 0.6).astype(float)
    f_lab, f_unl = (rng.random(300) < 0.5).astype(float), (rng.random(3000) < 0.5).astype(float)
    ppi = est.ppi_mean(y, f_lab, f_unl)
    assert ppi.lam is not None and ppi.lam < 0.2
    assert ppi.width is not None and ppi.width < 1.05 * 2 * 1.96 * math.sqrt(y.mean() * (1 - y.mean()) / 300)


def test_a_judge_that_always_says_pass_leaves_the_human_mean():
    y = np.array([1, 0] * 20, dtype=float)
    ppi = est.ppi_mean(y, np.ones(40), np.ones(100))
    assert ppi.lam == 0.0
    assert ppi.value == pytest.approx(0.5)


def test_too_few_labels_or_no_unlabeled_records_are_refusals_with_a_reason():
    few = est.ppi_mean([1, 0, 1], [1, 0, 1], [1, 1, 0, 0])
    assert few.value is None and "3 human-labeled" in (few.reason or "")
    none = est.ppi_mean([1, 0] * 20, [1, 0] * 20, [])
    assert none.value is None and "nothing to add" in (none.reason or "")
    assert est.human_mean([]).value is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([1, 0], [1], [1]), "aligned"),
        (([1, 2], [1, 0], [1]), r"\[0, 1\]"),
        (([1, float("nan")], [1, 0], [1]), r"\[0, 1\]"),
    ],
)
def test_bad_input_is_a_clear_error(args, message):
    with pytest.raises(ValueError, match=message):
        est.ppi_mean(*args, min_labeled=1)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=30, max_size=120),
    st.lists(st.integers(0, 1), min_size=1, max_size=300),
)
def test_the_clipped_estimate_is_never_nan_and_stays_within_zero_and_one(labeled, unlabeled):
    y, f_lab = np.array(labeled, dtype=float).T
    estimate = est.ppi_mean(y, f_lab, unlabeled)
    assert estimate.value is not None and estimate.low is not None and estimate.high is not None
    assert 0.0 <= estimate.low <= estimate.value <= estimate.high <= 1.0


def test_the_release_difference_adds_the_variances_of_independent_samples():
    rng = np.random.default_rng(21)
    a = est.ppi_mean(*_production(rng, n=120, big_n=900, rate=0.8, tpr=0.9, tnr=0.85)[:3])
    b = est.ppi_mean(*_production(rng, n=140, big_n=1100, rate=0.7, tpr=0.9, tnr=0.85)[:3])
    diff = est.difference(a, b)
    assert a.value is not None and b.value is not None and a.se is not None and b.se is not None
    assert diff.value == pytest.approx(a.value - b.value)
    half = scipy_stats.t.ppf(0.975, 119) * math.sqrt(a.se**2 + b.se**2)
    assert (diff.low, diff.high) == (
        pytest.approx(diff.value - half, abs=1e-6),
        pytest.approx(diff.value + half, abs=1e-6),
    )
    assert (diff.n_labeled, diff.n_unlabeled) == (260, 2000)


def test_a_release_without_an_estimate_makes_the_difference_a_refusal_naming_it():
    good = est.ppi_mean([1, 0] * 20, [1, 0] * 20, [1, 0, 1])
    diff = est.difference(good, est.ppi_mean([1], [1], [1]))
    assert diff.value is None and "second release" in (diff.reason or "")


def _biased_judge(rng: np.random.Generator, n: int, length_effect: float):
    human = (rng.random(n) < 0.6).astype(float)
    # Uniform lengths keep the linear model's probabilities inside [0, 1], so the true effect is exactly linear.
    length = rng.uniform(200, 2000, n)
    z = (length - length.mean()) / length.std()
    p = 0.15 + 0.6 * human + length_effect * z
    verdict = (rng.random(n) < p).astype(float)
    return verdict, human, z


def test_the_bias_probe_matches_statsmodels_ols_with_hc3_errors():
    rng = np.random.default_rng(3)
    verdict, human, z = _biased_judge(rng, 400, 0.05)
    model = rng.integers(0, 2, 400).astype(float)
    probe = est.bias_probe(verdict, human, {"length": z, "model=b": model})
    fit = sm.OLS(verdict, sm.add_constant(np.column_stack([human, z, model]))).fit(cov_type="HC3")
    low, high = fit.conf_int(alpha=0.05).T
    for i, effect in enumerate(probe.effects, start=2):
        assert effect.value == pytest.approx(fit.params[i], abs=1e-10)
        assert effect.se == pytest.approx(fit.bse[i], abs=1e-10)
        assert (effect.low, effect.high) == (pytest.approx(low[i], abs=1e-10), pytest.approx(high[i], abs=1e-10))
    assert probe.n == 400


def test_the_bias_probe_finds_a_known_length_effect_and_none_where_there_is_none():
    rng = np.random.default_rng(8)
    biased = est.bias_probe(*_biased_judge(rng, 3000, 0.08)[:2], {"length": _biased_judge(rng, 3000, 0)[2]})
    # Independent length column: no effect. Same column the judge used: the effect is found near 0.08.
    assert not biased.effects[0].excludes_zero
    verdict, human, z = _biased_judge(rng, 3000, 0.08)
    found = est.bias_probe(verdict, human, {"length": z}).effects[0]
    assert found.excludes_zero and found.low < 0.08 < found.high


def test_the_bias_probe_refuses_a_constant_covariate_and_too_few_records():
    assert est.bias_probe([1, 0, 1, 0, 1], [1, 0, 1, 0, 0], {"length": [3] * 5}).reason
    assert "too few" in (est.bias_probe([1, 0], [1, 0], {"length": [1, 2]}).reason or "")
