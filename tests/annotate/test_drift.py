"""Criteria drift: the rubric timeline and its diffs, items labeled under an older version, queueing them for
re-labeling (idempotent, and what the queue then does), stale judges, and who may see any of it."""

from __future__ import annotations

import copy
import datetime as dt
import re
import time

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from annotate import drift, reports
from annotate.models import AgreementReport, Criterion, Item, Label, RelabelRequest
from annotate.services.labels import label_submit
from annotate.services.projects import project_set_status
from annotate.services.queue import queue_claim
from annotate.services.rubrics import rubric_set_criteria
from judges import prompts
from judges.models import JudgeRun
from judges.services import judge_versions
from judges.staleness import Reason, judge_staleness
from tests.factories import DEFAULT_CRITERIA, ItemFactory, label

pytestmark = pytest.mark.django_db

V1_VALUES = {"acceptable": "pass", "follows_instructions": "pass", "factually_correct": "fail"}


def _label_all(item, user, values=V1_VALUES):
    for key, value in values.items():
        label(item, user, key, value)


def _v2(project, lead, *, changes=None, note="Sharper factual criterion"):
    criteria = copy.deepcopy(DEFAULT_CRITERIA)
    if changes is None:
        criteria[2]["description"] = "No factual or arithmetic error, checked against the source."
    else:
        criteria = changes(criteria)
    version = rubric_set_criteria(project=project, criteria=criteria, actor=lead, note=note)
    project.refresh_from_db()
    return version


@pytest.fixture
def active(project):
    project_set_status(project=project, status="active")
    project.refresh_from_db()
    return project


def _c(key: str, name: str, description: str, position: int = 0) -> Criterion:
    return Criterion(key=key, name=name, description=description, position=position)


def test_the_diff_names_criteria_added_removed_renamed_and_redefined():
    before = [_c("a", "A", "first"), _c("b", "B", "second", 1), _c("c", "C", "third", 2)]
    after = [_c("a", "A", "first"), _c("b", "Bee", "second, sharper", 1), _c("d", "D", "fourth", 2)]
    diff = drift.rubric_diff(before, after)
    assert [(c.key, c.what) for c in diff.added] == [("d", "added")]
    assert [(c.key, c.what) for c in diff.removed] == [("c", "removed")]
    assert [(c.key, c.what, c.before, c.after) for c in diff.changed] == [
        ("b", "renamed, definition changed", "second", "second, sharper")
    ]
    assert not diff.reordered and not diff.is_empty
    swapped = drift.rubric_diff(before, [before[1], before[0], before[2]])
    assert swapped.reordered and not swapped.changes
    assert drift.rubric_diff(before, before).is_empty


def test_the_timeline_shows_each_version_with_its_author_changes_and_labels(active, lead, annotator, items):
    _label_all(items[0], annotator)
    _label_all(items[1], annotator)
    _v2(active, lead)
    label(items[2], annotator, "acceptable", "pass")
    rows = drift.rubric_timeline(project=active)
    assert [r.version.number for r in rows] == [2, 1]
    v2, v1 = rows
    assert v2.is_current and not v1.is_current
    assert v2.version.created_by == lead and v2.version.note == "Sharper factual criterion"
    assert v1.diff is None
    assert [(c.key, c.what) for c in v2.diff.changes] == [("factually_correct", "definition changed")]
    # v2 holds the 4 labels of its 2 unchanged criteria carried from v1, and the one given since.
    assert (v1.n_labels, v2.n_labels) == (6, 5)


def test_agreement_per_version_is_stored_from_the_reports_code_and_marked_stale_by_new_labels(
    active, lead, annotator, other_annotator, items
):
    for item in items:
        _label_all(item, annotator)
        _label_all(item, other_annotator, {**V1_VALUES, "acceptable": "fail" if item.pk % 2 else "pass"})
    v2 = _v2(active, lead)
    v1 = active.rubric_versions.get(number=1)
    # v2 needs its own report too: it holds the carried labels of its two unchanged criteria.
    assert drift.versions_needing_report(drift.rubric_timeline(project=active)) == [v2, v1]
    drift.version_report_store(rubric_version=v2)

    stored = drift.version_report_store(rubric_version=v1)
    expected = reports.human_report(project=active, rubric_version=v1)
    assert stored.rubric_version == v1 and stored.n_labels == 30
    assert stored.data["criteria"]["acceptable"]["human"]["krippendorff_alpha"] == pytest.approx(
        expected["acceptable"]["human"]["krippendorff_alpha"]
    )
    row = drift.rubric_timeline(project=active)[1]
    assert [a.key for a in row.agreement] == ["acceptable", "follows_instructions", "factually_correct"]
    assert row.agreement[0].alpha["value"] == expected["acceptable"]["human"]["krippendorff_alpha"]["value"]
    assert not row.report_stale and drift.versions_needing_report(drift.rubric_timeline(project=active)) == []

    Label.objects.create(  # a late import under v1
        item=ItemFactory(project=active),
        criterion=v1.criteria.get(key="acceptable"),
        rubric_version=v1,
        annotator=annotator,
        value="pass",
        created_at=timezone.now(),
    )
    assert drift.rubric_timeline(project=active)[1].report_stale


def test_outdated_items_are_those_labeled_under_an_older_version_and_not_under_the_current(
    active, lead, annotator, other_annotator, items
):
    _label_all(items[0], annotator)  # v1 only: outdated
    _label_all(items[1], annotator)  # v1, then v2 by someone else: in progress, not outdated
    # items[2..4]: never labeled, not outdated
    assert list(drift.items_outdated(project=active)) == []  # nothing is older than v1
    _v2(active, lead)
    # Their unchanged criteria were carried into v2: only the redefined one makes an item in progress.
    label(items[1], other_annotator, "acceptable", "pass")
    assert list(drift.items_outdated(project=active)) == [items[0], items[1]]
    label(items[1], other_annotator, "factually_correct", "pass")
    assert list(drift.items_outdated(project=active)) == [items[0]]
    rows = drift.outdated_page_rows(project=active, items=[items[0]])
    assert rows[0].versions == [1] and rows[0].n_labels == 3


def test_relabel_queue_is_idempotent_and_the_queue_serves_the_items_again_first(
    active, lead, annotator, other_annotator
):
    old, fresh = ItemFactory(project=active), ItemFactory(project=active)
    # Without the re-labeling priority the queue's shuffled order would offer `fresh` first.
    Item.objects.filter(pk=old.pk).update(order_key=10**12)
    Item.objects.filter(pk=fresh.pk).update(order_key=-(10**12))
    _label_all(old, annotator)
    _v2(active, lead)

    first = drift.relabel_queue(project=active, actor=lead)
    assert (first.n_queued, first.n_outdated) == (1, 1)
    assert Item.objects.get(pk=old.pk).priority == Item.PRIORITY_RELABEL
    again = drift.relabel_queue(project=active, actor=lead)
    assert (again.n_queued, again.n_outdated, again.n_released) == (0, 1, 0)
    assert dict(Item.objects.filter(project=active).values_list("pk", "priority")) == {
        old.pk: Item.PRIORITY_RELABEL,
        fresh.pk: Item.PRIORITY_NORMAL,
    }

    # The annotator who labeled it under v1 gets it again under v2, before the never-labeled item, and answers
    # only the redefined criterion: the other two were carried over.
    claimed = queue_claim(project=active, annotator=annotator, rubric_version_id=active.current_rubric_id)
    assert claimed == old
    label_submit(
        project=active,
        annotator=annotator,
        item_id=old.pk,
        criteria=list(active.current_rubric.criteria.filter(key="factually_correct")),
        values={"factually_correct": "pass"},
        submission_key="relabel-1",
    )
    assert Item.objects.get(pk=old.pk).n_submitted == 1
    assert Label.objects.filter(item=old, annotator=annotator).values("rubric_version").distinct().count() == 2
    # Labeled under the current version now: no longer outdated, so a later call hands back its priority.
    released = drift.relabel_queue(project=active, actor=lead)
    assert (released.n_queued, released.n_outdated, released.n_released) == (0, 0, 1)
    assert Item.objects.get(pk=old.pk).priority == Item.PRIORITY_NORMAL


def test_the_database_refuses_a_queue_priority_outside_the_known_ones(active):
    item = ItemFactory(project=active)
    with pytest.raises(IntegrityError), transaction.atomic():
        Item.objects.filter(pk=item.pk).update(priority=7)


# --- Stale judges ---------------------------------------------------------------------------------------------


def _judge_with_done_run(project, key, lead):
    judge = judge_versions.judge_create(project=project, criterion_key=key, actor=lead)
    version = judge_versions.judge_version_create(
        judge=judge,
        system_template=prompts.DEFAULT_SYSTEM[project.kind],
        user_template=prompts.DEFAULT_USER[project.kind],
        endpoint="standin",
        model="standin-judge-2024-01-01",
    )
    run = JudgeRun.objects.create(
        project=project,
        version=version,
        rubric_version=project.current_rubric,
        status=JudgeRun.Status.DONE,
        report={"figures": {"kappa": {"value": 0.61, "ci_low": 0.5, "ci_high": 0.7, "n": 40}}},
        finished_at=timezone.now(),
    )
    return judge, version, run


def test_a_judge_is_current_until_the_rubric_moves_on_and_the_reason_says_what_moved(active, lead):
    factual, factual_version, _ = _judge_with_done_run(active, "factually_correct", lead)
    acceptable, _, _ = _judge_with_done_run(active, "acceptable", lead)
    follows, _, _ = _judge_with_done_run(active, "follows_instructions", lead)
    found = judge_staleness(active)
    assert {found[j.pk].reason for j in (factual, acceptable, follows)} == {Reason.CURRENT}
    assert found[factual.pk].figures["kappa"]["value"] == 0.61

    # v2 changes the factual criterion's definition and drops "follows_instructions".
    def edit(criteria):
        criteria[2]["description"] = "No factual error, checked against the source."
        return [criteria[0], criteria[2], {"key": "concise", "name": "Concise", "description": "No filler."}]

    _v2(active, lead, changes=edit)
    found = judge_staleness(active)
    assert found[factual.pk].reason == Reason.CRITERION_CHANGED and found[factual.pk].stale
    # Its criterion did not change: calibrated still, its labels were carried into v2.
    assert found[acceptable.pk].reason == Reason.RUBRIC_MOVED and not found[acceptable.pk].stale
    assert found[follows.pk].reason == Reason.CRITERION_REMOVED and found[follows.pk].stale
    assert "v1" in found[factual.pk].explanation

    # A new calibration run under v2 makes the judge current again; a judge with no done run is "never".
    time.sleep(0.01)
    JudgeRun.objects.create(
        project=active,
        version=factual_version,
        rubric_version=active.current_rubric,
        status=JudgeRun.Status.DONE,
        report={"figures": {}},
        finished_at=timezone.now(),
    )
    JudgeRun.objects.create(  # a later run that failed does not count as a calibration
        project=active, version=factual_version, rubric_version=active.current_rubric, status=JudgeRun.Status.FAILED
    )
    concise = judge_versions.judge_create(project=active, criterion_key="concise", actor=lead)
    found = judge_staleness(active)
    assert found[factual.pk].reason == Reason.CURRENT and not found[factual.pk].stale
    assert found[concise.pk].reason == Reason.NEVER and not found[concise.pk].stale


# --- Pages ----------------------------------------------------------------------------------------------------


@pytest.fixture
def drifted(active, lead, annotator, other_annotator):
    items = [ItemFactory(project=active) for _ in range(30)]
    for n, item in enumerate(items):
        _label_all(item, annotator, {**V1_VALUES, "acceptable": "pass" if n % 2 else "fail"})
        _label_all(item, other_annotator, {**V1_VALUES, "acceptable": "pass" if n % 2 or n % 5 == 0 else "fail"})
    _judge_with_done_run(active, "acceptable", lead)  # calibrated under v1
    _v2(active, lead)
    for item in items[:3]:
        label(item, annotator, "factually_correct", "pass")
    drift.version_report_store(rubric_version=active.rubric_versions.get(number=1))
    return active, items


def test_the_drift_page_shows_the_timeline_chart_outdated_items_and_stale_judges(client, lead, drifted):
    project, _ = drifted
    client.force_login(lead)
    page = client.get(reverse("rubric_timeline", args=[project.slug])).content.decode()
    assert "Rubric v2" in page and "Rubric v1" in page and "definition changed" in page
    assert "No factual or arithmetic error, checked against the source." in page
    assert "Sharper factual criterion" in page
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-line"' in page
    assert '<strong class="big-number">27</strong> items have labels under an older rubric version' in page
    assert "Page 1 of 2" in page
    # The "acceptable" judge's criterion did not change in v2: not stale.
    assert "judge to re-run" not in page
    assert "Calibrated under an older rubric version; its criterion has not changed since." in page
    assert "Queue them for re-labeling" in page


def test_the_outdated_list_pages_through_htmx_with_just_its_card(client, lead, drifted):
    project, _ = drifted
    client.force_login(lead)
    response = client.get(reverse("rubric_timeline", args=[project.slug]) + "?page=2", headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<section class="card" id="outdated"') and "<html" not in body
    assert "Page 2 of 2" in body


@pytest.mark.slow
def test_queueing_for_relabeling_records_the_wish_and_the_page_shows_it_waiting_then_done(client, lead, drifted):
    project, _ = drifted
    client.force_login(lead)
    url = reverse("relabel_queue", args=[project.slug])
    response = client.post(url, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200 and body.lstrip().startswith('<section class="card" id="outdated"')
    assert "Queueing the outdated items for re-labeling" in body and 'hx-trigger="every 2s"' in body
    assert "Queue them for re-labeling</button>" not in body
    # The request only records the wish: no item changed yet, and asking twice asks once.
    assert not Item.objects.filter(project=project, priority=Item.PRIORITY_RELABEL).exists()
    client.post(url, headers={"HX-Request": "true"})
    assert RelabelRequest.objects.filter(project=project).count() == 1
    # A request the worker has not picked up within a minute (its message lost?) can be asked again, still once.
    RelabelRequest.objects.filter(project=project).update(requested_at=timezone.now() - dt.timedelta(minutes=2))
    body = client.get(reverse("rubric_timeline", args=[project.slug]), headers={"HX-Request": "true"}).content.decode()
    assert "Still waiting: ask again</button>" in body
    client.post(url, headers={"HX-Request": "true"})
    assert RelabelRequest.objects.filter(project=project).count() == 1

    done = drift.relabel_request_run(project=project)
    assert done is not None and (done.status, done.n_queued, done.n_outdated) == ("done", 27, 27)
    assert drift.relabel_request_run(project=project) is None  # a redelivered task finds nothing open
    assert Item.objects.filter(project=project, priority=Item.PRIORITY_RELABEL).count() == 27
    poll = client.get(reverse("rubric_timeline", args=[project.slug]), headers={"HX-Request": "true"})
    body = poll.content.decode()
    assert "27 items queued for re-labeling under rubric v2" in body and "every 2s" not in body

    response = client.post(url, follow=True)
    assert "this page shows when it is done" in response.content.decode()
    drift.relabel_request_run(project=project)
    page = client.get(reverse("rubric_timeline", args=[project.slug])).content.decode()
    assert "All 27 items labeled under an older version were already queued." in page
    assert RelabelRequest.objects.filter(project=project, status="done").count() == 2


def test_the_database_allows_one_open_relabel_request_per_project(drifted):
    project, _ = drifted
    RelabelRequest.objects.create(project=project)
    with pytest.raises(IntegrityError), transaction.atomic():
        RelabelRequest.objects.create(project=project)


def test_the_worker_queues_the_items_a_lead_asked_for(client, lead, drifted, celery_worker):
    project, _ = drifted
    client.force_login(lead)
    assert client.post(reverse("relabel_queue", args=[project.slug])).status_code == 302
    deadline = time.monotonic() + 30
    while not RelabelRequest.objects.filter(project=project, status="done").exists():
        assert time.monotonic() < deadline, "the worker did not carry out the request"
        time.sleep(0.2)
    assert Item.objects.filter(project=project, priority=Item.PRIORITY_RELABEL).count() == 27
    page = client.get(reverse("rubric_timeline", args=[project.slug])).content.decode()
    assert "27 items queued for re-labeling under rubric v2" in page


def test_annotators_and_outsiders_get_404_on_the_drift_pages_and_change_nothing(client, drifted, annotator, outsider):
    project, _ = drifted
    for user in (annotator, outsider):
        client.force_login(user)
        assert client.get(reverse("rubric_timeline", args=[project.slug])).status_code == 404
        assert client.post(reverse("relabel_queue", args=[project.slug])).status_code == 404
        assert client.post(reverse("rubric_reports_compute", args=[project.slug])).status_code == 404
    assert not Item.objects.filter(project=project, priority=Item.PRIORITY_RELABEL).exists()


def test_computing_missing_version_reports_goes_through_the_worker(
    client, active, lead, annotator, other_annotator, celery_worker
):
    for item in [ItemFactory(project=active) for _ in range(4)]:
        _label_all(item, annotator)
        _label_all(item, other_annotator)
    _v2(active, lead)
    client.force_login(lead)
    response = client.post(reverse("rubric_reports_compute", args=[active.slug]), follow=True)
    # v1, and v2 unless the worker already computed it (the rubric change asked for it, as v2 carries labels).
    assert re.search(r"Computing agreement for [12] rubric version", response.content.decode())
    deadline = time.monotonic() + 20
    while not AgreementReport.objects.filter(rubric_version__number=1, rubric_version__project=active).exists():
        assert time.monotonic() < deadline, "the worker did not store the v1 report"
        time.sleep(0.2)
    assert AgreementReport.objects.get(rubric_version__number=1, rubric_version__project=active).n_labels == 24
