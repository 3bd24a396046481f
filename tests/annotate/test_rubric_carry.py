"""A rubric edit keeps the labels of the criteria it does not change (issue 15): they carry into the new version,
agreement for them is unchanged, and annotators are asked again only for the criteria that were added or redefined."""

from __future__ import annotations

import copy

import pytest
from django.urls import reverse

from annotate import carry, drift, reports, selectors, throughput
from annotate.models import AgreementReport, Criterion, GoldLabel, Item, Label, ThroughputCount
from annotate.services.errors import QueueError
from annotate.services.gold import gold_set
from annotate.services.labels import label_submit
from annotate.services.leases import queue_counts_refresh
from annotate.services.projects import project_set_status
from annotate.services.queue import queue_claim
from annotate.services.rubrics import rubric_set_criteria
from tests.factories import DEFAULT_CRITERIA, ItemFactory, UserFactory, label, membership

pytestmark = pytest.mark.django_db

REWORDED = "No factual or arithmetic error, checked against the source."


def _reword(project, lead, description=REWORDED):
    criteria = copy.deepcopy(DEFAULT_CRITERIA)
    criteria[2]["description"] = description
    version = rubric_set_criteria(project=project, criteria=criteria, actor=lead)
    project.refresh_from_db()
    return version


@pytest.fixture
def labeled(project, annotator, other_annotator):
    """An active project with 8 items, each labeled on every criterion by two annotators under v1 (48 labels)."""
    project_set_status(project=project, status="active")
    project.refresh_from_db()
    items = [ItemFactory(project=project) for _ in range(8)]
    for n, item in enumerate(items):
        for key in ("acceptable", "follows_instructions", "factually_correct"):
            label(item, annotator, key, "pass" if n % 2 else "fail", note=f"note {n}" if key == "acceptable" else "")
            label(item, other_annotator, key, "pass" if n % 3 else "fail")
    queue_counts_refresh(project=project)
    return project, items


def _counts(version):
    return {c.key: Label.objects.filter(rubric_version=version, criterion=c).count() for c in version.criteria.all()}


def test_rewording_one_criterion_carries_the_labels_of_the_others_with_their_annotator_value_note_and_time(
    labeled, lead, annotator
):
    project, items = labeled
    v1 = project.current_rubric
    v2 = _reword(project, lead)
    assert _counts(v1) == {"acceptable": 16, "follows_instructions": 16, "factually_correct": 16}
    assert _counts(v2) == {"acceptable": 16, "follows_instructions": 16, "factually_correct": 0}
    before = Label.objects.get(rubric_version=v1, item=items[2], annotator=annotator, criterion__key="acceptable")
    after = Label.objects.get(rubric_version=v2, item=items[2], annotator=annotator, criterion__key="acceptable")
    assert (after.value, after.note, after.created_at, after.carried) == (
        before.value,
        "note 2",
        before.created_at,
        True,
    )
    assert not before.carried
    since = {c.key: c.defined_in.number for c in Criterion.objects.filter(rubric_version=v2)}
    assert since == {"acceptable": 1, "follows_instructions": 1, "factually_correct": 2}
    # Nobody has every criterion of v2 on any item: every item wants labels again, but only on one criterion.
    assert set(Item.objects.filter(project=project).values_list("n_submitted", flat=True)) == {0}


def test_a_rename_or_a_new_criterion_needs_new_labels_a_reorder_or_a_removal_needs_none(labeled, lead):
    project, _ = labeled
    criteria = copy.deepcopy(DEFAULT_CRITERIA)
    v2 = rubric_set_criteria(project=project, criteria=[criteria[2], criteria[0], criteria[1]])
    assert _counts(v2) == {"acceptable": 16, "follows_instructions": 16, "factually_correct": 16}
    assert set(Item.objects.filter(project=project).values_list("n_submitted", flat=True)) == {2}
    criteria[1]["name"] = "Follows every instruction"
    criteria.append({"key": "concise", "name": "Concise", "description": "No filler."})
    v3 = rubric_set_criteria(project=project, criteria=criteria)
    assert _counts(v3) == {"acceptable": 16, "follows_instructions": 0, "factually_correct": 16, "concise": 0}
    # Carried twice, the labels still date from v1's definition.
    assert Criterion.objects.get(rubric_version=v3, key="acceptable").defined_in.number == 1


def test_agreement_is_unchanged_for_the_unchanged_criteria_and_shown_at_once(client, labeled, lead):
    project, _ = labeled
    v1 = project.current_rubric
    reports.report_store(project=project, rubric_version=v1, n_boot=50)
    before = reports.human_report(project=project, rubric_version=v1, n_boot=50)
    v2 = _reword(project, lead)
    after = reports.human_report(project=project, rubric_version=v2, n_boot=50)
    for key in ("acceptable", "follows_instructions"):
        for figure in ("krippendorff_alpha", "fleiss_kappa"):
            assert after[key]["human"][figure]["value"] == pytest.approx(before[key]["human"][figure]["value"])
        assert after[key]["human"]["n_labels"] == before[key]["human"]["n_labels"] == 16
    # The new version has a report at once (v1's figures for the kept criteria), marked for recomputation.
    seeded = AgreementReport.objects.get(rubric_version=v2)
    assert set(seeded.data["criteria"]) == {"acceptable", "follows_instructions"}
    assert reports.report_stale(project=project)
    client.force_login(lead)
    page = client.get(reverse("project_detail", args=[project.slug])).content.decode()
    assert "No agreement report yet" not in page and "Rubric v2" in page
    assert "No labels yet under the current definition of “Factually correct” (since v2)" in page
    stored = reports.report_refresh(project=project, n_boot=50)
    assert stored is not None and stored.n_labels == 32 and not reports.report_stale(project=project)
    agreement = client.get(reverse("agreement_page", args=[project.slug])).content.decode()
    assert agreement.count("definition since v1") == 2 and agreement.count("definition since v2") == 1


def test_the_labeling_form_asks_only_for_the_redefined_criterion_and_completes_the_item(
    client, labeled, lead, annotator
):
    project, _ = labeled
    v2 = _reword(project, lead)
    client.force_login(annotator)
    page = client.get(reverse("label_queue", args=[project.slug])).content.decode()
    assert 'data-key="factually_correct"' in page
    assert 'data-key="acceptable"' not in page and 'data-key="follows_instructions"' not in page
    assert "Your other labels on this item still hold" in page
    leased = list(
        Item.objects.filter(assignments__annotator=annotator, assignments__state="leased").order_by(
            "assignments__created_at"
        )
    )
    item_id = leased[0].pk
    response = client.post(
        reverse("label_submit", args=[project.slug, item_id]),
        {"c-factually_correct": "pass", "form_key": "k-carry-1", "note": ""},
    )
    assert response.status_code == 302
    mine = Label.objects.filter(item_id=item_id, annotator=annotator, rubric_version=v2)
    assert sorted(mine.values_list("criterion__key", "carried")) == [
        ("acceptable", True),
        ("factually_correct", False),
        ("follows_instructions", True),
    ]
    assert Item.objects.get(pk=item_id).n_submitted == 1
    # The same form again is recognised as already saved; the item never comes back to this annotator.
    again = client.post(
        reverse("label_submit", args=[project.slug, item_id]),
        {"c-factually_correct": "fail", "form_key": "k-carry-1", "note": ""},
    )
    assert again.status_code == 302 and mine.get(criterion__key="factually_correct").value == "pass"
    claimed = {queue_claim(project=project, annotator=annotator, rubric_version_id=v2.pk) for _ in range(10)}
    assert item_id not in {i.pk for i in claimed if i is not None}


def test_a_new_annotator_gets_every_criterion_of_the_new_version(client, labeled, lead):
    project, _ = labeled
    _reword(project, lead)
    newcomer = UserFactory(username="nia-newcomer")
    membership(newcomer, project)
    client.force_login(newcomer)
    page = client.get(reverse("label_queue", args=[project.slug])).content.decode()
    for key in ("acceptable", "follows_instructions", "factually_correct"):
        assert f'data-key="{key}"' in page
    assert "Your other labels on this item still hold" not in page


def test_the_relabel_queue_and_outdated_items_ask_only_for_the_redefined_criterion(labeled, lead, annotator):
    project, items = labeled
    v2 = _reword(project, lead)
    outcome = drift.relabel_queue(project=project, actor=lead)
    assert (outcome.n_queued, outcome.n_outdated) == (8, 8)
    criteria = selectors.criteria_of_version(v2.pk)
    owed = carry.criteria_missing(criteria=criteria, annotator=annotator, item_ids=[i.pk for i in items])
    assert {tuple(c.key for c in v) for v in owed.values()} == {("factually_correct",)}
    label_submit(
        project=project,
        annotator=annotator,
        item_id=items[0].pk,
        criteria=[c for c in criteria if c.key == "factually_correct"],
        values={"factually_correct": "fail"},
        submission_key="relabel-0",
    )
    assert drift.outdated_counts(project=project).n_outdated == 7
    # Answering a carried criterion again is refused, not stored twice.
    with pytest.raises(QueueError, match="already labeled"):
        label_submit(
            project=project,
            annotator=annotator,
            item_id=items[1].pk,
            criteria=list(criteria),
            values={"acceptable": "pass", "follows_instructions": "pass", "factually_correct": "pass"},
            submission_key="relabel-1",
        )


def test_carried_labels_can_be_edited_and_their_edit_page_shows_only_the_labeled_criteria(
    client, labeled, lead, annotator
):
    project, items = labeled
    v2 = _reword(project, lead)
    carried = Label.objects.get(rubric_version=v2, item=items[0], annotator=annotator, criterion__key="acceptable")
    client.force_login(annotator)
    url = reverse("label_edit", args=[project.slug, items[0].pk])
    page = client.get(url).content.decode()
    assert 'data-key="acceptable"' in page and 'data-key="factually_correct"' not in page
    follows = Label.objects.get(
        rubric_version=v2, item=items[0], annotator=annotator, criterion__key="follows_instructions"
    )
    response = client.post(
        url,
        {
            "c-acceptable": "pass",
            "c-follows_instructions": follows.value,
            "rev-acceptable": carried.revision,
            "rev-follows_instructions": follows.revision,
            "note": "changed my mind",
        },
    )
    assert response.status_code == 302
    carried.refresh_from_db()
    assert (carried.value, carried.note, carried.revision) == ("pass", "changed my mind", 2)
    # The label given under v1 stays as it was.
    assert (
        Label.objects.get(
            rubric_version__number=1, item=items[0], annotator=annotator, criterion__key="acceptable"
        ).value
        == "fail"
    )


def test_carried_labels_are_not_counted_again_as_throughput(labeled, lead):
    project, _ = labeled
    throughput.throughput_count_pass(project=project)
    counted = sorted(ThroughputCount.objects.filter(project=project).values_list("annotator_id", "day", "n"))
    assert sum(n for _, _, n in counted) == 48
    _reword(project, lead)
    assert throughput.throughput_count_pass(project=project) == 0
    assert sorted(ThroughputCount.objects.filter(project=project).values_list("annotator_id", "day", "n")) == counted


def test_gold_labels_of_unchanged_criteria_carry_too(labeled, lead):
    project, items = labeled
    gold_set(project=project, item_id=items[0].pk, criterion_key="acceptable", value="pass", note="", actor=lead)
    gold_set(project=project, item_id=items[0].pk, criterion_key="factually_correct", value="fail", note="", actor=lead)
    v2 = _reword(project, lead)
    assert list(GoldLabel.objects.filter(criterion__rubric_version=v2).values_list("criterion__key", "value")) == [
        ("acceptable", "pass")
    ]


def test_the_criteria_review_states_which_criteria_need_new_labels_and_which_keep_theirs(client, labeled, lead):
    project, _ = labeled
    client.force_login(lead)
    rows = copy.deepcopy(DEFAULT_CRITERIA)
    rows[2]["description"] = REWORDED
    data = {"action": "review", "base": "1", "form-TOTAL_FORMS": "3", "form-INITIAL_FORMS": "0"}
    for i, row in enumerate(rows):
        for field in ("key", "name", "description"):
            data[f"form-{i}-{field}"] = row[field]
    page = client.post(reverse("project_criteria", args=[project.slug]), data).content.decode()
    assert "“Factually correct” will need 16 new labels; the other 2 criteria keep their 32 labels." in page


def test_the_consequence_sentence_names_a_single_kept_criterion_and_added_ones():
    consequence = carry.RubricConsequence(
        criteria=[
            carry.CriterionConsequence("a", "Acceptable", needs_labels=False, n_labels=725, n_needed=0),
            carry.CriterionConsequence("c", "Concise", needs_labels=True, n_labels=0, n_needed=1),
        ]
    )
    assert consequence.sentence == "“Concise” will need 1 new label; “Acceptable” keeps its 725 labels"


def test_the_progress_panel_counts_items_whose_labels_were_only_carried_as_left_to_do(labeled, lead, annotator):
    project, items = labeled
    assert selectors.annotator_progress(project=project, annotator=annotator).left_for_me == 0
    _reword(project, lead)
    assert selectors.annotator_progress(project=project, annotator=annotator).left_for_me == 8
    criteria = [c for c in selectors.criteria_of_version(project.current_rubric_id) if c.key == "factually_correct"]
    label_submit(
        project=project,
        annotator=annotator,
        item_id=items[0].pk,
        criteria=criteria,
        values={"factually_correct": "pass"},
        submission_key="progress-0",
    )
    assert selectors.annotator_progress(project=project, annotator=annotator).left_for_me == 7


def test_the_export_of_the_new_version_holds_the_carried_labels_and_none_for_the_reworded_criterion(labeled, lead):
    import json

    from annotate import exports
    from annotate.models import Project

    project, _ = labeled
    _reword(project, lead)
    project = Project.objects.select_related("current_rubric").get(pk=project.pk)
    export = exports.export_prepare(project=project, options=exports.ExportOptions(individual=True))
    rows = [json.loads(line) for line in "".join(export.lines()).splitlines()]
    assert export.manifest["rubric_version"] == 2 and export.manifest["counts"]["labels"] == 32
    assert len(rows) == 8
    for row in rows:
        assert row["labels"]["acceptable"]["n_labels"] == row["labels"]["follows_instructions"]["n_labels"] == 2
        assert row["labels"]["factually_correct"]["n_labels"] == 0


def test_the_migration_dates_each_existing_criterion_from_its_history(project, lead):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("annotate.migrations.0010_carry_criterion_defined_in")
    criteria = copy.deepcopy(DEFAULT_CRITERIA)
    criteria[1]["description"] = "Does what was asked, all of it."
    rubric_set_criteria(project=project, criteria=criteria)
    criteria[0]["name"] = " Acceptable "  # surrounding blanks are no change
    criteria.append({"key": "concise", "name": "Concise", "description": "No filler."})
    rubric_set_criteria(project=project, criteria=criteria)
    expected = {
        (c.rubric_version.number, c.key): c.defined_in.number
        for c in Criterion.objects.filter(rubric_version__project=project).select_related(
            "rubric_version", "defined_in"
        )
    }
    v1 = project.rubric_versions.get(number=1)
    Criterion.objects.filter(rubric_version__project=project).update(defined_in=v1)  # as if never known
    migration.defined_in_backfill(apps, None)
    found = {
        (c.rubric_version.number, c.key): c.defined_in.number
        for c in Criterion.objects.filter(rubric_version__project=project).select_related(
            "rubric_version", "defined_in"
        )
    }
    assert found == expected
    assert expected[(3, "acceptable")] == 1 and expected[(3, "follows_instructions")] == 2
    assert expected[(3, "concise")] == 3 and expected[(2, "factually_correct")] == 1
