"""Cohen's κ for every pair of raters at once, with BCa intervals computed over a pairs axis.

`stats.agreement.pairwise_cohen_kappas` is the public entry point; this module holds its machinery. A crowd project
with R raters has R(R − 1)/2 pairs (7,503 at 123 raters, 44,850 at 300), each bootstrapped 1,000 times: done pair by
pair in Python that took seconds, here it is a few numpy operations over arrays of pairs × resamples.

A pair's figure depends on its own k×k table (the items both raters labeled, by category pair) and the seed only, never
on the other raters (each pair's interval stays put when someone else labels more). Its resamples are an exact
nonparametric bootstrap of its n shared items: each resample draws n of them uniformly with replacement and counts the
draws in each cell of the table. How the draws are made depends on n alone:

- n ≤ SHARED_DRAWS_MAX_ITEMS: the resamples are shared by every pair with the same n. For that n, `shared_draws` draws
  n_boot × n slot numbers uniformly from 0..n−1 (seeded by (seed, n)); a pair orders its items by cell, so cell c holds
  the slots from C_{c−1} to C_c − 1 (C the running total of the table), and its count in a resample is how many draws
  fell in that range. One draw serves thousands of pairs (at 123 raters over the same 350 items, all 7,503).
- n > SHARED_DRAWS_MAX_ITEMS: drawing n_boot × n slots for one pair would cost more than drawing its k² cell counts
  directly, so each such pair draws them from Multinomial(n, table / n) with its own generator seeded by (seed, i, j),
  exactly as `agreement._kappa_figure` does (same figures as before this module existed).

Either way the figures then go through the same steps as `agreement._bca_figure` (undefined resamples, jackknife
acceleration, bias correction, linear quantiles), vectorised; tests/judges/test_pair_kappas.py checks them against
that per-pair code on random data.
"""

from __future__ import annotations

from collections.abc import Iterator
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from annotate.stats import figure as ag

IntArray = ag.IntArray
FloatArray = ag.FloatArray

# Up to this many shared items a pair's resamples come from the draws shared by all pairs with as many items (cost:
# n_boot × n slot draws per distinct n, about 14 ns each); above it, from its own multinomial (about 0.3 ms a pair).
SHARED_DRAWS_MAX_ITEMS = 1000
# Up to this many items × raters, and with labels in at least half of those cells (crowds where every rater sees
# every item), pair tables come from products of a dense items × raters indicator per category (16 MB each at most);
# otherwise from the labels sorted by item, which costs one step per pair of labels on an item.
DENSE_MAX_CELLS = 1 << 22
# Pairs per block of the vectorised interval computation: bounds memory at a few arrays of BLOCK × n_boot floats.
BLOCK = 256


def pair_tables(item: IntArray, rater: IntArray, value: IntArray, k: int) -> tuple[IntArray, IntArray, IntArray]:
    """For every pair of raters that share an item: (rater_i, rater_j, tables), i < j, tables P × k² (row-major)."""
    if item.size < 2:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros((0, k * k), dtype=np.int64)
    n_raters = int(rater.max()) + 1
    n_items = int(item.max()) + 1
    if n_items * n_raters <= DENSE_MAX_CELLS and 2 * item.size >= n_items * n_raters:
        return _pair_tables_dense(item, rater, value, k, n_items, n_raters)
    order = np.argsort(item * n_raters + rater)
    it, ra, va = item[order], rater[order], value[order]
    # Labels are sorted by item, then rater: the partners of label p within its item are p+1, p+2, ... and the loop
    # runs over that offset (at most the largest number of ratings on one item), never over labels.
    codes = []
    for offset in range(1, n_raters):
        first = np.flatnonzero(it[offset:] == it[:-offset])
        if first.size == 0:
            break
        second = first + offset
        codes.append((ra[first] * n_raters + ra[second]) * (k * k) + va[first] * k + va[second])
    if not codes:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros((0, k * k), dtype=np.int64)
    code = np.concatenate(codes)
    if n_raters * n_raters * k * k <= max(1 << 24, 4 * code.size):
        counts = np.bincount(code, minlength=n_raters * n_raters * k * k).reshape(-1, k * k)
        pairs = np.flatnonzero(counts.sum(axis=1))
        return pairs // n_raters, pairs % n_raters, counts[pairs].astype(np.int64, copy=False)
    code, count = np.unique(code, return_counts=True)
    pair, cell = code // (k * k), code % (k * k)
    pairs, which = np.unique(pair, return_inverse=True)
    tables = np.zeros((pairs.size, k * k), dtype=np.int64)
    np.add.at(tables, (which, cell), count)
    return pairs // n_raters, pairs % n_raters, tables


def _pair_tables_dense(
    item: IntArray, rater: IntArray, value: IntArray, k: int, n_items: int, n_raters: int
) -> tuple[IntArray, IntArray, IntArray]:
    """pair_tables through matrix products: with X_a the items × raters indicator of category a, cell (a, b) of every
    pair's table is X_aᵀ X_b. Counts stay below 2²⁴, so 32-bit float sums are exact. einsum, not `@`: BLAS would
    start threads, which on a busy machine made a 3 ms product take a second and more."""
    onehot = []
    for a in range(k):
        x = np.zeros((n_items, n_raters), dtype=np.float32)
        chosen = value == a
        x[item[chosen], rater[chosen]] = 1.0
        onehot.append(x)
    upper = np.triu_indices(n_raters, 1)
    tables = np.empty((upper[0].size, k * k), dtype=np.int64)
    for a in range(k):
        for b in range(k):
            tables[:, a * k + b] = np.einsum("ti,tj->ij", onehot[a], onehot[b])[upper]
    keep = tables.sum(axis=1) > 0
    return upper[0][keep].astype(np.int64), upper[1][keep].astype(np.int64), tables[keep]


def shared_draws(n: int, n_boot: int, seed: int) -> npt.NDArray[np.float32]:
    """(n + 1) × n_boot: entry [m, b] counts the draws of resample b (n slots drawn uniformly from 0..n−1) below m.

    A pair with n shared items ordered by cell has, in resample b, F[C_c, b] − F[C_{c−1}, b] items in cell c. Counts
    are whole numbers held as floats (exact), as the κ arithmetic takes them.
    """
    rng = np.random.default_rng((seed, n, 0))  # (seed, n, 0) never equals a pair's (seed, i, j): j > i ≥ 0
    slots = rng.integers(0, n, size=(n_boot, n), dtype=np.int64)
    slots += (np.arange(n_boot, dtype=np.int64) * (n + 1))[:, None]
    hist = np.bincount(slots.reshape(-1), minlength=n_boot * (n + 1)).reshape(n_boot, n + 1).T
    out = np.zeros((n + 1, n_boot), dtype=np.float32)
    np.cumsum(hist[:-1], axis=0, out=out[1:])
    return out


def pair_draws(
    tables: IntArray, i: IntArray, j: IntArray, *, n_boot: int, seed: int
) -> Iterator[tuple[IntArray, npt.NDArray[np.floating]]]:
    """(positions, draws) blocks covering every pair given: draws[c, p, b] is the count in cell c of pair positions[p]
    in resample b (cells first, so that each cell is one contiguous plane). Every pair needs at least two items."""
    n = tables.sum(axis=1)
    cells = tables.shape[1]
    small = np.flatnonzero(n <= SHARED_DRAWS_MAX_ITEMS)
    for size in np.unique(n[small]).tolist():
        group = small[n[small] == size]
        cdf = shared_draws(size, n_boot, seed)
        bounds = np.zeros((cells + 1, group.size), dtype=np.int64)
        np.cumsum(tables[group].T, axis=0, out=bounds[1:])
        for start in range(0, group.size, BLOCK):
            at = cdf[bounds[:, start : start + BLOCK]]  # (k² + 1) × pairs × n_boot
            yield group[start : start + BLOCK], at[1:] - at[:-1]
    large = np.flatnonzero(n > SHARED_DRAWS_MAX_ITEMS)
    for start in range(0, large.size, BLOCK):
        block = large[start : start + BLOCK]
        draws = np.empty((cells, block.size, n_boot), dtype=np.float64)
        for row, p in enumerate(block.tolist()):
            freq = tables[p]
            rng = np.random.default_rng((seed, int(i[p]), int(j[p])))
            draws[:, row, :] = rng.multinomial(int(n[p]), freq / n[p], size=n_boot).T  # as agreement._resample
        yield block, draws


def kappa_terms(cells: npt.NDArray[np.floating], k: int) -> tuple[npt.NDArray[np.floating], npt.NDArray[np.floating]]:
    """`agreement._kappa_terms` for tables held cells first (k² planes of any shape): (n·agree − chance, n² − chance).

    The counts are whole numbers, so every sum here is exact in any order and the result equals that function's.
    """
    n = cells.sum(axis=0)
    agree = cells[:: k + 1].sum(axis=0)
    chance = np.zeros_like(n)
    for a in range(k):
        row = cells[a * k : (a + 1) * k].sum(axis=0)
        row *= cells[a::k].sum(axis=0)
        chance += row
    return n * agree - chance, n * n - chance


def _linear_quantile(ordered: FloatArray, m: IntArray, q: FloatArray) -> FloatArray:
    """np.quantile(row[:m], q) (linear, numpy's own arithmetic) for every row of a row-sorted array."""
    virtual = (m - 1) * q
    previous = np.floor(virtual)
    above = virtual >= m - 1
    below = virtual < 0
    prev_index = np.where(above, m - 1, np.where(below, 0, previous)).astype(np.int64)
    next_index = np.where(above, m - 1, np.where(below, 0, previous + 1)).astype(np.int64)
    a = np.take_along_axis(ordered, prev_index[:, None], axis=1)[:, 0]
    b = np.take_along_axis(ordered, next_index[:, None], axis=1)[:, 0]
    gamma = virtual - np.where(above, m - 1, np.where(below, 0, previous))
    diff = b - a
    return np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)


def bca_intervals(
    tables: IntArray, draws: npt.NDArray[np.floating], value: FloatArray, k: int
) -> tuple[FloatArray, FloatArray, ag.BoolArray]:
    """The BCa 95% interval of κ for each pair (tables P × k², draws k² × P × n_boot, value its κ): (low, high, has),
    `has` false where `agreement._bca_figure` gives no interval. The same steps as there, over a pairs axis."""
    cells, _n_pairs, n_boot = draws.shape
    num32, den32 = kappa_terms(draws, k)
    num, den = num32.astype(np.float64), den32.astype(np.float64)  # whole numbers: exact in either width
    ok = den != 0
    m = ok.sum(axis=1)
    has = (n_boot - m) <= ag.MAX_UNDEFINED_SHARE * n_boot
    # The jackknife: leave out one item of each cell the pair has (its weight: how many items the cell holds).
    present = tables > 0
    left_out = tables.T[:, :, None].astype(np.float64) - np.eye(cells)[:, None, :]  # cells × pairs × left-out cell
    jack_num, jack_den = kappa_terms(left_out, k)
    has &= ~((jack_den == 0) & present).any(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = np.where(ok, num / den, np.inf)  # undefined resamples sort last, past the m defined ones
        jack = np.where(present, jack_num / jack_den, 0.0)
    weight = np.where(present, tables, 0).astype(np.float64)
    counted = np.count_nonzero(boot < value[:, None], axis=1) + np.count_nonzero(boot <= value[:, None], axis=1)
    below = counted / (2 * np.maximum(m, 1))
    has &= (below > 0) & (below < 1)
    # The normal quantile and distribution function of statistics.NormalDist, as agreement._bca_bounds uses: `below`
    # takes few distinct values (halves of 1/m), so its quantiles are looked up once each.
    normal = NormalDist()
    distinct, where = np.unique(np.where(has, below, 0.5), return_inverse=True)
    z0 = np.array([normal.inv_cdf(float(p)) for p in distinct])[where]
    mean = (weight * jack).sum(axis=1) / weight.sum(axis=1)
    d = np.where(present, mean[:, None] - jack, 0.0)
    spread = (weight * d * d).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        accel = np.where(spread > 0, (weight * d**3).sum(axis=1) / (6.0 * spread**1.5), 0.0)
    levels = []
    for z in (-ag._Z, ag._Z):
        shifted = z0 + z
        pole = accel * shifted >= 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            at = np.where(pole | ~has, 0.0, z0 + shifted / (1.0 - accel * shifted))
        level = np.array([normal.cdf(x) for x in at.tolist()])
        levels.append(np.where(pole, np.where(shifted > 0, 1.0, 0.0), level))
    boot.sort(axis=1)
    safe_m = np.maximum(m, 1)
    low = _linear_quantile(boot, safe_m, levels[0])
    high = _linear_quantile(boot, safe_m, levels[1])
    has &= low != high
    return low, high, has


def kappa_figures(
    tables: IntArray, i: IntArray, j: IntArray, k: int, *, min_shared: int, n_boot: int, seed: int
) -> list[ag.Figure]:
    """Cohen's κ of every pair's table with its interval, as `agreement._kappa_figure` with seed (seed, i, j) would
    give for pairs of more than SHARED_DRAWS_MAX_ITEMS items, and from the shared draws for the others."""
    n = tables.sum(axis=1)
    num, den = kappa_terms(tables.T.astype(np.float64), k)
    figures: list[ag.Figure | None] = [None] * n.size
    for p in np.flatnonzero(n < min_shared).tolist():
        shared = "1 item" if n[p] == 1 else f"{n[p]} items"
        figures[p] = ag._undefined(
            int(n[p]), f"only {shared} rated by both (fewer than {min_shared}): κ is not reported"
        )
    reported = n >= min_shared
    for p in np.flatnonzero(reported & (den == 0)).tolist():
        figures[p] = ag._undefined(int(n[p]), ag.ONE_CATEGORY_KAPPA)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = num / den
    defined = reported & (den != 0)
    resampled = defined & (n >= 2) if n_boot > 0 else np.zeros_like(defined)
    for p in np.flatnonzero(defined & ~resampled).tolist():
        figures[p] = ag.Figure(value=float(value[p]), ci_low=None, ci_high=None, n=int(n[p]))
    chosen = np.flatnonzero(resampled)
    for positions, draws in pair_draws(tables[chosen], i[chosen], j[chosen], n_boot=n_boot, seed=seed):
        at = chosen[positions]
        low, high, has = bca_intervals(tables[at], draws, value[at], k)
        for p, lo, hi, ok in zip(at.tolist(), low.tolist(), high.tolist(), has.tolist(), strict=True):
            v = float(value[p])
            figures[p] = ag.Figure(value=v, ci_low=lo if ok else None, ci_high=hi if ok else None, n=int(n[p]))
    assert all(f is not None for f in figures)
    return figures  # type: ignore[return-value]
