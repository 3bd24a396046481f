"""Production quality estimates: a criterion's pass rate on production records from judge verdicts on every record
plus human labels on a random subset, the difference between two releases, and probes of the judge's biases.

Pure functions over numpy arrays, like stats/agreement.py; pages and the daily monitor only format what these return.

Three estimates of one pass rate sit side by side on the pages:

- human-only: the share of human passes among the `n_labeled` records humans labeled (Wilson interval);
- Rogan–Gladen (stats.agreement.corrected_pass_rate): the judge's pass rate on the records humans did not label,
  corrected for the judge's TPR and TNR measured on the labeled ones;
- PPI++ (`ppi_mean`): prediction-powered inference with power tuning (Angelopoulos, Duchi & Zrnic, "PPI++: Efficient
  Prediction-Powered Inference", arXiv:2311.01453, 2023). The human mean plus λ times how far the judge's mean on the
  unlabeled records sits from its mean on the labeled ones: θ̂ = mean(Y) + λ·(mean(f_unlabeled) − mean(f_labeled)).
  λ = 0 is the human-only mean; λ = 1 is plain PPI. λ̂ is the value that minimises the estimate's variance, clipped to
  [0, 1], so a judge that carries no information about the human label costs nothing (λ̂ ≈ 0) and a good judge narrows
  the interval. The interval is the central-limit one: θ̂ ± z·√(Var(λf_unlabeled)/N + Var(Y − λf_labeled)/n).

The labeled records must be a random sample of the same traffic as the unlabeled ones: that is what makes the estimate
unbiased whatever the judge's errors. `tests/bench/bench_ppi.py` measures the coverage and width of all three.

Refusals are explicit: an estimate that cannot be given has `value=None` and a `reason`; no output is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from annotate.stats.agreement import CONFIDENCE
from annotate.stats.proportions import wilson_interval

FloatArray = npt.NDArray[np.float64]

# Below this many human-labeled records the central-limit interval of PPI++ is not offered (tests/bench/bench_ppi.py
# measures its coverage from 30 labels up); the human-only figure, with Wilson's interval, still shows.
MIN_LABELED = 30
# "Plus four" for the rectifier: the variance of Y − λf is taken with one pseudo-record at each corner (human, judge)
# = (0, 0), (0, 1), (1, 0), (1, 1) besides the n labeled records. Without it a good judge that happened to agree with
# all 30 labels gives a rectifier variance of 0 and an interval far too narrow: in tests/bench/bench_ppi.py the
# textbook interval covered 83% (p = 0.9, 30 labels) and 48% (p = 0.97); with it, 95% and more. Like Agresti & Coull's
# two successes and two failures, it only widens the interval, and its weight vanishes as n grows. The point estimate
# is not changed.
PSEUDO = 1.0


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must lie strictly between 0 and 1")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def student_quantile(confidence: float, df: int) -> float:
    """The two-sided Student t quantile for `df` degrees of freedom, from the normal one by the Cornish–Fisher
    expansion (Abramowitz & Stegun 26.7.5; error under 1e-5 from df = 10 on), so numpy stays the only dependency."""
    if df < 1:
        raise ValueError("df must be at least 1")
    z = _z(confidence)
    v = float(df)
    terms = (
        (z**3 + z) / 4,
        (5 * z**5 + 16 * z**3 + 3 * z) / 96,
        (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384,
        (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160,
    )
    return z + sum(term / v ** (i + 1) for i, term in enumerate(terms))


@dataclass(frozen=True)
class Estimate:
    """A pass rate (or a difference of two) with its interval and the counts it rests on.

    `n_labeled` records carry a human label (and, for PPI++, a judge verdict); `n_unlabeled` records carry only a
    judge verdict. `value is None` exactly when no estimate can be given, and then `reason` says why. `se` is the
    standard error behind a central-limit interval (None for Wilson); `lam` the PPI++ weight given to the judge.
    """

    value: float | None
    low: float | None
    high: float | None
    n_labeled: int
    n_unlabeled: int
    se: float | None = None
    lam: float | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if (self.value is None) != (self.reason is not None):
            raise ValueError("an Estimate has a value or a reason, never both or neither")
        if (self.low is None) != (self.high is None) or (self.value is None and self.low is not None):
            raise ValueError("an Estimate's interval has both bounds or none, and only with a value")

    @property
    def width(self) -> float | None:
        return None if self.low is None or self.high is None else self.high - self.low


def _refuse(n_labeled: int, n_unlabeled: int, reason: str) -> Estimate:
    return Estimate(None, None, None, n_labeled, n_unlabeled, reason=reason)


def _unit_array(values: npt.ArrayLike, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    if array.size and not (np.isfinite(array).all() and array.min() >= 0.0 and array.max() <= 1.0):
        raise ValueError(f"{name} must hold values in [0, 1] (1 = pass, 0 = fail)")
    return array


def _clip01(x: float) -> float:
    return min(1.0, max(0.0, x))


def ppi_lambda(y_labeled: FloatArray, f_labeled: FloatArray, f_unlabeled: FloatArray) -> float:
    """The variance-minimising PPI++ weight for a mean, clipped to [0, 1].

    λ̂ = Cov(Y, f) / ((1 + n/N) · Var(f)), the covariance over the n labeled records (divided by n) and the variance of
    the judge over all n + N records (divided by n + N − 1), as in ADZ23 §2 and ppi_py. 0 when the judge never varies.
    """
    n, big_n = y_labeled.size, f_unlabeled.size
    cov = float(np.mean((y_labeled - y_labeled.mean()) * (f_labeled - f_labeled.mean())))
    var = float(np.var(np.concatenate([f_labeled, f_unlabeled]), ddof=1))
    if var <= 0.0:
        return 0.0
    return _clip01(cov / ((1.0 + n / big_n) * var))


def ppi_mean(
    y_labeled: npt.ArrayLike,
    f_labeled: npt.ArrayLike,
    f_unlabeled: npt.ArrayLike,
    *,
    lam: float | None = None,
    confidence: float = CONFIDENCE,
    clip: bool = True,
    min_labeled: int = MIN_LABELED,
    pseudo: float = PSEUDO,
    student: bool = True,
) -> Estimate:
    """PPI++ estimate of a pass rate: human labels `y_labeled` and judge verdicts `f_labeled` on the same records
    (aligned, 1 = pass, 0 = fail), and judge verdicts `f_unlabeled` on records humans did not label.

    `lam=None` tunes λ from the data (PPI++); a number fixes it (1 = PPI, 0 = the human mean). With `clip` the value and
    bounds are clipped to [0, 1], which never lowers coverage of a rate. `pseudo` is the weight of each of the four
    pseudo-records in the rectifier's variance (`_rectifier_variance`); with `student` the quantile is Student's t
    with n − 1 degrees of freedom rather than the normal one (the labeled term dominates the variance when the judge
    helps little, and it is estimated from n records). `pseudo=0, student=False` gives ppi_py's textbook interval.
    Fewer than `min_labeled` human labels, or no unlabeled record, is a refusal with its reason (the human-only
    figure is the honest one then).
    """
    y, f_lab, f_unl = (
        _unit_array(y_labeled, "y_labeled"),
        _unit_array(f_labeled, "f_labeled"),
        _unit_array(f_unlabeled, "f_unlabeled"),
    )
    if y.size != f_lab.size:
        raise ValueError("y_labeled and f_labeled must be aligned (one judge verdict per human-labeled record)")
    if lam is not None and not 0.0 <= lam <= 1.0:
        raise ValueError("lam must lie in [0, 1]")
    _z(confidence)
    n, big_n = int(y.size), int(f_unl.size)
    if n < max(2, min_labeled):
        return _refuse(
            n, big_n, f"{n} human-labeled records with a judge verdict; PPI++ needs at least {max(2, min_labeled)}"
        )
    if big_n == 0:
        return _refuse(n, big_n, "no record has a judge verdict without a human label: PPI++ has nothing to add")
    weight = ppi_lambda(y, f_lab, f_unl) if lam is None else float(lam)
    value = float(y.mean() + weight * (f_unl.mean() - f_lab.mean()))
    se = math.sqrt(float(np.var(weight * f_unl)) / big_n + _rectifier_variance(y, f_lab, weight, pseudo) / n)
    z = student_quantile(confidence, n - 1) if student else _z(confidence)
    low, high = value - z * se, value + z * se
    if clip:
        value, low, high = _clip01(value), _clip01(low), _clip01(high)
    return Estimate(value, low, high, n, big_n, se=se, lam=weight)


def _rectifier_variance(y: FloatArray, f: FloatArray, lam: float, pseudo: float) -> float:
    """Var(Y − λf) over the labeled records plus `pseudo` weight at each corner of the unit square (see PSEUDO)."""
    if pseudo < 0:
        raise ValueError("pseudo cannot be negative")
    corners_y, corners_f = np.array([0.0, 0.0, 1.0, 1.0]), np.array([0.0, 1.0, 0.0, 1.0])
    r = np.concatenate([y - lam * f, corners_y - lam * corners_f])
    w = np.concatenate([np.ones(y.size), np.full(4, pseudo)])
    mean = float((w * r).sum() / w.sum())
    return float((w * (r - mean) ** 2).sum() / w.sum())


def human_mean(y_labeled: npt.ArrayLike) -> Estimate:
    """The pass rate among human-labeled records alone, with Wilson's interval (honest at small n and at 0 or 1)."""
    y = _unit_array(y_labeled, "y_labeled")
    if y.size == 0:
        return _refuse(0, 0, "no human-labeled records")
    passes = float(y.sum())
    if not passes.is_integer():
        raise ValueError("human_mean takes 0/1 labels")
    low, high = wilson_interval(int(passes), int(y.size))
    value = passes / y.size
    return Estimate(value, low, high, int(y.size), 0, se=math.sqrt(value * (1.0 - value) / y.size))


def difference(a: Estimate, b: Estimate, *, confidence: float = CONFIDENCE) -> Estimate:
    """a − b for estimates from independent samples (two releases' records): the variances add.

    Both need a standard error (PPI++ or human-only estimates); a refusal on either side is a refusal here, naming it.
    The quantile is Student's t with the smaller side's n − 1 degrees of freedom (conservative, like ppi_mean's). The
    counts are the two sides' sums. Not clipped beyond [−1, 1]: a difference is reported as measured.
    """
    _z(confidence)
    for side, estimate in (("first", a), ("second", b)):
        if estimate.value is None or estimate.se is None:
            return _refuse(
                a.n_labeled + b.n_labeled,
                a.n_unlabeled + b.n_unlabeled,
                f"no estimate for the {side} release: {estimate.reason or 'it has no standard error'}",
            )
    assert a.value is not None and b.value is not None and a.se is not None and b.se is not None
    value = a.value - b.value
    se = math.sqrt(a.se**2 + b.se**2)
    z = student_quantile(confidence, max(1, min(a.n_labeled, b.n_labeled) - 1))
    return Estimate(
        value,
        max(-1.0, value - z * se),
        min(1.0, value + z * se),
        a.n_labeled + b.n_labeled,
        a.n_unlabeled + b.n_unlabeled,
        se=se,
    )


@dataclass(frozen=True)
class Effect:
    """One regression coefficient with its 95% interval: how many points the judge's pass probability moves."""

    name: str
    value: float
    low: float
    high: float
    se: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0.0 or self.high < 0.0


@dataclass(frozen=True)
class BiasProbe:
    """The linear-probability regression of the judge's verdict on the human label and the probed covariates."""

    effects: tuple[Effect, ...]
    n: int
    reason: str | None = None


def standardise(values: npt.ArrayLike) -> tuple[FloatArray, float, float]:
    """(x − mean) / sd with the mean and sd (population); a constant column stays all zeros with sd 0."""
    x = np.asarray(values, dtype=np.float64)
    mean, sd = float(x.mean()) if x.size else 0.0, float(x.std()) if x.size else 0.0
    return (x - mean) / sd if sd > 0 else np.zeros_like(x), mean, sd


def bias_probe(
    verdict: npt.ArrayLike,
    human: npt.ArrayLike,
    covariates: Mapping[str, npt.ArrayLike],
    *,
    confidence: float = CONFIDENCE,
) -> BiasProbe:
    """Does the judge's verdict depend on `covariates` once the human label is accounted for?

    Ordinary least squares of verdict (1 = pass) on an intercept, the human label (1 = pass) and each covariate (say the
    standardised output length, or 0/1 indicators of a metadata value), with HC3 heteroskedasticity-robust (sandwich)
    standard errors, which a 0/1 outcome needs (MacKinnon & White 1985). A covariate's coefficient is the change in
    the judge's pass probability per unit of it at the same human label; 0 for an unbiased judge. Returns the effects
    of the covariates (the human label's own coefficient is the judge's TPR − (1 − TNR), not a bias, and is left out).
    """
    z = _z(confidence)
    y = _unit_array(verdict, "verdict")
    h = _unit_array(human, "human")
    if y.size != h.size:
        raise ValueError("verdict and human must be aligned")
    columns = [np.ones_like(y), h]
    for name, values in covariates.items():
        column = np.asarray(values, dtype=np.float64)
        if column.shape != y.shape or not np.isfinite(column).all():
            raise ValueError(f"covariate {name!r} must be finite and aligned with the verdicts")
        columns.append(column)
    x = np.column_stack(columns)
    n, k = x.shape
    if n <= k + 1:
        return BiasProbe((), n, reason=f"{n} records with a verdict and a human label: too few for the regression")
    if np.linalg.matrix_rank(x) < k:
        return BiasProbe(
            (), n, reason="a covariate is constant or duplicates the human label on these records: no effect to fit"
        )
    xtx_inv = np.linalg.inv(x.T @ x)
    beta = xtx_inv @ x.T @ y
    resid = y - x @ beta
    leverage = np.einsum("ij,jk,ik->i", x, xtx_inv, x)
    if np.any(leverage >= 1.0 - 1e-12):
        return BiasProbe((), n, reason="a record alone determines a coefficient (leverage 1): no robust interval")
    meat = (x * (resid / (1.0 - leverage))[:, None] ** 2).T @ x
    cov = xtx_inv @ meat @ xtx_inv
    effects = []
    for i, name in enumerate(covariates, start=2):
        se = math.sqrt(max(0.0, float(cov[i, i])))
        value = float(beta[i])
        effects.append(Effect(name, value, value - z * se, value + z * se, se))
    return BiasProbe(tuple(effects), n)
