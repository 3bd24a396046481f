"""The per-annotator figures of the agreement report against a plain per-annotator computation."""

from __future__ import annotations

import numpy as np
import pytest

from annotate.reports import _annotators, _median_per_rater


def reference(rater, item, value, label_, comparable, names, rater_ids, times, hours):
    """One annotator at a time, as the report computed it before it was vectorised."""
    out = []
    for r in range(rater_ids.size):
        mine = rater == r
        if not mine.any():
            continue
        ref = label_[item[mine]]
        has_ref = (ref >= 0) & comparable[item[mine]]
        n_ref = int(has_ref.sum())
        known = times[mine][~np.isnan(times[mine])]
        active_hours = np.unique(hours[mine]).size
        out.append(
            {
                "annotator": names[int(rater_ids[r])],
                "n_labels": int(mine.sum()),
                "n_with_consensus": n_ref,
                "agreement_with_consensus": float(((value[mine] == ref) & has_ref).sum() / n_ref) if n_ref else None,
                "median_seconds_per_item": round(float(np.median(known)) / 1000, 1) if known.size else None,
                "labels_per_active_hour": round(float(mine.sum() / active_hours), 1),
            }
        )
    return sorted(out, key=lambda a: a["annotator"])


@pytest.mark.parametrize("seed", range(6))
def test_annotator_figures_equal_the_per_annotator_computation(seed):
    rng = np.random.default_rng(seed)
    n_labels, n_items, n_raters = 400, 60, 9
    rater = rng.integers(0, n_raters, size=n_labels)
    rater[rater == 4] = 5  # an annotator id with no labels
    item = rng.integers(0, n_items, size=n_labels)
    value = rng.integers(0, 2, size=n_labels)
    label_ = rng.integers(-1, 2, size=n_items)
    comparable = rng.random(n_items) < 0.8
    # Times in ms, some unknown (NaN); annotator 2 never reports one. Hours: a week from the epoch's hour 490,000.
    times = np.where(rng.random(n_labels) < 0.2, np.nan, rng.integers(500, 90_000, size=n_labels).astype(np.float64))
    times[rater == 2] = np.nan
    hours = 490_000 + rng.integers(0, 7 * 24, size=n_labels)
    rater_ids = np.arange(100, 100 + n_raters)
    names = {int(i): f"ann-{i}" for i in rater_ids}
    args = (rater, item, value, label_, comparable, names, rater_ids, times, hours)
    assert _annotators(*args) == reference(*args)


def test_median_per_rater_is_numpys_median_for_odd_and_even_counts():
    rater = np.array([0, 0, 0, 1, 1, 1, 1, 3], dtype=np.int64)
    times = np.array([5.0, 1.0, 3.0, 10.0, 2.0, 7.0, np.nan, 4.0])
    got = _median_per_rater(rater, times, 4)
    assert got[0] == 3.0 and got[1] == np.median([10.0, 2.0, 7.0]) and np.isnan(got[2]) and got[3] == 4.0
    assert _median_per_rater(np.array([0, 0], dtype=np.int64), np.array([1.0, 2.0]), 1)[0] == 1.5
