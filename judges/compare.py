"""Comparing two judge runs on the same items, and checking a run against its judge's target: pure functions.

Inputs are integer codes as in stats.agreement (binary: FAIL = 0, PASS = 1; pairwise: A = 0, B = 1, TIE = 2), one
entry per common item: `human[i]` is the human reference of item i, `a[i]` and `b[i]` the two runs' verdicts on it.

Deltas are b − a (the newer run minus the older), each with a 95% paired bootstrap interval: items are resampled
together, so both runs are scored on the same resampled items and what the items have in common cancels out. As in
stats.agreement, a figure depends on the items only through how many fall in each (human, a, b) pattern, so drawing N
items with replacement is done exactly by drawing the N pattern counts from a multinomial (see agreement._resample).

Unlike a single figure, a delta may have a zero-width interval: two runs that agree on every item differ by exactly 0
in every resample, and saying so is the point.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from annotate.stats import agreement

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

BINARY_FIGURES = ("accuracy", "kappa", "tpr", "tnr", "fail_precision")
PAIRWISE_FIGURES = ("agreement", "agreement_without_ties", "kappa")

LABELS = {
    "accuracy": "Accuracy",
    "kappa": "Cohen's κ",
    "tpr": "TPR",
    "tnr": "TNR",
    "fail_precision": "Precision of fail",
    "fail_recall": "Recall of fail",
    "agreement": "Agreement",
    "agreement_without_ties": "Agreement without ties",
    "position_consistency": "Position consistency",
}

# What each figure means; every page that prints one shows this beside it (hover and footnote).
DEFINITIONS = {
    "accuracy": "The share of compared items where the judge gives the human reference label.",
    "kappa": (
        "Cohen's κ: agreement between judge and humans beyond what chance would give with the same label shares "
        "(1 = perfect, 0 = chance, below 0 = worse than chance)."
    ),
    "tpr": "True positive rate: of the items the humans passed, the share the judge passes too.",
    "tnr": "True negative rate: of the items the humans failed, the share the judge fails too (catching failures).",
    "fail_precision": "Of the items the judge fails, the share the humans failed too.",
    "fail_recall": "Of the items the humans failed, the share the judge catches (the same number as TNR).",
    "agreement": "The share of compared items where the judge gives the human verdict, a tie counting as a verdict.",
    "agreement_without_ties": "The same share over the items where neither the humans nor the judge said tie.",
    "position_consistency": (
        "The share of items where the judge gives the same verdict with the two outputs shown in either order."
    ),
    "interval": (
        "95% intervals. Rates of items (accuracy, TPR, TNR, precision, agreement, consistency): Clopper–Pearson "
        "(exact) intervals. κ: bias-corrected and accelerated (BCa) bootstrap, the items resampled 1,000 times with "
        "a fixed seed; where that gives none (every item agreeing, or a label on too few items), the 2.5% and 97.5% "
        "quantiles of κ over 1,000 draws of the confusion table's shares from their Dirichlet posterior."
    ),
}


def figures_for(kind: str) -> tuple[str, ...]:
    return PAIRWISE_FIGURES if kind == "pairwise" else BINARY_FIGURES


def _terms(tables: FloatArray, name: str) -> tuple[FloatArray, FloatArray]:
    """(numerator, denominator) of a figure for a stack of k×k tables (rows = humans, columns = judge)."""
    total = tables.sum(axis=(-2, -1))
    if name in ("accuracy", "agreement"):
        return np.trace(tables, axis1=-2, axis2=-1), total
    if name == "kappa":
        agree = np.trace(tables, axis1=-2, axis2=-1)
        chance = (tables.sum(axis=-1) * tables.sum(axis=-2)).sum(axis=-1)
        return total * agree - chance, total * total - chance
    f, p = agreement.FAIL, agreement.PASS
    if name == "tpr":
        return tables[..., p, p], tables[..., p, :].sum(axis=-1)
    if name in ("tnr", "fail_recall"):
        return tables[..., f, f], tables[..., f, :].sum(axis=-1)
    if name == "fail_precision":
        return tables[..., f, f], tables[..., :, f].sum(axis=-1)
    if name == "agreement_without_ties":
        decisive = tables[..., : agreement.TIE, : agreement.TIE]
        return np.trace(decisive, axis1=-2, axis2=-1), decisive.sum(axis=(-2, -1))
    raise ValueError(f"unknown figure {name!r}")


@dataclass(frozen=True)
class Delta:
    """A figure of run a and of run b on the same items, and b − a with its 95% paired bootstrap interval."""

    name: str
    a: float | None
    b: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    reason: str | None = None

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name)


def _codes(values: npt.ArrayLike, name: str, k: int) -> IntArray:
    arr = np.asarray(values, dtype=np.int64).reshape(-1)
    if arr.size and (arr.min() < 0 or arr.max() >= k):
        raise ValueError(f"{name} holds codes outside 0..{k - 1}")
    return arr


def _aligned(human: npt.ArrayLike, a: npt.ArrayLike, b: npt.ArrayLike, k: int) -> tuple[IntArray, IntArray, IntArray]:
    h_, a_, b_ = _codes(human, "human", k), _codes(a, "a", k), _codes(b, "b", k)
    if not h_.size == a_.size == b_.size:
        raise ValueError("human, a and b must have one entry per item each")
    return h_, a_, b_


def paired_deltas(
    human: npt.ArrayLike,
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    *,
    kind: str,
    n_boot: int = agreement.N_BOOT,
    seed: int = 0,
) -> list[Delta]:
    """Each figure of the kind for run a and run b on the same items, and its delta b − a with a 95% interval.

    The interval is the 2.5th and 97.5th percentiles of the delta over resamples of the items in which the figure is
    defined for both runs; when it is undefined in more than 5% of them no interval is given (as in
    annotate.stats.agreement). Same data and seed, same intervals.
    """
    if n_boot < 0 or seed < 0:
        raise ValueError("n_boot and seed must be non-negative")
    k = 3 if kind == "pairwise" else 2
    h_, a_, b_ = _aligned(human, a, b, k)
    n = int(h_.size)
    freq = np.bincount((h_ * k + a_) * k + b_, minlength=k**3).astype(np.int64)
    rng = np.random.default_rng(seed)
    if n_boot and n >= 2:
        draws = np.vstack([freq[None, :], rng.multinomial(n, freq / n, size=n_boot)])
    else:
        draws = freq[None, :]
    cubes = draws.reshape(-1, k, k, k).astype(np.float64)  # [resample, human, a, b]
    tables_a, tables_b = cubes.sum(axis=3), cubes.sum(axis=2)
    out = []
    for name in figures_for(kind):
        num_a, den_a = _terms(tables_a, name)
        num_b, den_b = _terms(tables_b, name)
        value_a = float(num_a[0] / den_a[0]) if den_a[0] else None
        value_b = float(num_b[0] / den_b[0]) if den_b[0] else None
        if value_a is None or value_b is None:
            out.append(Delta(name, value_a, value_b, None, None, None, n, "not defined on these items for both runs"))
            continue
        delta = value_b - value_a
        low = high = None
        if draws.shape[0] > 1:
            ok = (den_a[1:] != 0) & (den_b[1:] != 0)
            undefined = int((~ok).sum())
            if ok.any() and undefined <= agreement.MAX_UNDEFINED_SHARE * ok.size:
                boot = num_b[1:][ok] / den_b[1:][ok] - num_a[1:][ok] / den_a[1:][ok]
                low_, high_ = np.quantile(boot, [0.025, 0.975])
                low, high = float(low_), float(high_)
        out.append(Delta(name, value_a, value_b, delta, low, high, n))
    return out


@dataclass(frozen=True)
class Flips:
    """Positions (into the common items) where the verdict changed its correctness against the human reference.

    fixed: a was wrong, b is right. broken: a was right, b is wrong. changed_wrong: both wrong, but differently
    (pairwise: a said tie, b prefers the output the humans rejected). The rest kept their verdict's correctness.
    """

    fixed: IntArray
    broken: IntArray
    changed_wrong: IntArray
    n_right_both: int
    n_wrong_both: int
    n: int


def flips(human: npt.ArrayLike, a: npt.ArrayLike, b: npt.ArrayLike, *, kind: str) -> Flips:
    k = 3 if kind == "pairwise" else 2
    h_, a_, b_ = _aligned(human, a, b, k)
    right_a, right_b = a_ == h_, b_ == h_
    wrong_both = ~right_a & ~right_b
    return Flips(
        fixed=np.flatnonzero(~right_a & right_b),
        broken=np.flatnonzero(right_a & ~right_b),
        changed_wrong=np.flatnonzero(wrong_both & (a_ != b_)),
        n_right_both=int((right_a & right_b).sum()),
        n_wrong_both=int(wrong_both.sum()),
        n=int(h_.size),
    )


# --- Targets ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetLine:
    """One figure against its target. `met` follows the point estimate; `ci_low` is shown beside it."""

    figure: str
    value: float | None
    ci_low: float | None
    target: float | None
    met: bool | None
    reason: str = ""

    @property
    def label(self) -> str:
        return LABELS.get(self.figure, self.figure)

    @property
    def firm(self) -> bool:
        """The lower bound of the 95% interval clears the target too."""
        return self.met is True and self.ci_low is not None and self.target is not None and self.ci_low >= self.target


@dataclass(frozen=True)
class TargetCheck:
    """calibrated: every figure's point estimate meets its target. not_yet: at least one does not. unknown: a figure
    the target needs is not defined on this run. none: the judge has no target."""

    status: str
    lines: tuple[TargetLine, ...]
    reason: str = ""

    @property
    def failing(self) -> tuple[TargetLine, ...]:
        return tuple(line for line in self.lines if line.met is False)


def target_figures(*, target: str, kind: str) -> tuple[str, ...]:
    """The report figures a kind of target is about (accuracy is called agreement in pairwise reports)."""
    if target == "tpr_tnr":
        return ("tpr", "tnr") if kind != "pairwise" else ()
    if target in ("kappa", "kappa_human"):
        return ("kappa",)
    if target == "accuracy":
        return ("agreement",) if kind == "pairwise" else ("accuracy",)
    return ()


def target_check(
    *,
    target: str,
    thresholds: Mapping[str, float | None],
    kind: str,
    figures: Mapping[str, Mapping[str, Any]],
    human_kappa: float | None = None,
) -> TargetCheck:
    """Whether a run's stored figures meet the judge's target.

    `thresholds` holds tpr, tnr, kappa and accuracy (None where not set); with the target "kappa_human" the κ to
    reach is `human_kappa`, the humans' own κ on the criterion. The rule: a figure meets its target when its point
    estimate is at least the target. Callers show the interval's lower bound beside it (TargetLine.firm says whether
    that clears the target too), so a lead sees how firm a "calibrated" is.
    """
    if not target:
        return TargetCheck("none", (), "No target set for this judge.")
    names = target_figures(target=target, kind=kind)
    if not names:
        return TargetCheck("unknown", (), "TPR and TNR targets apply to pass/fail judges only.")
    if target == "kappa_human":
        if human_kappa is None:
            return TargetCheck("unknown", (), "No human–human κ is stored for this criterion yet.")
        wanted: dict[str, float | None] = {"kappa": human_kappa}
    else:
        key = {"agreement": "accuracy"}
        wanted = {name: thresholds.get(key.get(name, name)) for name in names}
    lines = []
    for name in names:
        figure = figures.get(name) or {}
        value, goal = figure.get("value"), wanted[name]
        if goal is None:
            lines.append(TargetLine(name, value, figure.get("ci_low"), None, None, "no target number set"))
        elif value is None:
            lines.append(TargetLine(name, None, None, goal, None, str(figure.get("reason") or "not defined")))
        else:
            lines.append(TargetLine(name, float(value), figure.get("ci_low"), goal, float(value) >= goal))
    if any(line.met is False for line in lines):
        status = "not_yet"
    elif all(line.met is True for line in lines):
        status = "calibrated"
    else:
        status = "unknown"
    return TargetCheck(status, tuple(lines))
