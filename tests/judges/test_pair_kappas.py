"""The vectorised pairwise Cohen's κ (annotate/stats/pair_kappas.py) against the per-pair code of stats/agreement.py.

Every pair is recomputed on its own: its table counted from the labels in Python, its resamples taken from the same
draws (the shared ones for its number of items, or its own multinomial seeded by (seed, i, j)), and its figure from
`agreement._bca_figure` / `agreement._kappa_figure`. The vectorised figures must equal those to 1e-12.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from annotate.stats import agreement as ag
from annotate.stats import pair_kappas as pk


def reference_table(item: np.ndarray, rater: np.ndarray, value: np.ndarray, i: int, j: int, k: int) -> np.ndarray:
    by_i = {int(t): int(v) for t, r, v in zip(item, rater, value, strict=True) if r == i}
    by_j = {int(t): int(v) for t, r, v in zip(item, rater, value, strict=True) if r == j}
    table = np.zeros((k, k), dtype=np.int64)
    for t in by_i.keys() & by_j.keys():
        table[by_i[t], by_j[t]] += 1
    return table


def reference_figure(table: np.ndarray, i: int, j: int, *, min_shared: int, n_boot: int, seed: int) -> ag.Figure:
    """One pair's κ the slow way: the per-pair code of annotate.stats.agreement on this pair's resamples."""
    k = table.shape[0]
    n = int(table.sum())
    if n < min_shared:
        shared = "1 item" if n == 1 else f"{n} items"
        return ag._undefined(n, f"only {shared} rated by both (fewer than {min_shared}): κ is not reported")
    if n > pk.SHARED_DRAWS_MAX_ITEMS or n_boot == 0 or n < 2:
        return ag._kappa_figure(table, n_boot=n_boot, seed=(seed, i, j), n=n, reason=ag.ONE_CATEGORY_KAPPA)
    freq = table.reshape(-1)
    # The shared draws of its n: the slots of its cells are 0..C_1-1, C_1..C_2-1, ... in cell order.
    cdf = pk.shared_draws(n, n_boot, seed).astype(np.int64)
    bounds = np.concatenate([[0], np.cumsum(freq)])
    draws = (cdf[bounds[1:]] - cdf[bounds[:-1]]).T  # n_boot × k²
    assert (draws.sum(axis=1) == n).all()
    sums = np.vstack([freq[None, :], draws]).astype(np.float64)
    num, den = ag._kappa_terms(sums.reshape(-1, k, k))
    present = freq > 0
    jack_num, jack_den = ag._kappa_terms((sums[0][None, :] - np.eye(k * k)[present]).reshape(-1, k, k))
    return ag._bca_figure(
        num,
        den,
        jack_num,
        jack_den,
        freq[present].astype(np.float64),
        n=n,
        reason=ag.ONE_CATEGORY_KAPPA,
        intervals=True,
    )


def assert_same(got: ag.Figure, want: ag.Figure) -> None:
    assert got.n == want.n and got.reason == want.reason, (got, want)
    for a, b in ((got.value, want.value), (got.ci_low, want.ci_low), (got.ci_high, want.ci_high)):
        assert (a is None) == (b is None), (got, want)
        if a is not None and b is not None:
            assert math.isclose(a, b, rel_tol=0, abs_tol=1e-12), (got, want)


def crowd_labels(
    rng: np.random.Generator, n_items: int, n_raters: int, k: int, coverage: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raters who label a random share of the items, agreeing with a hidden truth 80% of the time."""
    truth = rng.integers(0, k, size=n_items)
    item, rater = np.nonzero(rng.random((n_items, n_raters)) < coverage)
    value = np.where(rng.random(item.size) < 0.8, truth[item], rng.integers(0, k, size=item.size))
    return item.astype(np.int64), rater.astype(np.int64), value.astype(np.int64)


CASES = [
    # (items, raters, k, coverage, min_shared, n_boot)
    (60, 12, 2, 1.0, 10, 200),  # fully crossed: every pair shares all items and one set of draws
    (80, 15, 2, 0.5, 10, 200),  # crowd: pairs share various numbers of items
    (70, 10, 3, 0.7, 5, 150),  # pairwise verdicts a/b/tie
    (12, 8, 2, 0.6, 2, 100),  # a handful of items: undefined resamples and one-category pairs
    (40, 6, 3, 0.9, 2, 0),  # no resampling
]


@pytest.mark.parametrize(("n_items", "n_raters", "k", "coverage", "min_shared", "n_boot"), CASES)
@pytest.mark.parametrize("dense", [True, False])
def test_vectorised_pairs_equal_the_per_pair_code(
    n_items, n_raters, k, coverage, min_shared, n_boot, dense, monkeypatch
):
    if not dense:
        monkeypatch.setattr(pk, "DENSE_MAX_CELLS", 0)  # the labels-sorted-by-item path
    rng = np.random.default_rng(n_items * 31 + n_raters)
    item, rater, value = crowd_labels(rng, n_items, n_raters, k, coverage)
    if n_items == 12:
        value[rater == 0] = 0  # rater 0 uses one category throughout
        value[rater == 1] = 0
    got = ag.pairwise_cohen_kappas(item, rater, value, k, min_shared=min_shared, n_boot=n_boot, seed=7)
    pairs = [(i, j) for i in range(n_raters) for j in range(i + 1, n_raters)]
    tables = {p: reference_table(item, rater, value, *p, k) for p in pairs}
    shared = [p for p in pairs if tables[p].sum() > 0]
    assert [(p.rater_i, p.rater_j) for p in got] == shared
    with_interval = 0
    for pair in got:
        table = tables[(pair.rater_i, pair.rater_j)]
        assert pair.n == table.sum()
        want = reference_figure(table, pair.rater_i, pair.rater_j, min_shared=min_shared, n_boot=n_boot, seed=7)
        assert_same(pair.kappa, want)
        with_interval += pair.kappa.ci_low is not None
    if n_boot and n_items >= 60:
        assert with_interval > len(got) // 2  # the comparison covered intervals, not only refusals


def test_pairs_past_the_shared_draws_keep_their_own_seeded_multinomial(monkeypatch):
    """Pairs with more than SHARED_DRAWS_MAX_ITEMS items: agreement._kappa_figure seeded (seed, i, j), as before."""
    monkeypatch.setattr(pk, "SHARED_DRAWS_MAX_ITEMS", 40)
    rng = np.random.default_rng(5)
    item, rater, value = crowd_labels(rng, 90, 9, 2, 0.6)
    got = ag.pairwise_cohen_kappas(item, rater, value, 2, n_boot=300, seed=3)
    assert any(p.n > 40 for p in got) and any(p.n <= 40 for p in got)
    for pair in got:
        table = reference_table(item, rater, value, pair.rater_i, pair.rater_j, 2)
        assert_same(pair.kappa, reference_figure(table, pair.rater_i, pair.rater_j, min_shared=10, n_boot=300, seed=3))


def test_shared_draws_are_a_bootstrap_of_n_items():
    """Each resample is n uniform draws among n slots: its counts add to n and each slot is drawn once on average."""
    cdf = pk.shared_draws(50, 4000, seed=1)
    assert cdf.shape == (51, 4000)
    assert (cdf[0] == 0).all() and (cdf[-1] == 50).all()
    per_slot = np.diff(cdf, axis=0)
    assert (per_slot >= 0).all()
    assert abs(per_slot.mean() - 1.0) < 1e-9
    # Multinomial(50, 1/50) per slot: variance 50 · (1/50) · (49/50) = 0.98.
    assert abs(per_slot.var() - 0.98) < 0.03
    assert (pk.shared_draws(50, 4000, seed=1) == cdf).all()
    assert not (pk.shared_draws(50, 4000, seed=2) == cdf).all()
