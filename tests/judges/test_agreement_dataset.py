"""The agreement maths on real human labels (Tülu 1 human evaluation), against the textbook formula written out here.

Reads the full file in the shared datasets (`shared/datasets/tulu1-human-eval/eval_annotations_tulu_1.jsonl`,
beside the repository) when it is there, else the demo sample shipped with the project
(`annotate/demo_data/tulu1_sample.jsonl`, which holds every row of every pair judged by two or more evaluators, so the
doubly-labeled items are the same).

An item is one (instance_id, model_a, model_b) as shown, the same key as the demo's pairwise project; each evaluator's
latest row per item counts (by timestamp_iso). The κ here is computed with plain dict counting from
κ = (p_o − p_e) / (1 − p_e) and never calls into annotate.stats.agreement.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import krippendorff
import numpy as np
import pytest

from annotate.stats import agreement as ag

# The formula is written with its own symbols, as the module writes it.

FULL = Path(__file__).resolve().parents[3] / "shared/datasets/tulu1-human-eval/eval_annotations_tulu_1.jsonl"
SAMPLE = Path(__file__).resolve().parents[2] / "annotate/demo_data/tulu1_sample.jsonl"
DATA = FULL if FULL.exists() else SAMPLE

ACCEPTABLE = {"no": 0, "yes": 1}
PREFERENCE = {
    "a-is-better": "a",
    "a-is-slightly-better": "a",
    "b-is-better": "b",
    "b-is-slightly-better": "b",
    "tie": "tie",
}
PAIRWISE_CODES = {"a": ag.A, "b": ag.B, "tie": ag.TIE}


def latest_rows_by_item() -> dict[tuple[str, str, str], list[dict]]:
    """Each item's kept rows (one per evaluator, their latest), in timestamp order."""
    with DATA.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    latest: dict[tuple[str, str, str, str], dict] = {}
    for row in sorted(rows, key=lambda r: r["timestamp_iso"]):
        latest[(row["instance_id"], row["model_a"], row["model_b"], row["evaluator"])] = row
    items: dict[tuple[str, str, str], list[dict]] = {}
    for (instance_id, model_a, model_b, _), row in latest.items():
        items.setdefault((instance_id, model_a, model_b), []).append(row)
    for kept in items.values():
        kept.sort(key=lambda r: (r["timestamp_iso"], r["evaluator"]))
    return items


ITEMS = latest_rows_by_item()
DOUBLY_LABELED = {key: rows for key, rows in ITEMS.items() if len(rows) >= 2}


def textbook_kappa(pairs: list[tuple[str, str]]) -> float:
    n = len(pairs)
    observed = sum(1 for first, second in pairs if first == second) / n
    first_counts = Counter(first for first, _ in pairs)
    second_counts = Counter(second for _, second in pairs)
    chance = sum(first_counts[c] * second_counts[c] for c in first_counts.keys() | second_counts.keys()) / n**2
    return (observed - chance) / (1 - chance)


def first_two(field: str, collapse: dict[str, str] | None = None) -> list[tuple[str, str]]:
    pairs = []
    for rows in DOUBLY_LABELED.values():
        first, second = (row[field] if collapse is None else collapse[row[field]] for row in rows[:2])
        pairs.append((first, second))
    return pairs


def test_the_data_holds_the_doubly_labeled_items_it_is_known_for():
    # 50 items with two evaluators and 9 with three, in the full file and the sample alike.
    assert Counter(len(rows) for rows in DOUBLY_LABELED.values()) == {2: 50, 3: 9}
    assert len(ITEMS) == (1079 if DATA == FULL else 299)


@pytest.mark.parametrize("field", ["completion_a_is_acceptable", "completion_b_is_acceptable"])
def test_cohen_kappa_on_acceptability_equals_the_textbook_formula(field):
    pairs = first_two(field)
    expected = textbook_kappa(pairs)
    got = ag.cohen_kappa(
        np.array([ACCEPTABLE[first] for first, _ in pairs]), np.array([ACCEPTABLE[second] for _, second in pairs]), 2
    )
    assert got.n == 59
    assert got.value is not None and abs(got.value - expected) < 1e-9
    assert got.ci_low is not None and got.ci_high is not None and got.ci_low < got.value < got.ci_high


def test_cohen_kappa_on_collapsed_preference_equals_the_textbook_formula():
    pairs = first_two("preference", PREFERENCE)
    expected = textbook_kappa(pairs)
    got = ag.cohen_kappa(
        np.array([PAIRWISE_CODES[first] for first, _ in pairs]),
        np.array([PAIRWISE_CODES[second] for _, second in pairs]),
        3,
    )
    assert got.n == 59
    assert got.value is not None and abs(got.value - expected) < 1e-9


@pytest.mark.parametrize("field", ["completion_a_is_acceptable", "completion_b_is_acceptable"])
def test_krippendorff_alpha_on_acceptability_over_all_items_matches_the_krippendorff_package(field):
    item_ids = {key: i for i, key in enumerate(ITEMS)}
    names = sorted({row["evaluator"] for rows in ITEMS.values() for row in rows})
    evaluators = {name: r for r, name in enumerate(names)}
    labels = [
        (item_ids[key], evaluators[row["evaluator"]], ACCEPTABLE[row[field]])
        for key, rows in ITEMS.items()
        for row in rows
    ]
    item, rater, value = (np.array(column, dtype=np.int64) for column in zip(*labels, strict=True))
    reliability = np.full((len(evaluators), len(item_ids)), np.nan)
    reliability[rater, item] = value
    expected = krippendorff.alpha(reliability_data=reliability, level_of_measurement="nominal", value_domain=[0, 1])
    got = ag.krippendorff_alpha_nominal(item, rater, value, 2)
    assert got.n == 59
    assert got.value is not None and abs(got.value - expected) < 1e-9
