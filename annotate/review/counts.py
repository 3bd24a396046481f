"""Counts of failure modes per day or week: pure functions over plain rows, so they are tested without a database.

The unit is the reviewed item: in a period, a mode's share is the number of distinct items that some review in the
period noted with that mode, over the distinct items reviewed in the period (pass or fail), with its 95% Wilson
interval. Failing notes that no mode holds yet are counted the same way, as "Unassigned": a share that grows there
is semantic drift that the modes do not describe yet.

A mode *rises* in the latest period when the lower bound of its interval there is above the upper bound of its
interval over all earlier periods together: a change the sample sizes cannot explain away.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from annotate.stats.proportions import wilson_interval

UNASSIGNED = 0  # the mode id that stands for "a failing note in no mode"


@dataclass(frozen=True)
class ReviewRow:
    day: dt.date  # the local day of the review
    item_id: int
    verdict: str  # pass / fail
    mode_id: int | None


@dataclass(frozen=True)
class Share:
    k: int
    n: int
    lo: float
    hi: float

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else 0.0


@dataclass(frozen=True)
class ModeCounts:
    mode_id: int  # UNASSIGNED for failing notes in no mode
    per_period: tuple[Share | None, ...]  # None: nothing reviewed in that period
    total: Share | None
    rising: bool


@dataclass(frozen=True)
class Counts:
    periods: tuple[dt.date, ...]  # each period's first day, oldest first
    reviewed: tuple[int, ...]  # distinct items reviewed per period
    modes: tuple[ModeCounts, ...]
    n_reviewed: int  # distinct items reviewed over all periods (an item reviewed on two days counts once)


def period_start(day: dt.date, by: str) -> dt.date:
    """The first day of the day's period: the day itself, or the Monday of its ISO week."""
    if by == "week":
        return day - dt.timedelta(days=day.weekday())
    if by == "day":
        return day
    raise ValueError(f"unknown period {by!r}")


def share(k: int, n: int) -> Share | None:
    if n == 0:
        return None
    lo, hi = wilson_interval(k, n)
    return Share(k=k, n=n, lo=lo, hi=hi)


def failure_counts(rows: Iterable[ReviewRow], *, mode_ids: Sequence[int], by: str = "day") -> Counts:
    """Each mode's share of reviewed items per period (and over all of them), plus the unassigned failing notes."""
    reviewed: dict[dt.date, set[int]] = defaultdict(set)
    noted: dict[tuple[int, dt.date], set[int]] = defaultdict(set)
    for row in rows:
        start = period_start(row.day, by)
        reviewed[start].add(row.item_id)
        if row.verdict == "fail":
            noted[row.mode_id if row.mode_id is not None else UNASSIGNED, start].add(row.item_id)
    periods = tuple(sorted(reviewed))
    all_items = set().union(*reviewed.values()) if reviewed else set()
    out = []
    for mode_id in [*mode_ids, UNASSIGNED]:
        per = tuple(share(len(noted[mode_id, p]), len(reviewed[p])) for p in periods)
        items = set().union(*(noted[mode_id, p] for p in periods)) if periods else set()
        rising = False
        if len(periods) >= 2:
            earlier = periods[:-1]
            earlier_items = set().union(*(reviewed[p] for p in earlier))
            earlier_noted = set().union(*(noted[mode_id, p] for p in earlier))
            before, now = share(len(earlier_noted), len(earlier_items)), per[-1]
            rising = before is not None and now is not None and now.lo > before.hi
        out.append(ModeCounts(mode_id=mode_id, per_period=per, total=share(len(items), len(all_items)), rising=rising))
    return Counts(
        periods=periods,
        reviewed=tuple(len(reviewed[p]) for p in periods),
        modes=tuple(out),
        n_reviewed=len(all_items),
    )
