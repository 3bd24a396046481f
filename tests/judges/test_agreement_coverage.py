"""A small, deterministic coverage check of the 95% intervals at 30 items (the full simulation is in `make bench`,
tests/bench/bench_coverage.py): 400 simulated projects with a fixed seed, a few seconds."""

from __future__ import annotations

import pytest

from tests.bench.bench_coverage import SCENARIOS, simulate


@pytest.mark.slow
def test_at_30_items_every_interval_covers_its_true_value_at_least_94_percent_of_the_time():
    results = simulate(SCENARIOS[0], sizes=(30,), n_projects=400, seed=7)
    assert {r["figure"] for r in results} == {"fleiss_kappa", "alpha", "kappa", "tpr", "tnr", "accuracy"}
    for result in results:
        # The plain percentile bootstrap covered 93.0–93.5% here for accuracy, Cohen's κ and Fleiss' κ.
        assert result["coverage"] >= 0.94, result
        assert result["mean_width"] is not None and result["mean_width"] < 0.7, result
