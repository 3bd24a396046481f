"""Reference kinds: what an item's human reference label is, decided once for reports, judge figures and exports.

An item's reference on a criterion is of one of four kinds:

- **gold**: a lead's gold label (it beats the annotators' labels, however many);
- **majority**: at least two labels with a strict majority (more than half chose it);
- **single**: exactly one label, so nobody checked it;
- **unsettled**: two or more labels and no strict majority (a split): no reference until a lead adjudicates.

An item with no label and no gold label is **unlabeled** (a judged production sample, say). Single labels serve as the
reference unless a judge is set not to use them (`Judge.single_label_reference`); the other kinds never change.

Every page, stored report and export row that names or counts reference kinds gets them from `kinds` (and the labels
from `labels`), so the agreement page, a judge's figures and an export can never disagree on what an item's reference
is. Pure functions over `agreement.Consensus`.
"""

from __future__ import annotations

import enum

import numpy as np
import numpy.typing as npt

from annotate.stats import agreement


class Kind(enum.IntEnum):
    UNLABELED = 0
    UNSETTLED = 1
    SINGLE = 2
    MAJORITY = 3
    GOLD = 4


# As pages, reports and exports name them (None: unlabeled, which has no reference).
NAMES: dict[int, str | None] = {
    Kind.UNLABELED: None,
    Kind.UNSETTLED: "unsettled",
    Kind.SINGLE: "single",
    Kind.MAJORITY: "majority",
    Kind.GOLD: "gold",
}
# The order in which kinds are counted and shown.
SHOWN = ("gold", "majority", "single", "unsettled")


def description(*, single: bool = True) -> str:
    """What the reference is, in words, for reports and judge pages."""
    text = "a lead's gold label where set, else the strict majority of two or more labels"
    if single:
        return text + ", else the single label of an item with one; split items have none"
    return text + "; items with one label (not used as reference) or split labels have none"


def kinds(found: agreement.Consensus) -> npt.NDArray[np.int8]:
    """Each item's reference kind (a `Kind` value), aligned with the consensus arrays.

    A single label is "single" whatever its consensus source says; one that a stricter consensus (min_margin > 1) did
    not settle is "unsettled", as it has no label.
    """
    n = found.n_ratings
    out = np.full(n.size, Kind.UNLABELED, dtype=np.int8)
    settled = found.source == agreement.Source.MAJORITY
    out[(n > 0) & ~settled] = Kind.UNSETTLED
    out[(n == 1) & settled] = Kind.SINGLE
    out[(n >= 2) & settled] = Kind.MAJORITY
    out[found.source == agreement.Source.GOLD] = Kind.GOLD
    return out


def usable(kind: npt.NDArray[np.int8], *, single: bool = True) -> npt.NDArray[np.bool_]:
    """Which items have a reference label: gold, majority, and single where single labels may serve."""
    ok = (kind == Kind.GOLD) | (kind == Kind.MAJORITY)
    return ok | (kind == Kind.SINGLE) if single else ok


def labels(found: agreement.Consensus, *, single: bool = True) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int8]]:
    """Each item's reference label (-1 where it has none) and its kind. With `single=False` an item with one label has
    no reference label, though its kind still says "single"."""
    kind = kinds(found)
    return np.where(usable(kind, single=single), found.label, -1), kind


def counts(kind: npt.NDArray[np.int8]) -> dict[str, int]:
    """How many items are of each kind, in SHOWN order (unlabeled items are not counted)."""
    tally = np.bincount(kind.astype(np.int64), minlength=len(Kind))
    return {name: int(tally[_CODES[name]]) for name in SHOWN}


_CODES = {name: code for code, name in NAMES.items() if name is not None}
