"""A reported figure (`Figure`: a value with its 95% interval, or the reason it is not defined) and the types and
constants both annotate.stats.agreement and its vectorised pairwise κ (annotate.stats.pair_kappas) build on.

Kept apart so that pair_kappas needs only this module and agreement can import pair_kappas without a cycle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

FAIL, PASS = 0, 1
A, B, TIE = 0, 1, 2

N_BOOT = 1000
CONFIDENCE = 0.95
# A resample can lack what a figure needs (no human "fail" drawn, so no TNR). Up to this share of such resamples the
# interval is taken over the others; past it no interval is given, because the missing resamples could sit in either
# tail and the 95% bounds would be a guess.
MAX_UNDEFINED_SHARE = 0.05

_TAIL = (1.0 - CONFIDENCE) / 2
_Z = NormalDist().inv_cdf(1.0 - _TAIL)  # 1.95996...


@dataclass(frozen=True)
class Figure:
    """One reported number with its 95% interval and the count of units (items) it is computed over.

    `value is None` exactly when the figure is not defined on the data, and then `reason` says why in a sentence.
    `ci_low`/`ci_high` are None when no interval can be given. A proportion of independent items (accuracy, TPR, ...)
    always has its Clopper–Pearson interval, even for one item; a judge's κ has its posterior interval whenever it is
    defined (and resampling on). A bootstrapped figure (human κ, α, ...) has none with resampling turned off
    (`n_boot=0`), with fewer than two items to resample, with more than 5% of resamples or any jackknife sample where
    the figure is undefined, or with every resample giving the same value (say κ = 1 when all ratings agree), where a
    zero-width interval would claim a certainty the data do not have.
    """

    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    reason: str | None = None

    def __post_init__(self) -> None:
        if (self.value is None) != (self.reason is not None):
            raise ValueError("a Figure has a value or a reason, never both or neither")
        if (self.ci_low is None) != (self.ci_high is None) or (self.value is None and self.ci_low is not None):
            raise ValueError("a Figure's interval has both bounds or none, and only with a value")
        for number in (self.value, self.ci_low, self.ci_high):
            if number is not None and not math.isfinite(number):
                raise ValueError(f"a Figure never holds {number!r}")
        if self.n < 0:
            raise ValueError("n counts units and cannot be negative")

    @property
    def defined(self) -> bool:
        return self.value is not None


def _undefined(n: int, reason: str) -> Figure:
    return Figure(value=None, ci_low=None, ci_high=None, n=n, reason=reason)


ONE_CATEGORY_KAPPA = "only one category present: κ is not defined"
