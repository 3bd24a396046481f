"""Reports built from the database: the Tülu demo's real labels, loaded in one pass and coded for the maths."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from annotate.demo import demo_load
from annotate.models import Label, Project
from annotate.reports import gold_codes, labels_load, report_build
from annotate.stats import agreement

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    demo_load()
    return Project.objects.get(slug="tulu-acceptability"), Project.objects.get(slug="tulu-preference")


def _walk(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)
    else:
        yield node


def test_labels_load_reads_every_label_of_the_version_with_its_code(demo):
    _binary, pairwise = demo
    arrays = labels_load(project=pairwise, rubric_version=pairwise.current_rubric)
    assert arrays.value.size == Label.objects.filter(rubric_version=pairwise.current_rubric).count()
    stored = dict(
        zip(
            ("a", "b", "tie"),
            (Label.objects.filter(item__project=pairwise, value=v).count() for v in ("a", "b", "tie")),
            strict=True,
        )
    )
    assert np.bincount(arrays.value, minlength=3).tolist() == [stored["a"], stored["b"], stored["tie"]]


def test_the_report_has_the_documented_shape_and_no_nan(demo):
    binary, _ = demo
    report = report_build(project=binary, n_boot=200)
    assert report["project"] == "tulu-acceptability" and report["rubric_version"] == 1
    human = report["criteria"]["acceptable"]["human"]
    assert human["n_labels"] == Label.objects.filter(item__project=binary, criterion__key="acceptable").count()
    for key in ("percent_agreement", "fleiss_kappa", "krippendorff_alpha"):
        assert set(human[key]) >= {"value", "ci_low", "ci_high", "n"}
    # Criteria nobody has labeled yet are reported as not defined, with a reason, never as NaN.
    empty = report["criteria"]["factually_correct"]["human"]
    assert empty["n_labels"] == 0 and empty["krippendorff_alpha"]["value"] is None
    assert empty["krippendorff_alpha"]["reason"]
    assert not any(isinstance(v, float) and math.isnan(v) for v in _walk(report))
    json.dumps(report)  # storable as is


def test_the_reported_alpha_matches_the_maths_on_the_same_labels(demo):
    binary, _ = demo
    report = report_build(project=binary, n_boot=0)
    rows = list(
        Label.objects.filter(item__project=binary, criterion__key="acceptable").values_list(
            "item_id", "annotator_id", "value"
        )
    )
    _, item = np.unique([r[0] for r in rows], return_inverse=True)
    _, rater = np.unique([r[1] for r in rows], return_inverse=True)
    value = np.array([1 if r[2] == "pass" else 0 for r in rows])
    expected = agreement.krippendorff_alpha_nominal(item, rater, value, 2, n_boot=0).value
    assert report["criteria"]["acceptable"]["human"]["krippendorff_alpha"]["value"] == pytest.approx(expected)


def test_agreement_with_consensus_counts_only_items_someone_else_labeled_too(demo):
    _, pairwise = demo
    report = report_build(project=pairwise, n_boot=0)
    annotators = report["criteria"]["overall"]["annotators"]
    assert annotators
    for row in annotators:
        assert row["n_with_consensus"] <= row["n_labels"]
    # Most Tülu items have one annotator: their lone labels must not count as agreeing with themselves.
    assert sum(r["n_with_consensus"] for r in annotators) < sum(r["n_labels"] for r in annotators)
    assert any(r["agreement_with_consensus"] is not None and r["agreement_with_consensus"] < 1 for r in annotators)


def test_fleiss_kappa_counts_every_doubly_labeled_item_and_alpha_leads_when_label_counts_differ(demo):
    _, pairwise = demo
    human = report_build(project=pairwise, n_boot=0)["criteria"]["overall"]["human"]
    # The Tülu data: 50 items with two evaluators and 9 with three; Fleiss' κ used to take the 50 alone.
    assert human["ratings_per_item"] == {"2": 50, "3": 9}
    assert human["fleiss_kappa"]["n"] == human["krippendorff_alpha"]["n"] == 59
    assert human["headline"] == "krippendorff_alpha"


def test_fleiss_kappa_stays_the_headline_when_every_item_has_the_same_number_of_labels(demo):
    _, pairwise = demo
    # Keep only the items with exactly two labels on "overall".
    labels = Label.objects.filter(item__project=pairwise, criterion__key="overall")
    per_item: dict[int, int] = {}
    for item_id in labels.values_list("item_id", flat=True):
        per_item[item_id] = per_item.get(item_id, 0) + 1
    labels.filter(item_id__in=[i for i, m in per_item.items() if m == 3]).delete()
    human = report_build(project=pairwise, n_boot=0)["criteria"]["overall"]["human"]
    assert human["ratings_per_item"] == {"2": 50}
    assert human["headline"] == "fleiss_kappa" and human["fleiss_kappa"]["n"] == 50


def test_gold_labels_on_a_version_nobody_has_labeled_align_with_no_item(project, lead):
    """The beat refresh of such a project's report crashed with an IndexError (found by `make run`'s LLMBar demo)."""
    from annotate import selectors
    from annotate.models import GoldLabel
    from tests.factories import item_build

    criterion = selectors.criteria_current(project=project).get(key="acceptable")
    item = item_build(project=project, fields={"input": "Question?", "output": "Answer."}, external_id="gold-only")
    item.save()
    GoldLabel.objects.create(item=item, criterion=criterion, value="pass", set_by=lead)
    assert gold_codes(criterion, np.array([], dtype=np.int64), {"pass": 1, "fail": 0}).size == 0
    assert gold_codes(criterion, np.array([item.pk], dtype=np.int64), {"pass": 1, "fail": 0}).tolist() == [1]
