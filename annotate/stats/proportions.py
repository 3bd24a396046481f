"""Intervals for a proportion of independent items (a judge's accuracy, TPR, TNR, ...), in closed form: no resampling.

Pure functions of two counts; `agreement` gives every rate its Clopper–Pearson interval, and production estimates
use Wilson's for a human-only pass rate.
"""

from __future__ import annotations

import math

from annotate.stats.figure import _TAIL, _Z


def wilson_interval(successes: int, trials: int) -> tuple[float, float]:
    """The 95% Wilson score interval for `successes` of `trials` independent trials (Wilson 1927; Brown, Cai and
    DasGupta 2001 recommend it for small n). Precondition: trials ≥ 1."""
    p = successes / trials
    z2 = _Z * _Z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = _Z / (1 + z2 / trials) * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    # At 0 or all successes the bound is exactly 0 or 1: say so rather than leave a rounding residue.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def _beta_cdf(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b), the Beta(a, b) distribution function at x (a, b > 0), by
    its continued fraction evaluated with the modified Lentz method (Press et al., Numerical Recipes, 3rd ed., §6.4),
    on the side of the mean where it converges fast."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(x, a, b) / a
    return 1.0 - front * _beta_fraction(1.0 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    tiny = 1e-300

    def guard(v: float) -> float:
        return v if abs(v) > tiny else tiny

    c, d = 1.0, 1.0 / guard(1.0 - (a + b) * x / (a + 1.0))
    h = d
    for m in range(1, 100_000):
        even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d, c = 1.0 / guard(1.0 + even * d), guard(1.0 + even / c)
        h *= d * c
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d, c = 1.0 / guard(1.0 + odd * d), guard(1.0 + odd / c)
        h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _beta_quantile(q: float, a: float, b: float) -> float:
    """The q-quantile of Beta(a, b), by bisection on `_beta_cdf` (monotone, so bisection cannot fail) to 1e-15."""
    low, high = 0.0, 1.0
    while high - low > 1e-15:
        mid = (low + high) / 2
        if _beta_cdf(mid, a, b) < q:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def clopper_pearson_interval(successes: int, trials: int) -> tuple[float, float]:
    """The 95% Clopper–Pearson interval for `successes` of `trials` independent trials (Clopper & Pearson 1934): the
    rates p for which neither tail of Binomial(trials, p) beyond the observed count is below 2.5%, i.e. the 2.5%
    quantile of Beta(x, n − x + 1) and the 97.5% quantile of Beta(x + 1, n − x). Its coverage is at least 95% for
    every true rate and every n, which no approximate interval (Wilson, Agresti–Coull, Jeffreys) guarantees at the
    handful of items a TNR can rest on. Precondition: 0 ≤ successes ≤ trials, trials ≥ 1."""
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError("a proportion needs 0 ≤ successes ≤ trials and at least one trial")
    low = 0.0 if successes == 0 else _beta_quantile(_TAIL, successes, trials - successes + 1)
    high = 1.0 if successes == trials else _beta_quantile(1.0 - _TAIL, successes + 1, trials - successes)
    return low, high
