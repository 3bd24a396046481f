"""Agreement maths: human–human reliability, consensus, and judge–human agreement, as pure functions over numpy arrays.

Every number a page shows about agreement is computed here and only here (views and reports format `Figure`s).

Inputs are integer codes. Categories are 0..k-1: binary labels are `FAIL` = 0 and `PASS` = 1; pairwise labels are
`A` = 0, `B` = 1 and `TIE` = 2. Human labels come as three aligned arrays: `item` (dense ids 0..N-1), `rater` (dense ids
0..R-1) and `value`, one entry per label, with at most one label per rater per item (keep each rater's latest).

Intervals are 95% and of three kinds. A proportion of independent items (accuracy, TPR, TNR, ...) gets the
Clopper–Pearson ("exact") interval, which needs no resampling and covers at least 95% for every true rate and every
number of items: a judge's TNR often rests on four or five human fails, where Wilson's interval covered only 89% (at 4
items and a true rate of 0.85). A judge's Cohen κ against the human labels gets the BCa interval below where it gives
one and else a Dirichlet posterior interval over its confusion table (see `_judge_kappa_figure`): at 30 items with
skewed labels the bootstrap gave no interval at all on one project in six (every item agreeing, so every resample gives
κ = 1). Every other figure (κ and α between humans, percent agreement) gets a BCa bootstrap interval (bias-corrected and
accelerated; Efron & Tibshirani, An Introduction to the Bootstrap, 1993, ch. 14): items (the unit that was sampled) are
resampled, seeded so that the same data and seed give the same interval, and the percentile interval is shifted for the
bootstrap's bias and for how the figure's spread changes with its value (the acceleration, from the jackknife). Plain
percentile intervals covered only 92.5–93.7% at 30–50 items in simulation; `tests/bench/bench_coverage.py` measures the
coverage of these.

Every figure here depends on the items only through how many items fall in each distinct "pattern" (an item's
category counts, or a cell of a confusion table), so drawing N items with replacement is done exactly, and fast, by
drawing the pattern counts from Multinomial(N, observed pattern shares): the cost is O(resamples × patterns), not
O(resamples × items). The jackknife (leave one item out) is exact in the same way: one value per pattern, weighted by
how many items share it. See `_resample` and `_bca_figure`.

Refusals are explicit: a figure that is not defined on the data has `value=None` and a `reason`; no output is NaN.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from annotate.stats import pair_kappas

# Figure, the codes and the constants live in annotate.stats.figure (pair_kappas builds on them); they are named here
# too, as every caller knows them: agreement.Figure, agreement.PASS, agreement.CONFIDENCE.
from annotate.stats.figure import _TAIL, _Z, MAX_UNDEFINED_SHARE, ONE_CATEGORY_KAPPA, _undefined
from annotate.stats.figure import CONFIDENCE as CONFIDENCE
from annotate.stats.figure import FAIL as FAIL
from annotate.stats.figure import N_BOOT as N_BOOT
from annotate.stats.figure import PASS as PASS
from annotate.stats.figure import TIE as TIE
from annotate.stats.figure import A as A
from annotate.stats.figure import B as B
from annotate.stats.figure import BoolArray as BoolArray
from annotate.stats.figure import Figure as Figure
from annotate.stats.figure import FloatArray as FloatArray
from annotate.stats.figure import IntArray as IntArray
from annotate.stats.proportions import clopper_pearson_interval

# The docstrings and reasons are shown on the pages and name the figures as statisticians write them (κ, α, θ, −, ×).

# --------------------------------------------------------------------------------------------------------------------
# Input checks and the shared machinery: unit patterns, resampling, turning ratios into Figures.


def _codes(values: npt.ArrayLike, name: str, upper: int | None = None) -> IntArray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a one-dimensional array")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer codes, not {arr.dtype}")
    out = arr.astype(np.int64, copy=False)
    low, high = int(out.min()), int(out.max())
    if low < 0:
        raise ValueError(f"{name} holds a negative code ({low})")
    if upper is not None and high >= upper:
        raise ValueError(f"{name} holds {high}, outside 0..{upper - 1}")
    return out


def _k(k: int) -> int:
    if int(k) != k or k < 2:
        raise ValueError("k, the number of categories, must be an integer of at least 2")
    return int(k)


def _aligned(*arrays: IntArray) -> None:
    if len({a.size for a in arrays}) > 1:
        raise ValueError(f"the arrays must be aligned, got lengths {[a.size for a in arrays]}")


def _labels(
    item: npt.ArrayLike, rater: npt.ArrayLike, value: npt.ArrayLike, k: int
) -> tuple[IntArray, IntArray, IntArray, int]:
    k = _k(k)
    item_, rater_, value_ = _codes(item, "item"), _codes(rater, "rater"), _codes(value, "value", k)
    _aligned(item_, rater_, value_)
    if item_.size > 1:
        n_raters = int(rater_.max()) + 1
        key = item_ * n_raters + rater_
        n_cells = (int(item_.max()) + 1) * n_raters
        if n_cells <= 8 * item_.size + 4096:
            # A flag per (item, rater) cell: a byte each, where counting them took eight (several times faster).
            seen = np.zeros(n_cells, dtype=np.bool_)
            seen[key] = True
            duplicated = int(np.count_nonzero(seen)) != key.size
        else:
            key = np.sort(key)
            duplicated = bool((key[1:] == key[:-1]).any())
        if duplicated:
            raise ValueError("a rater labels an item more than once: keep one label per rater per item")
    return item_, rater_, value_, k


def _item_counts(item: IntArray, value: IntArray, k: int, n_items: int | None = None) -> IntArray:
    """The N×k matrix of how many ratings each item got in each category (rows for unrated ids are zero)."""
    n = n_items if n_items is not None else (int(item.max()) + 1 if item.size else 0)
    return np.bincount(item * k + value, minlength=n * k).reshape(n, k).astype(np.int64, copy=False)


def _patterns(rows: IntArray) -> tuple[IntArray, IntArray]:
    """The distinct rows of a non-negative integer matrix and how many times each occurs."""
    if rows.shape[0] == 0:
        return rows, np.zeros(0, dtype=np.int64)
    base = int(rows.max()) + 1
    width = rows.shape[1]
    if base**width < 2**62:
        place = base ** np.arange(width, dtype=np.int64)
        code = rows @ place
        if base**width <= max(1 << 20, 4 * rows.shape[0]):
            freq = np.bincount(code, minlength=base**width)
            code = np.flatnonzero(freq)
            freq = freq[code]
        else:
            code, freq = np.unique(code, return_counts=True)
        return (code[:, None] // place) % base, freq.astype(np.int64)
    distinct, freq = np.unique(rows, axis=0, return_counts=True)
    return distinct.astype(np.int64), freq.astype(np.int64)


def _check_boot(n_boot: int, seed: int) -> None:
    if n_boot < 0:
        raise ValueError("n_boot cannot be negative")
    if seed < 0:
        raise ValueError("seed must be a non-negative integer")


def _resample(freq: IntArray, n_boot: int, rng: np.random.Generator) -> IntArray:
    """Row 0 is `freq`, the number of units in each pattern; rows 1..n_boot are the same counts for a resample.

    Drawing N units uniformly with replacement and counting how many fall in each pattern is, in distribution, the
    same as drawing the counts from Multinomial(N, freq / N). Statistics that depend on units only through their
    patterns are computed from these rows as weighted sums. With fewer than two units there is nothing to resample.
    """
    n = int(freq.sum())
    if n_boot == 0 or n < 2:
        return freq[None, :]
    drawn = rng.multinomial(n, freq / n, size=n_boot).astype(np.int64)
    return np.vstack([freq[None, :], drawn])


def _percentile_interval(boot: FloatArray, n_undefined: int) -> tuple[float | None, float | None]:
    """The 2.5% and 97.5% quantiles of `boot`, or no interval past MAX_UNDEFINED_SHARE undefined draws."""
    total = boot.size + n_undefined
    if boot.size == 0 or n_undefined > MAX_UNDEFINED_SHARE * total:
        return None, None
    return _quantiles(boot, _TAIL, 1.0 - _TAIL)


def _quantiles(boot: FloatArray, low_q: float, high_q: float) -> tuple[float | None, float | None]:
    low, high = np.quantile(boot, [low_q, high_q])
    if low == high:
        return None, None
    return float(low), float(high)


def _bca_bounds(value: float, boot: FloatArray, jack: FloatArray, weight: FloatArray) -> tuple[float, float] | None:
    """The BCa quantile levels for a 95% interval, or None where they are not defined.

    `boot` holds the resampled values, `jack` the distinct leave-one-item-out values and `weight` how many items give
    each. As in Efron & Tibshirani (1993), eq. 14.14–14.15, with the bias correction z₀ from the share of resamples
    below the estimate (ties counted half, as scipy.stats.bootstrap does) and the acceleration a from the jackknife:
    a = Σ d³ / (6 (Σ d²)^{3/2}), d = mean(jack) − jack. None when every resample lies on one side of the estimate.
    """
    below = (np.count_nonzero(boot < value) + np.count_nonzero(boot <= value)) / (2 * boot.size)
    if not 0.0 < below < 1.0:
        return None
    normal = NormalDist()
    z0 = normal.inv_cdf(below)
    d = float(np.average(jack, weights=weight)) - jack
    spread = float((weight * d * d).sum())
    accel = float((weight * d**3).sum()) / (6.0 * spread**1.5) if spread > 0 else 0.0
    levels = []
    for z in (-_Z, _Z):
        shifted = z0 + z
        if accel * shifted >= 1.0:
            # Past the pole of the formula its level would jump to the other tail; its limit from below is the
            # most extreme resample on this side, which is what the interval takes.
            levels.append(1.0 if shifted > 0 else 0.0)
        else:
            levels.append(normal.cdf(z0 + shifted / (1.0 - accel * shifted)))
    return levels[0], levels[1]


def _bca_figure(
    num: FloatArray,
    den: FloatArray,
    jack_num: FloatArray,
    jack_den: FloatArray,
    jack_weight: FloatArray,
    *,
    n: int,
    reason: str,
    intervals: bool,
) -> Figure:
    """num[0]/den[0] with a BCa interval over the resamples num[1:]/den[1:] and the jackknife jack_num/jack_den.

    Every denominator here is an integer-valued sum (or a sum of shares with integer-valued products) for which
    `den != 0` is the exact test for "defined"; a resample where the figure is undefined is counted (see
    MAX_UNDEFINED_SHARE), never turned into NaN.
    """
    if den[0] == 0:
        return _undefined(n, reason)
    value = float(num[0] / den[0])
    if not intervals or num.size == 1:
        return Figure(value=value, ci_low=None, ci_high=None, n=n)
    ok = den[1:] != 0
    n_undefined = int((~ok).sum())
    if n_undefined > MAX_UNDEFINED_SHARE * (num.size - 1) or (jack_den == 0).any():
        return Figure(value=value, ci_low=None, ci_high=None, n=n)
    boot = num[1:][ok] / den[1:][ok]
    levels = _bca_bounds(value, boot, jack_num / jack_den, jack_weight)
    if levels is None:
        return Figure(value=value, ci_low=None, ci_high=None, n=n)
    low, high = _quantiles(boot, *levels)
    return Figure(value=value, ci_low=low, ci_high=high, n=n)


def _feature_figure(
    features: FloatArray,
    freq: IntArray,
    terms: Callable[[FloatArray], tuple[FloatArray, FloatArray]],
    *,
    n_boot: int,
    seed: int | tuple[int, ...],
    n: int,
    reason: str,
) -> Figure:
    """A figure that is `terms(sums)` = (num, den) of per-pattern feature sums, with its BCa interval.

    Row 0 of the sums is the data, rows 1.. the resamples; the jackknife sums leave one item of each pattern out.
    """
    draws = _resample(freq, n_boot, np.random.default_rng(seed)).astype(np.float64)
    sums = draws @ features
    num, den = terms(sums)
    present = freq > 0
    jack_num, jack_den = terms(sums[0][None, :] - features[present])
    return _bca_figure(
        num, den, jack_num, jack_den, freq[present].astype(np.float64), n=n, reason=reason, intervals=n_boot > 0
    )


def _proportion_figure(successes: float, trials: float, *, n: int, reason: str, intervals: bool) -> Figure:
    """successes/trials over independent items, with the Clopper–Pearson interval; undefined without trials."""
    if trials == 0:
        return _undefined(n, reason)
    x, t = int(successes), int(trials)
    if not intervals:
        return Figure(value=x / t, ci_low=None, ci_high=None, n=n)
    low, high = clopper_pearson_interval(x, t)
    return Figure(value=x / t, ci_low=low, ci_high=high, n=n)


def _kappa_terms(tables: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Cohen's κ = num/den for a stack of k×k tables: (n·Σ agree − Σ row·col) / (n² − Σ row·col)."""
    n = tables.sum(axis=(-2, -1))
    agree = np.trace(tables, axis1=-2, axis2=-1)
    chance = (tables.sum(axis=-1) * tables.sum(axis=-2)).sum(axis=-1)
    return n * agree - chance, n * n - chance


def _kappa_figure(table: IntArray, *, n_boot: int, seed: int | tuple[int, ...], n: int, reason: str) -> Figure:
    """Cohen's κ of a k×k table of items with its BCa interval: each cell is a pattern, resampled as items are."""
    k = table.shape[0]
    return _feature_figure(
        np.eye(k * k),
        table.reshape(-1),
        lambda sums: _kappa_terms(sums.reshape(-1, k, k)),
        n_boot=n_boot,
        seed=seed,
        n=n,
        reason=reason,
    )


# The Dirichlet prior of a judge's κ interval: this total weight, spread evenly over the k×k cells (½ a cell for a
# 2×2 table: Jeffreys' prior for a multinomial). A fixed total rather than a fixed weight per cell keeps the 3×3 a/b/tie
# table from being pulled towards chance by nine cells' worth of prior.
KAPPA_PRIOR_WEIGHT = 2.0


def _judge_kappa_figure(table: IntArray, *, n_boot: int, seed: int, n: int, reason: str) -> Figure:
    """Cohen's κ of a judge against the human labels: with the BCa bootstrap interval where it gives one, else with
    the Dirichlet posterior interval of `_kappa_posterior_interval`.

    The bootstrap gives no interval where resampling the items cannot show the uncertainty: every item agreeing
    (every resample gives κ = 1), or one or two items carrying every "fail" (more than 5% of resamples lack them).
    At 30 items with skewed labels that was one project in six, all counted as misses: 83% coverage. The posterior
    gives every cell of the table, observed or not, some share, so 30 items that all agree still say κ could be well
    below 1. Where the bootstrap does give an interval it is kept: alone, the posterior covered slightly under 95% at
    50–300 items (93.8–94.4% in simulation), the bootstrap 94.0–97.3%. tests/bench/bench_coverage.py measures both
    together."""
    figure = _kappa_figure(table, n_boot=n_boot, seed=seed, n=n, reason=reason)
    if figure.value is None or figure.ci_low is not None or n_boot == 0:
        return figure
    low, high = _kappa_posterior_interval(table, n_boot=n_boot, seed=seed)
    return Figure(value=figure.value, ci_low=low, ci_high=high, n=n)


def _kappa_posterior_interval(table: IntArray, *, n_boot: int, seed: int) -> tuple[float | None, float | None]:
    """The 95% Dirichlet posterior interval of Cohen's κ for a k×k table of items.

    The items' (human, judge) pairs are a multinomial sample of the k×k cell shares. With a Dirichlet prior of total
    weight KAPPA_PRIOR_WEIGHT spread over the cells, the shares' posterior is Dirichlet(table + weight / k²); the
    interval is the 2.5% and 97.5% quantiles of κ over `n_boot` posterior draws (seeded)."""
    k = table.shape[0]
    alpha = table.reshape(-1).astype(np.float64) + KAPPA_PRIOR_WEIGHT / (k * k)
    shares = np.random.default_rng(seed).dirichlet(alpha, size=n_boot).reshape(-1, k, k)
    draw_num, draw_den = _kappa_terms(shares)
    # A draw has a chance agreement of exactly 1 (κ undefined) only if it put every share in one cell: with every
    # Dirichlet weight positive that has probability 0, but floating point may underflow, so it is checked.
    ok = draw_den > 0
    return _percentile_interval(draw_num[ok] / draw_den[ok], int((~ok).sum()))


def _table(x: IntArray, y: IntArray, k: int) -> IntArray:
    return np.bincount(x * k + y, minlength=k * k).reshape(k, k).astype(np.int64, copy=False)


# --------------------------------------------------------------------------------------------------------------------
# Human–human agreement.

ONE_CATEGORY_ALPHA = "only one category present: α is not defined"
NO_OVERLAP = "no items with two or more ratings"


def percent_agreement(
    item: npt.ArrayLike, rater: npt.ArrayLike, value: npt.ArrayLike, k: int, *, n_boot: int = N_BOOT, seed: int = 0
) -> Figure:
    """Percent agreement: the share of all pairs of ratings of the same item, by two different raters, that agree.

    Computed over items with two or more ratings (`n` counts them); an item with m ratings contributes m(m-1)/2
    pairs, so items with more raters weigh more.
    """
    _check_boot(n_boot, seed)
    item_, _, value_, k = _labels(item, rater, value, k)
    counts = _item_counts(item_, value_, k)
    counts = counts[counts.sum(axis=1) >= 2]
    reason = f"{NO_OVERLAP}: agreement is not defined"
    if counts.shape[0] == 0:
        return _undefined(0, reason)
    patterns, freq = _patterns(counts)
    m = patterns.sum(axis=1)
    # Per item: twice the agreeing pairs, Σ_c n_c(n_c − 1), and twice all pairs, m(m − 1).
    features = np.column_stack([(patterns**2).sum(axis=1) - m, m * (m - 1)]).astype(np.float64)
    return _feature_figure(
        features,
        freq,
        lambda sums: (sums[:, 0], sums[:, 1]),
        n_boot=n_boot,
        seed=seed,
        n=counts.shape[0],
        reason=reason,
    )


def cohen_kappa(a: npt.ArrayLike, b: npt.ArrayLike, k: int, *, n_boot: int = N_BOOT, seed: int = 0) -> Figure:
    """Cohen's κ: how much more often two raters agree than they would by chance given how often each uses each label.

    κ = (p_o − p_e) / (1 − p_e), with p_o the share of items where a and b agree and p_e = Σ_c p_a(c)·p_b(c).
    `a[i]` and `b[i]` are the two labels of item i; `n` is the number of items. Not defined when both raters used
    one and the same category throughout (p_e = 1).
    """
    _check_boot(n_boot, seed)
    k = _k(k)
    a_, b_ = _codes(a, "a", k), _codes(b, "b", k)
    _aligned(a_, b_)
    if a_.size == 0:
        return _undefined(0, "no items rated by both: κ is not defined")
    return _kappa_figure(_table(a_, b_, k), n_boot=n_boot, seed=seed, n=int(a_.size), reason=ONE_CATEGORY_KAPPA)


class RaterPairKappa(NamedTuple):
    rater_i: int
    rater_j: int
    n: int
    kappa: Figure


def pairwise_cohen_kappas(
    item: npt.ArrayLike,
    rater: npt.ArrayLike,
    value: npt.ArrayLike,
    k: int,
    min_shared: int = 10,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> list[RaterPairKappa]:
    """Cohen's κ for every pair of raters over the items both rated, as (rater_i, rater_j, n, Figure), i < j.

    Pairs that share no item are left out. Pairs that share fewer than `min_shared` items are listed with κ not
    reported, since κ on a handful of items says little. A pair's interval depends on its own labels and the seed
    only, so it does not change when other raters' labels do: its resamples are drawn for its number of shared items
    (and shared by every pair with as many) or, past stats.pair_kappas.SHARED_DRAWS_MAX_ITEMS items, seeded from
    (seed, i, j). All pairs are computed at once over a pairs axis (annotate/stats/pair_kappas.py).
    """
    _check_boot(n_boot, seed)
    item_, rater_, value_, k = _labels(item, rater, value, k)

    first, second, tables = pair_kappas.pair_tables(item_, rater_, value_, k)
    figures = pair_kappas.kappa_figures(tables, first, second, k, min_shared=min_shared, n_boot=n_boot, seed=seed)
    return [
        RaterPairKappa(i, j, int(n), kappa)
        for i, j, n, kappa in zip(first.tolist(), second.tolist(), tables.sum(axis=1).tolist(), figures, strict=True)
    ]


def fleiss_kappa(
    item: npt.ArrayLike,
    rater: npt.ArrayLike,
    value: npt.ArrayLike,
    k: int,
    *,
    m: int | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> Figure:
    """Fleiss' κ: how much more often the raters of an item agree than chance, over every item with two or more ratings.

    κ = (p_a − p_e) / (1 − p_e) over the N' items with r_i ≥ 2 ratings, r_ic of them in category c:
    p_a = (1/N') Σ_i Σ_c r_ic(r_ic − 1) / (r_i(r_i − 1)), each item's share of agreeing rating pairs, and
    p_e = Σ_c π_c², π_c = (1/N') Σ_i r_ic / r_i, each item weighing the same in the category shares. This is Fleiss'
    κ generalised to a varying number of ratings per item (Gwet, Handbook of Inter-Rater Reliability, 4th ed., 2014,
    ch. 2; Gwet's irrCAC computes p_a the same way but takes π_c over every rated item, single ratings included,
    where here an item with one rating, which shows no agreement, counts in neither). When every item has the same
    number m of ratings it is Fleiss' (1971) κ. With `m` given, only the items with exactly m ratings count: Fleiss'
    original κ on that subset. `n` counts the items used.
    """
    _check_boot(n_boot, seed)
    item_, _, value_, k = _labels(item, rater, value, k)
    if m is not None and m < 2:
        raise ValueError("Fleiss' κ needs m of at least 2 ratings per item")
    counts = _item_counts(item_, value_, k)
    per_item = counts.sum(axis=1)
    counts = counts[per_item >= 2] if m is None else counts[per_item == m]
    n = counts.shape[0]
    if n == 0:
        reason = NO_OVERLAP if m is None else f"no items with exactly {m} ratings"
        return _undefined(0, f"{reason}: κ is not defined")
    patterns, freq = _patterns(counts)
    r = patterns.sum(axis=1, keepdims=True).astype(np.float64)
    agreeing = ((patterns * (patterns - 1)).sum(axis=1, keepdims=True)) / (r * (r - 1))
    # Per item: its share of agreeing pairs, its category shares, and 1 (to count items in a resample).
    features = np.hstack([agreeing, patterns / r, np.ones_like(r)])

    def terms(sums: FloatArray) -> tuple[FloatArray, FloatArray]:
        # κ·N'² / N'²: numerator N'·Σ_i P_i − Σ_c S_c², denominator N'² − Σ_c S_c², with S_c = N'·π_c.
        items = sums[:, k + 1]
        chance = (sums[:, 1 : k + 1] ** 2).sum(axis=1)
        return items * sums[:, 0] - chance, items * items - chance

    return _feature_figure(features, freq, terms, n_boot=n_boot, seed=seed, n=n, reason=ONE_CATEGORY_KAPPA)


def krippendorff_alpha_nominal(
    item: npt.ArrayLike, rater: npt.ArrayLike, value: npt.ArrayLike, k: int, *, n_boot: int = N_BOOT, seed: int = 0
) -> Figure:
    """Krippendorff's α (nominal): 1 − observed disagreement / disagreement expected by chance, missing ratings allowed.

    From the coincidence matrix o over items with two or more ratings (each such item with m ratings adds
    n_c·n_c'/(m−1) to o[c, c'] for c ≠ c' and n_c(n_c−1)/(m−1) to o[c, c]): α = 1 − (n−1)·(n − Σ_c o[c, c]) /
    (n² − Σ_c n_c²), with n_c the pairable ratings in category c and n their total. `n` counts the items used.
    """
    _check_boot(n_boot, seed)
    item_, _, value_, k = _labels(item, rater, value, k)
    counts = _item_counts(item_, value_, k)
    counts = counts[counts.sum(axis=1) >= 2]
    if counts.shape[0] == 0:
        return _undefined(0, f"{NO_OVERLAP}: α is not defined")
    patterns, freq = _patterns(counts)
    m = patterns.sum(axis=1)
    diagonal = ((patterns**2).sum(axis=1) - m) / (m - 1)
    features = np.column_stack([patterns.astype(np.float64), diagonal])

    def terms(sums: FloatArray) -> tuple[FloatArray, FloatArray]:
        per_category, observed = sums[:, :k], sums[:, k]
        n = per_category.sum(axis=1)
        den = n * n - (per_category**2).sum(axis=1)
        return den - (n - 1) * (n - observed), den

    return _feature_figure(
        features, freq, terms, n_boot=n_boot, seed=seed, n=counts.shape[0], reason=ONE_CATEGORY_ALPHA
    )


# --------------------------------------------------------------------------------------------------------------------
# Consensus.


class Source(enum.IntEnum):
    """Where an item's consensus label comes from."""

    NONE = 0
    MAJORITY = 1
    GOLD = 2


@dataclass(frozen=True, eq=False)
class Consensus:
    """Per-item consensus, arrays indexed by item id.

    label: the label to use: gold where given, else the strict-majority label if its margin is at least
        `min_margin`, else -1.
    majority: the category more than half of the item's ratings chose, or -1 if none did.
    margin: votes for the most chosen category minus votes for the runner-up (0 for an unrated item).
    n_ratings: how many ratings the item has.
    needs_adjudication: the item has ratings, no gold label, and no strict majority with enough margin.
    source: `Source.GOLD`, `Source.MAJORITY` or `Source.NONE`, for `label`.
    """

    label: IntArray
    majority: IntArray
    margin: IntArray
    n_ratings: IntArray
    needs_adjudication: BoolArray
    source: npt.NDArray[np.int8]


def consensus(
    item: npt.ArrayLike,
    value: npt.ArrayLike,
    k: int,
    *,
    min_margin: int = 1,
    gold: npt.ArrayLike | None = None,
    n_items: int | None = None,
) -> Consensus:
    """Consensus: each item's label by strict majority of its ratings (more than half), unless a gold label overrides.

    Precondition: at most one rating per rater per item. `gold[i]` is item i's gold label, or -1 for none. Arrays
    cover items 0..n_items-1, where n_items defaults to len(gold), else to the largest item id + 1. `min_margin` (≥ 1)
    is the smallest lead over the runner-up that settles an item; a strict majority always leads by at least 1, so
    the default asks for a strict majority only, and min_margin=2 also sends 2-to-1 splits to adjudication.
    """
    k = _k(k)
    if min_margin < 1:
        raise ValueError("min_margin must be at least 1")
    item_, value_ = _codes(item, "item"), _codes(value, "value", k)
    _aligned(item_, value_)
    gold_: IntArray | None = None
    if gold is not None:
        gold_arr = np.asarray(gold)
        if gold_arr.ndim != 1 or (gold_arr.size and not np.issubdtype(gold_arr.dtype, np.integer)):
            raise ValueError("gold must be a one-dimensional array of integer codes (-1 for none)")
        gold_ = gold_arr.astype(np.int64)
        if gold_.size and (gold_.min() < -1 or gold_.max() >= k):
            raise ValueError(f"gold holds a code outside -1..{k - 1}")
        if n_items is None:
            n_items = gold_.size
        elif gold_.size != n_items:
            raise ValueError("gold must have one entry per item")
    if n_items is None:
        n_items = int(item_.max()) + 1 if item_.size else 0
    if item_.size and int(item_.max()) >= n_items:
        raise ValueError("an item id is outside 0..n_items-1")
    counts = _item_counts(item_, value_, k, n_items)
    ranked = np.sort(counts, axis=1)
    n_ratings = counts.sum(axis=1)
    margin = ranked[:, -1] - ranked[:, -2]
    has_majority = 2 * ranked[:, -1] > n_ratings
    majority = np.where(has_majority, counts.argmax(axis=1), -1)
    agreed = has_majority & (margin >= min_margin)
    is_gold = gold_ >= 0 if gold_ is not None else np.zeros(n_items, dtype=np.bool_)
    label = np.where(is_gold, gold_ if gold_ is not None else -1, np.where(agreed, majority, -1))
    source = np.where(is_gold, Source.GOLD, np.where(agreed, Source.MAJORITY, Source.NONE)).astype(np.int8)
    return Consensus(
        label=label.astype(np.int64),
        majority=majority.astype(np.int64),
        margin=margin,
        n_ratings=n_ratings,
        needs_adjudication=(n_ratings > 0) & ~is_gold & ~agreed,
        source=source,
    )


# --------------------------------------------------------------------------------------------------------------------
# Judge–human agreement.

ConfusionMatrix = tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class BinaryJudgeReport:
    """How a pass/fail judge agrees with human labels on the same items ("pass" is the positive class).

    confusion: counts with rows = human, columns = judge, both in the order [fail, pass].
    accuracy: the share of items where the judge gives the human label.
    kappa: Cohen's κ between judge and human.
    tpr: true positive rate, the share of items humans passed that the judge passes too.
    tnr: true negative rate, the share of items humans failed that the judge fails too.
    fail_precision: the share of items the judge fails that humans failed too.
    fail_recall: the share of items humans failed that the judge catches (the same number as tnr).
    """

    n: int
    confusion: ConfusionMatrix
    accuracy: Figure
    kappa: Figure
    tpr: Figure
    tnr: Figure
    fail_precision: Figure
    fail_recall: Figure


def _aligned_verdicts(
    first: npt.ArrayLike, second: npt.ArrayLike, k: int, names: tuple[str, str] = ("human", "judge")
) -> tuple[IntArray, IntArray]:
    first_, second_ = _codes(first, names[0], k), _codes(second, names[1], k)
    _aligned(first_, second_)
    return first_, second_


def binary_judge_report(
    human: npt.ArrayLike, judge: npt.ArrayLike, *, n_boot: int = N_BOOT, seed: int = 0
) -> BinaryJudgeReport:
    """Agreement of a pass/fail judge with the human label, item by item (`human[i]` and `judge[i]` label item i).

    `human` is one settled label per item, e.g. `consensus(...).label` on the items whose source is not NONE.
    The rates are proportions of independent items with Clopper–Pearson intervals (TPR and TNR given the items' human
    labels, precision of fail given the judge's); κ has a BCa bootstrap interval, or where that gives none a Dirichlet
    posterior interval over the confusion table.
    """
    _check_boot(n_boot, seed)
    human_, judge_ = _aligned_verdicts(human, judge, 2)
    table = _table(human_, judge_, 2)
    n = int(human_.size)
    ff, fp, pf, pp = (int(table[h, j]) for h, j in ((FAIL, FAIL), (FAIL, PASS), (PASS, FAIL), (PASS, PASS)))
    on = n_boot > 0
    no_fail = "no items the humans failed: {} is not defined"
    return BinaryJudgeReport(
        n=n,
        confusion=tuple(tuple(int(c) for c in row) for row in table),
        accuracy=_proportion_figure(ff + pp, n, n=n, reason="no items: accuracy is not defined", intervals=on),
        kappa=_judge_kappa_figure(
            table, n_boot=n_boot, seed=seed, n=n, reason=ONE_CATEGORY_KAPPA if n else "no items: κ is not defined"
        ),
        tpr=_proportion_figure(
            pp, pf + pp, n=pf + pp, reason="no items the humans passed: TPR is not defined", intervals=on
        ),
        tnr=_proportion_figure(ff, ff + fp, n=ff + fp, reason=no_fail.format("TNR"), intervals=on),
        fail_precision=_proportion_figure(
            ff,
            ff + pf,
            n=ff + pf,
            reason="the judge failed no item: precision of fail is not defined",
            intervals=on,
        ),
        fail_recall=_proportion_figure(ff, ff + fp, n=ff + fp, reason=no_fail.format("recall of fail"), intervals=on),
    )


@dataclass(frozen=True)
class PairwiseJudgeReport:
    """How an a/b/tie judge agrees with human preferences on the same items.

    confusion: counts with rows = human, columns = judge, both in the order [a, b, tie].
    agreement: the share of items where the judge gives the human verdict, a tie counting as a verdict.
    agreement_without_ties: the same share over the items where neither the human nor the judge said tie
        (its `n` says how many items that leaves).
    kappa: Cohen's κ between judge and human over the three verdicts a, b and tie.
    """

    n: int
    confusion: ConfusionMatrix
    agreement: Figure
    agreement_without_ties: Figure
    kappa: Figure


def pairwise_judge_report(
    human: npt.ArrayLike, judge: npt.ArrayLike, *, n_boot: int = N_BOOT, seed: int = 0
) -> PairwiseJudgeReport:
    """Agreement of an a/b/tie judge with the human verdict, item by item (`human[i]` and `judge[i]` judge item i).

    The agreements are proportions of independent items with Clopper–Pearson intervals (without ties: given how many
    items are decisive); κ has a BCa bootstrap interval, or where that gives none a Dirichlet posterior
    interval over the confusion table.
    """
    _check_boot(n_boot, seed)
    human_, judge_ = _aligned_verdicts(human, judge, 3)
    table = _table(human_, judge_, 3)
    n = int(human_.size)
    decisive = table[:TIE, :TIE]
    on = n_boot > 0
    return PairwiseJudgeReport(
        n=n,
        confusion=tuple(tuple(int(c) for c in row) for row in table),
        agreement=_proportion_figure(
            int(np.trace(table)), n, n=n, reason="no items: agreement is not defined", intervals=on
        ),
        agreement_without_ties=_proportion_figure(
            int(np.trace(decisive)),
            int(decisive.sum()),
            n=int(decisive.sum()),
            reason="no items where both the human and the judge chose a or b: agreement without ties is not defined",
            intervals=on,
        ),
        kappa=_judge_kappa_figure(
            table, n_boot=n_boot, seed=seed, n=n, reason=ONE_CATEGORY_KAPPA if n else "no items: κ is not defined"
        ),
    )


def position_consistency(
    verdict_ab: npt.ArrayLike, verdict_ba: npt.ArrayLike, *, n_boot: int = N_BOOT, seed: int = 0
) -> Figure:
    """Position consistency: the share of items where the judge gives the same verdict with the two outputs swapped.

    `verdict_ab[i]` is the verdict with the outputs shown in the order (a, b), `verdict_ba[i]` with them shown as
    (b, a) but already mapped back to the canonical a/b/tie terms, so a consistent judge has them equal. The interval
    is Clopper–Pearson's, so `n_boot` only turns it off (0) and `seed` is not used; both stay for a uniform signature.
    """
    _check_boot(n_boot, seed)
    ab, ba = _aligned_verdicts(verdict_ab, verdict_ba, 3, ("verdict_ab", "verdict_ba"))
    same = int((ab == ba).sum())
    return _proportion_figure(
        same, int(ab.size), n=int(ab.size), reason="no items: position consistency is not defined", intervals=n_boot > 0
    )


def corrected_pass_rate(
    observed_pass_rate: float,
    n_unlabeled: int,
    tpr: float,
    tnr: float,
    n_pos: int,
    n_neg: int,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> Figure:
    """Corrected pass rate: the judge's pass rate on unlabeled items, corrected for its known errors (Rogan–Gladen).

    θ = (p + TNR − 1) / (TPR + TNR − 1), clipped to [0, 1], where p is the judge's pass rate on `n_unlabeled` items
    and TPR, TNR were measured on `n_pos` human-passed and `n_neg` human-failed items. Not defined when
    TPR + TNR ≤ 1: such a judge is no better than chance and its verdicts carry no information about the true rate.
    The interval draws p, TPR and TNR independently from their Jeffreys Beta(x + ½, n − x + ½) distributions, which
    stay honest at rates of exactly 0 or 1, and recomputes θ.
    """
    _check_boot(n_boot, seed)
    for name, rate in (("observed_pass_rate", observed_pass_rate), ("tpr", tpr), ("tnr", tnr)):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1]")
    for name, count in (("n_unlabeled", n_unlabeled), ("n_pos", n_pos), ("n_neg", n_neg)):
        if count < 0:
            raise ValueError(f"{name} cannot be negative")
    if n_unlabeled == 0:
        return _undefined(0, "no unlabeled items: there is no pass rate to correct")
    if n_pos == 0 or n_neg == 0:
        return _undefined(n_unlabeled, "TPR and TNR need items humans passed and items humans failed")
    youden = tpr + tnr - 1.0
    if youden <= 0.0:
        return _undefined(
            n_unlabeled, "the judge is no better than chance (TPR + TNR ≤ 1): the pass rate cannot be corrected"
        )
    value = min(1.0, max(0.0, (observed_pass_rate + tnr - 1.0) / youden))
    if n_boot == 0:
        return Figure(value=value, ci_low=None, ci_high=None, n=n_unlabeled)
    rng = np.random.default_rng(seed)

    def draw(rate: float, count: int) -> FloatArray:
        return rng.beta(rate * count + 0.5, (1.0 - rate) * count + 0.5, size=n_boot)

    p, tpr_, tnr_ = draw(observed_pass_rate, n_unlabeled), draw(tpr, n_pos), draw(tnr, n_neg)
    youden_ = tpr_ + tnr_ - 1.0
    ok = youden_ > 0.0
    theta = np.clip((p[ok] + tnr_[ok] - 1.0) / youden_[ok], 0.0, 1.0)
    low, high = _percentile_interval(theta, int((~ok).sum()))
    return Figure(value=value, ci_low=low, ci_high=high, n=n_unlabeled)
