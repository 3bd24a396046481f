"""Coverage and width of the production pass-rate estimates (judges/estimates.py) in simulated projects.

Issue 18 asks that the PPI++ interval for a criterion's pass rate on production records cover the true rate at least
94% of the time, be narrower than human labels alone, and that the release comparison be the corrected difference.
Each case simulates 2,000 projects (fixed seed): a true pass rate p; `N` = 2,000 production records judged by a judge
with the given TPR and TNR; humans label a random `n` of them (30, 50, 100, 300). For each project it computes, as the
production page does, PPI++ (`ppi_mean`), human-only (`human_mean`, Wilson) and Rogan–Gladen
(`agreement.corrected_pass_rate` from the judge's rate on the unlabeled records and its TPR/TNR on the labeled ones,
1,000 draws), and counts how often each interval holds p. An estimate that is refused counts as a miss. The PPI++
interval is the app's: Student t with n − 1 degrees of freedom and four pseudo-records in the rectifier's variance
(judges/estimates.py says why: the textbook normal interval covered 48–83% with a good judge at 30 labels).

Release comparison: two releases with true rates 0.80 and 0.72 (difference 0.08), each with n labeled of 1,000
records, the same judge. The corrected difference (`difference` of two PPI++ estimates) against the judge's raw
difference with its Wald interval, which estimates (TPR + TNR − 1) × 0.08 and so misses the truth.

Bias probe (`bias_probe`, HC3 intervals): judges whose pass probability is 0.15 + 0.6 × human label + β × z, z the
standardised output length (uniform lengths, so the model is exactly linear), β = 0 (no bias) and 0.05 (5 points per
SD), over 100, 300 and 1,000 labeled items: how often the interval holds β, and how often it excludes 0 (power).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tests.bench.run import Row

SIZES = (30, 50, 100, 300)
N_RECORDS = 2_000
# 2,000 rather than the 1,000 asked for: the Monte Carlo error of a coverage near 95% is then about ±1 point (95%).
N_PROJECTS = 2_000
SEED = 20261218
TARGET = 0.94


@dataclass(frozen=True)
class Case:
    name: str
    rate: float
    tpr: float
    tnr: float


CASES = (
    Case("typical judge", rate=0.70, tpr=0.90, tnr=0.75),
    Case("good judge, skewed rate", rate=0.90, tpr=0.97, tnr=0.85),
    Case("weak judge", rate=0.60, tpr=0.70, tnr=0.60),
)
RELEASES = (0.80, 0.72)


def _records(rng: np.random.Generator, n: int, rate: float, tpr: float, tnr: float) -> tuple[np.ndarray, np.ndarray]:
    truth = (rng.random(n) < rate).astype(np.float64)
    right = rng.random(n) < np.where(truth == 1, tpr, tnr)
    return truth, np.where(right, truth, 1 - truth)


def _rogan_gladen(y: np.ndarray, f_lab: np.ndarray, f_unl: np.ndarray, seed: int) -> tuple[float | None, float | None]:
    from annotate.stats import agreement

    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    tpr = float(f_lab[y == 1].mean()) if n_pos else 0.0
    tnr = float(1 - f_lab[y == 0].mean()) if n_neg else 0.0
    figure = agreement.corrected_pass_rate(float(f_unl.mean()), f_unl.size, tpr, tnr, n_pos, n_neg, seed=seed)
    return figure.ci_low, figure.ci_high


def simulate(case: Case, sizes: tuple[int, ...] = SIZES, n_projects: int = N_PROJECTS) -> list[dict[str, Any]]:
    from judges import estimates

    out = []
    for size in sizes:
        rng = np.random.default_rng((SEED, size, CASES.index(case)))
        hits: dict[str, int] = {"ppi": 0, "human": 0, "rogan_gladen": 0}
        widths: dict[str, list[float]] = {name: [] for name in hits}
        for project in range(n_projects):
            truth, judge = _records(rng, N_RECORDS, case.rate, case.tpr, case.tnr)
            y, f_lab, f_unl = truth[:size], judge[:size], judge[size:]
            bounds = {
                "ppi": (lambda e: (e.low, e.high))(estimates.ppi_mean(y, f_lab, f_unl)),
                "human": (lambda e: (e.low, e.high))(estimates.human_mean(y)),
                "rogan_gladen": _rogan_gladen(y, f_lab, f_unl, project),
            }
            for name, (low, high) in bounds.items():
                if low is not None and high is not None:
                    widths[name].append(high - low)
                    hits[name] += low <= case.rate <= high
        for name in hits:
            out.append(
                {
                    "size": size,
                    "estimate": name,
                    "coverage": hits[name] / n_projects,
                    "no_interval": n_projects - len(widths[name]),
                    "mean_width": float(np.mean(widths[name])) if widths[name] else None,
                }
            )
    return out


def simulate_releases(case: Case, sizes: tuple[int, ...] = SIZES, n_projects: int = N_PROJECTS) -> list[dict]:
    from judges import estimates

    truth_diff = RELEASES[0] - RELEASES[1]
    out = []
    for size in sizes:
        rng = np.random.default_rng((SEED, size, 99, CASES.index(case)))
        hits = {"corrected": 0, "raw": 0}
        widths: dict[str, list[float]] = {"corrected": [], "raw": []}
        for _ in range(n_projects):
            sides = []
            raw = []
            for rate in RELEASES:
                truth, judge = _records(rng, N_RECORDS // 2, rate, case.tpr, case.tnr)
                sides.append(estimates.ppi_mean(truth[:size], judge[:size], judge[size:]))
                raw.append((judge.mean(), judge.var() / judge.size))
            diff = estimates.difference(sides[0], sides[1])
            half = 1.959963984540054 * math.sqrt(raw[0][1] + raw[1][1])
            raw_diff = raw[0][0] - raw[1][0]
            for name, low, high in (
                ("corrected", diff.low, diff.high),
                ("raw", raw_diff - half, raw_diff + half),
            ):
                if low is not None and high is not None:
                    widths[name].append(high - low)
                    hits[name] += low <= truth_diff <= high
        for name in hits:
            out.append(
                {
                    "size": size,
                    "estimate": name,
                    "coverage": hits[name] / n_projects,
                    "no_interval": n_projects - len(widths[name]),
                    "mean_width": float(np.mean(widths[name])) if widths[name] else None,
                }
            )
    return out


PROBE_SIZES = (100, 300, 1_000)
PROBE_EFFECTS = (0.0, 0.05)


def simulate_probe(effect: float, sizes: tuple[int, ...] = PROBE_SIZES, n_projects: int = N_PROJECTS) -> list[dict]:
    from judges import estimates

    out = []
    for size in sizes:
        rng = np.random.default_rng((SEED, size, 7, int(effect * 1000)))
        hits = excludes = 0
        widths = []
        for _ in range(n_projects):
            human = (rng.random(size) < 0.6).astype(np.float64)
            z, _, _ = estimates.standardise(rng.uniform(200, 2000, size))
            verdict = (rng.random(size) < 0.15 + 0.6 * human + effect * z).astype(np.float64)
            found = estimates.bias_probe(verdict, human, {"length": z}).effects[0]
            hits += found.low <= effect <= found.high
            excludes += found.excludes_zero
            widths.append(found.high - found.low)
        out.append(
            {
                "size": size,
                "coverage": hits / n_projects,
                "power": excludes / n_projects,
                "mean_width": float(np.mean(widths)),
            }
        )
    return out


NAMES = {
    "ppi": "pass rate, PPI++ (t interval, four pseudo-records)",
    "human": "pass rate, human labels only (Wilson)",
    "rogan_gladen": "pass rate, Rogan–Gladen (Jeffreys draws)",
    "corrected": "release difference, PPI++ (variances added)",
    "raw": "release difference, judge's raw rates (Wald)",
}


def _row(case: Case, result: dict[str, Any], scale: str) -> Row:
    missing = result["no_interval"]
    if missing:
        among = result["coverage"] * N_PROJECTS / (N_PROJECTS - missing) if missing < N_PROJECTS else 0.0
        scale += f"; {missing} without an interval, counted as misses ({100 * among:.1f}% among the rest)"
    width = "—" if result["mean_width"] is None else f"{result['mean_width']:.3f}"
    target = f"≥ {100 * TARGET:.0f}" if result["estimate"] != "raw" else "(shown to be wrong)"
    return Row(
        f"Production estimate coverage: {NAMES[result['estimate']]}",
        scale,
        "coverage %, mean width",
        f"{100 * result['coverage']:.1f}, {width}",
        target,
    )


def bench_ppi_coverage() -> list[Row]:
    rows = []
    for case in CASES:
        for result in simulate(case):
            scale = (
                f"{case.name} (p = {case.rate}, TPR = {case.tpr}, TNR = {case.tnr}): {result['size']} human labels, "
                f"{N_RECORDS - result['size']:,} judged only, {N_PROJECTS:,} simulated projects (seed {SEED})"
            )
            rows.append(_row(case, result, scale))
    case = CASES[0]
    for result in simulate_releases(case):
        scale = (
            f"releases p = {RELEASES[0]} vs {RELEASES[1]}, {case.name} (TPR = {case.tpr}, TNR = {case.tnr}): "
            f"{result['size']} human labels of {N_RECORDS // 2:,} records per release, {N_PROJECTS:,} simulated "
            f"projects (seed {SEED})"
        )
        rows.append(_row(case, result, scale))
    for effect in PROBE_EFFECTS:
        for result in simulate_probe(effect):
            rows.append(
                Row(
                    "Judge bias probe: length effect (linear probability, HC3)",
                    f"true effect {100 * effect:.0f} points per SD of length, {result['size']:,} labeled items, "
                    f"{N_PROJECTS:,} simulated judges (seed {SEED})",
                    "coverage %, mean width (points), % intervals excluding 0",
                    f"{100 * result['coverage']:.1f}, {100 * result['mean_width']:.1f}, {100 * result['power']:.1f}",
                    f"≥ {100 * TARGET:.0f}",
                )
            )
    return rows


BENCHMARKS = [bench_ppi_coverage]
