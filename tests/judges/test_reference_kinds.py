"""Reference kinds (issue 15): stats.reference decides each item's kind once, and judge reports, the report pages,
the agreement report and exports all read it. The project mixes items with 1, 2 and 3 labels, gold labels and an
unlabeled item (tests.factories.MIXED_REFERENCE); the lead chooses per judge whether single labels serve."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from django.urls import reverse

from annotate import exports, reports
from annotate.models import Project
from annotate.stats import agreement, reference
from judges import card, production, run_reference, selectors
from judges.models import JudgeRun, RunChunk
from judges.services import judge_runs, judge_versions, run_chunks
from tests.factories import MIXED_REFERENCE, UserFactory, membership, mixed_reference_items

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


# --- The pure function ------------------------------------------------------------------------------------------


def _naive_kind(values: list[int], gold: int, k: int, min_margin: int) -> str | None:
    """An independent per-item reading of the definitions in annotate.stats.reference."""
    if gold >= 0:
        return "gold"
    if not values:
        return None
    tally = sorted((values.count(c) for c in range(k)), reverse=True)
    settled = 2 * tally[0] > len(values) and tally[0] - tally[1] >= min_margin
    if not settled:
        return "unsettled"
    return "single" if len(values) == 1 else "majority"


@pytest.mark.parametrize("min_margin", [1, 2])
def test_kinds_match_an_independent_reading_of_the_definitions(min_margin):
    rng = np.random.default_rng(15)
    n_items, k = 400, 3
    per_item = rng.integers(0, 5, n_items)  # 0 to 4 labels
    item = np.repeat(np.arange(n_items), per_item)
    value = rng.integers(0, k, item.size)
    gold = np.where(rng.random(n_items) < 0.15, rng.integers(0, k, n_items), -1)
    found = agreement.consensus(item, value, k, gold=gold, n_items=n_items, min_margin=min_margin)
    label, kind = reference.labels(found)
    names = [reference.NAMES[c] for c in kind.tolist()]
    expected = [_naive_kind(value[item == i].tolist(), int(gold[i]), k, min_margin) for i in range(n_items)]
    assert names == expected
    # Every kind occurs (a stricter margin settles no single label: those are unsettled).
    assert set(names) == {"gold", "majority", "unsettled", None} | ({"single"} if min_margin == 1 else set())
    # A reference label exactly where the kind has one; without single labels those lose theirs, and only those.
    assert ((label >= 0) == np.isin(kind, [reference.Kind.GOLD, reference.Kind.MAJORITY, reference.Kind.SINGLE])).all()
    strict, same_kind = reference.labels(found, single=False)
    assert (same_kind == kind).all()
    assert ((label != strict) == ((kind == reference.Kind.SINGLE) & (label >= 0))).all()
    counted = reference.counts(kind)
    assert list(counted) == ["gold", "majority", "single", "unsettled"]
    assert counted == {name: names.count(name) for name in reference.SHOWN}


def test_a_single_label_is_single_not_a_majority_of_one():
    # Items: one pass; two passes; pass and fail; one fail under a gold pass; nothing.
    found = agreement.consensus([0, 1, 1, 2, 2, 3], [1, 1, 1, 1, 0, 0], 2, gold=[-1, -1, -1, 1, -1])
    assert [reference.NAMES[c] for c in reference.kinds(found).tolist()] == [
        "single",
        "majority",
        "unsettled",
        "gold",
        None,
    ]


# --- Judge reports on the mixed project ---------------------------------------------------------------------------


@pytest.fixture
def mixed(project, lead, annotator, other_annotator, standin):
    third = UserFactory(username="tess-annotator")
    membership(third, project)
    standin.configure(rule="keyword")  # odd-numbered items pass, the others say WRONG and fail
    return mixed_reference_items(project, [annotator, other_annotator, third], lead)


def _run_all(version) -> JudgeRun:
    # Every split, the held-out test split included (confirmed, and so counted as a look at test).
    run = judge_runs.judge_run_start(version=version, scope=JudgeRun.Scope.ALL, confirm_test=True)
    for chunk in RunChunk.objects.filter(run=run):
        run_chunks.judge_chunk_process(chunk_id=chunk.pk)
    run.refresh_from_db()
    assert run.status == JudgeRun.Status.DONE
    return run


def test_a_judge_report_counts_each_kind_and_uses_single_labels_by_default(version, mixed):
    assert version.judge.single_label_reference is True
    report = _run_all(version).report
    assert report["single_label_reference"] is True
    assert report["reference_kinds"] == {"gold": 3, "majority": 3, "single": 2, "unsettled": 1}
    assert report["n_unlabeled"] == 1 and report["n_items"] == 10
    # Compared: every item with a reference label (the split and the unlabeled one are not), single labels included.
    assert report["compared_kinds"] == {"gold": 3, "majority": 3, "single": 2, "unsettled": 0}
    assert report["n"] == 8 and report["figures"]["accuracy"]["n"] == 8
    # Humans (rows fail, pass) against the judge: worked out by hand from MIXED_REFERENCE and the odd/even outputs.
    assert report["confusion"] == [[3, 1], [2, 2]]
    assert report["figures"]["accuracy"]["value"] == pytest.approx(5 / 8)


def test_with_single_labels_off_the_judge_is_measured_on_gold_and_majorities_only(
    client, lead, project, version, mixed
):
    judge = version.judge
    client.force_login(lead)
    # The lead turns single labels off on the judge's page (the box unticked: absent from the form).
    response = client.post(reverse("judges:judge_target", args=[project.slug, judge.pk]), {"target": ""}, headers=HX)
    assert response.status_code == 200 and "Target saved." in response.content.decode()
    judge.refresh_from_db()
    assert judge.single_label_reference is False
    run = _run_all(version)
    report = run.report
    assert report["single_label_reference"] is False
    assert report["reference_kinds"] == {"gold": 3, "majority": 3, "single": 2, "unsettled": 1}
    assert report["compared_kinds"] == {"gold": 3, "majority": 3, "single": 0, "unsettled": 0}
    assert report["n"] == 6 and report["confusion"] == [[2, 1], [2, 1]]
    assert report["figures"]["accuracy"]["value"] == pytest.approx(3 / 6)
    assert "items with one label (not used as reference)" in report["reference"]
    # The report pages read the same references: the single items have a kind and no label.
    refs = run_reference.human_reference(run=run).items
    assert refs[mixed["one-fail"].pk] == run_reference.Reference(None, "single")
    assert mixed["one-pass"].pk not in run_reference.human_reference(run=run).labeled
    page = client.get(reverse("judges:run_detail", args=[project.slug, run.pk])).content.decode()
    assert "6 items compared with the human reference" in page
    assert "(single labels are not used as reference for this judge)" in page
    assert "2 single (not compared), 1 unsettled (split labels, not compared), 1 unlabeled (not compared)" in page


def test_a_finished_run_keeps_the_setting_it_was_measured_with(version, mixed):
    run = _run_all(version)
    judge_versions.judge_target_set(judge=version.judge, target="", numbers={}, single_label_reference=False)
    run = JudgeRun.objects.select_related("version__judge").get(pk=run.pk)
    # Its disagreements and cards still count single labels, as its stored figures did.
    assert run_reference.single_labels_serve(run) is True
    assert run_reference.human_reference(run=run).labeled[mixed["one-pass"].pk] == run_reference.Reference(
        "pass", "single"
    )
    disagreements = selectors.disagreements_of_run(run=run)
    assert len(disagreements.rows) == sum(sum(row) for row in run.report["confusion"]) - 5  # off the diagonal
    # A report stored before the setting existed follows the judge as it is set now.
    del run.report["single_label_reference"]
    assert run_reference.single_labels_serve(run) is False


def test_the_judge_form_shows_the_setting_on_by_default(client, lead, project, version):
    client.force_login(lead)
    page = client.get(reverse("judges:judge_detail", args=[project.slug, version.judge.pk])).content.decode()
    assert "Single labels may serve as the human reference" in page
    assert re.search(r'<input type="checkbox" name="single_label_reference"[^>]*\bchecked>', page)
    assert 'id="id_single_label_reference_helptext">An item with one label and no gold label counts' in page


def test_reports_judge_figures_and_exports_never_disagree_on_an_item_s_kind(version, project, mixed):
    run = _run_all(version)
    refs = run_reference.human_reference(run=run).items
    project = Project.objects.select_related("current_rubric").get(pk=project.pk)
    export = exports.export_prepare(project=project, options=exports.ExportOptions(criteria=("acceptable",)))
    rows = {row["external_id"]: row["labels"]["acceptable"] for row in map(json.loads, export.lines())}
    for name, item in mixed.items():
        _votes, _gold, kind, label = MIXED_REFERENCE[name]
        judged = refs.get(item.pk)
        assert (judged.kind, judged.value) == (kind, label) if judged else kind is None
        assert (rows[name]["source"], rows[name]["reference"]) == (kind, label)
    consensus = reports.report_build(project=project, n_boot=10)["criteria"]["acceptable"]["consensus"]
    assert {name: consensus[f"n_{name}"] for name in reference.SHOWN} == run.report["reference_kinds"]


def test_the_judge_card_names_the_kinds_its_figures_were_measured_on(version, mixed):
    _run_all(version)
    measured = card.card_build(version=version)["measured"]
    assert measured[0]["single_label_reference"] is True
    assert measured[0]["reference_kinds"] == {"gold": 3, "majority": 3, "single": 2, "unsettled": 0}


def test_the_dashboard_and_the_comparison_name_the_kinds_their_judge_figures_use(client, lead, project, version, mixed):
    a, b = _run_all(version), _run_all(version)
    client.force_login(lead)
    page = client.get(reverse("project_detail", args=[project.slug])).content.decode()
    assert "compared with 3 gold, 3 majority, 2 single reference labels" in page
    assert '<span class="muted small figure-n">n=8</span>' in page  # κ on the 8 compared items
    compared = client.get(reverse("judges:compare", args=[project.slug]), {"a": a.pk, "b": b.pk}).content.decode()
    assert "Humans' reference on those items: 3 gold, 3 majority, 2 single labels." in compared


@pytest.mark.parametrize("single", [True, False])
def test_the_report_comparisons_disagreements_and_estimates_read_one_human_reference(version, mixed, single):
    # Gold labels on some items, majorities on others, single labels serving or not, a split and an unlabeled item.
    judge_versions.judge_target_set(judge=version.judge, target="", numbers={}, single_label_reference=single)
    run = _run_all(version)
    found = run_reference.human_reference(run=run)
    judged = run_reference.judge_values(run=run)
    compared = found.compared(judged.values)
    assert found.single is single and len(compared) == (8 if single else 6)
    report = run.report
    assert report["n"] == len(compared) and report["single_label_reference"] is single
    assert report["compared_kinds"] == found.kinds(compared)
    assert report["reference_kinds"] == found.kinds(judged.items)
    assert report["n_unlabeled"] == len(judged.items) - len(found.items) == 1
    confusion = [[0, 0], [0, 0]]
    for i in compared:
        confusion[found.items[i].value == "pass"][judged.values[i] == "pass"] += 1
    assert report["confusion"] == confusion
    # A comparison (here of the run with itself) is over the same items, of the same kinds.
    comparison = selectors.comparison(a=run, b=run, n_boot=10)
    assert comparison.common == compared
    assert comparison.common_kinds == {name: found.kinds(compared)[name] for name in reference.SHOWN[:3]}
    # The disagreements are the compared items off the diagonal; the production estimates use the same labels.
    disagreements = selectors.disagreements_of_run(run=run)
    assert [i for i, _ in disagreements.rows] == [i for i in compared if judged.values[i] != found.items[i].value]
    assert len(disagreements.rows) == confusion[0][1] + confusion[1][0]
    assert int(production.run_rows(run=run).labeled.sum()) == len(compared)
