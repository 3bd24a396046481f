"""The daily production sample: records in, a seeded sample out, once a day, first in the queue; the drift check."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.urls import reverse
from django.utils import timezone
from scipy import stats

from annotate import samples, tokens
from annotate.imports.report import ImportInvalid
from annotate.models import DailySample, Item, ProductionRecord, Project
from annotate.services.queue import queue_claim
from tests.factories import ItemFactory, ProjectFactory

pytestmark = pytest.mark.django_db

TODAY = dt.date(2026, 3, 10)
YESTERDAY = TODAY - dt.timedelta(days=1)


def _receive(project: Project, records: list[dict]) -> samples.ReceiveResult:
    return samples.records_receive(project=project, rows=enumerate(records))


def _records_of(project: Project, day: dt.date, n: int, *, prefix: str = "Question", length: int = 1) -> None:
    """n distinct records of `day` (received_on moved there: the service stamps today)."""
    _receive(project, [{"input": f"{prefix} {i} " + "word " * length, "output": f"Answer {i}"} for i in range(n)])
    ProductionRecord.objects.filter(project=project, received_on=timezone.localdate()).update(received_on=day)


def test_records_are_checked_like_items_and_deduplicated_by_content_per_day(project):
    first = _receive(
        project, [{"input": "Q", "output": "A"}, {"input": "Q", "output": "A"}, {"input": "Q2", "output": "B"}]
    )
    assert (first.received, first.duplicates) == (2, 1)
    again = _receive(project, [{"input": "Q", "output": "A", "external_id": "trace-1"}])
    assert (again.received, again.duplicates) == (0, 1)
    with pytest.raises(ImportInvalid) as exc:
        _receive(project, [{"input": "ok", "output": "ok"}, {"input": "no output"}])
    assert [(e.line, e.field) for e in exc.value.errors] == [(1, "output")]
    assert ProductionRecord.objects.filter(project=project).count() == 2


def test_the_sample_is_seeded_by_project_and_day_and_taking_it_again_adds_nothing(project):
    project.sample_size = 5
    project.save()
    _records_of(project, YESTERDAY, 40)
    sample, created = samples.sample_take(project=project, day=TODAY)
    assert created and (sample.n_records, sample.n_candidates, sample.n_added) == (40, 40, 5)
    assert sample.seed == samples.sample_seed(project=project, day=TODAY)
    chosen = sorted(Item.objects.filter(project=project, sampled_on=TODAY).values_list("content_hash", flat=True))
    assert samples.sample_take(project=project, day=TODAY) == (sample, False)
    assert Item.objects.filter(project=project).count() == 5
    # Deterministic: the same project and day choose the same records again.
    Item.objects.filter(project=project).delete()
    DailySample.objects.all().delete()
    samples.sample_take(project=project, day=TODAY)
    assert sorted(Item.objects.filter(project=project).values_list("content_hash", flat=True)) == chosen
    # Another day's seed chooses differently from the same kind of records.
    _records_of(project, TODAY, 40)
    samples.sample_take(project=project, day=TODAY + dt.timedelta(days=1))
    later = sorted(
        Item.objects.filter(project=project, sampled_on=TODAY + dt.timedelta(days=1)).values_list("input", flat=True)
    )
    assert later != sorted(Item.objects.filter(project=project, sampled_on=TODAY).values_list("input", flat=True))


def test_sampled_items_come_first_in_the_queue_and_yesterdays_sample_goes_back_to_priority_0(project, annotator):
    project.status = Project.Status.ACTIVE
    project.sample_size = 2
    project.save()
    for i in range(20):
        ItemFactory(project=project, input=f"Imported {i}")
    _records_of(project, YESTERDAY - dt.timedelta(days=1), 3, prefix="Old")
    samples.sample_take(project=project, day=YESTERDAY)
    _records_of(project, YESTERDAY, 3, prefix="New")
    samples.sample_take(project=project, day=TODAY)
    today = Item.objects.filter(project=project, sampled_on=TODAY)
    assert today.count() == 2 and set(today.values_list("priority", "source")) == {(1, "sample")}
    assert set(Item.objects.filter(sampled_on=YESTERDAY).values_list("priority", flat=True)) == {0}
    claimed = [
        queue_claim(project=project, annotator=annotator, rubric_version_id=project.current_rubric_id) for _ in range(2)
    ]
    assert {item.pk for item in claimed} == set(today.values_list("pk", flat=True))


def test_the_sample_skips_content_the_project_already_has_and_keeps_a_reused_id_apart(project):
    project.sample_size = 10
    project.save()
    ItemFactory(project=project, input="Question 0 word ", output="Answer 0")
    ItemFactory(project=project, external_id="trace-1", input="Another", output="Thing")
    _records_of(project, YESTERDAY, 3)
    _receive(
        project,
        [
            {"external_id": "trace-1", "input": "Fresh", "output": "Content"},
            {"external_id": "trace-2", "input": "Twice", "output": "One"},
            {"external_id": "trace-2", "input": "Twice", "output": "Two"},
        ],
    )
    ProductionRecord.objects.filter(received_on=timezone.localdate()).update(received_on=YESTERDAY)
    sample, _ = samples.sample_take(project=project, day=TODAY)
    assert (sample.n_records, sample.n_candidates, sample.n_added) == (6, 5, 5)
    sampled = Item.objects.filter(project=project, sampled_on=TODAY)
    assert "Question 0 word " not in set(sampled.values_list("input", flat=True))
    reused = sampled.get(input="Fresh")
    assert reused.external_id.startswith("trace-1~") and reused.metadata["received_at"]
    # Two of the day's records under one id: both are kept, apart.
    assert sorted(sampled.filter(input="Twice").values_list("external_id", flat=True))[0] == "trace-2"
    assert sampled.filter(external_id__startswith="trace-2~").count() == 1


def test_a_day_without_records_makes_an_empty_sample_that_still_counts_as_taken(project):
    sample, created = samples.sample_take(project=project, day=TODAY)
    assert created and sample.n_added == 0 and sample.drift["n_records"] == 0
    assert samples.sample_take(project=project, day=TODAY)[1] is False


def test_the_hourly_job_samples_active_projects_whose_hour_has_come_once_a_day(project, settings):
    settings.TIME_ZONE = "UTC"
    project.status = Project.Status.ACTIVE
    project.sample_hour = 6
    project.save()
    later = ProjectFactory(slug="later", status=Project.Status.ACTIVE, sample_hour=20)
    ProjectFactory(slug="off", status=Project.Status.ACTIVE, sample_size=0)
    ProjectFactory(slug="draft")
    morning = dt.datetime(2026, 3, 10, 7, 30, tzinfo=dt.UTC)
    assert samples.samples_take_due(now=morning) == 1
    assert samples.samples_take_due(now=morning + dt.timedelta(minutes=60)) == 0
    assert list(DailySample.objects.values_list("project__slug", "day")) == [("support-bot", dt.date(2026, 3, 10))]
    assert samples.samples_take_due(now=morning.replace(hour=21)) == 1
    assert DailySample.objects.filter(project=later).exists()


def test_the_beat_schedule_runs_the_daily_sample_job():
    entry = django_settings.CELERY_BEAT_SCHEDULE["samples-take-due"]
    assert entry["task"] == "annotate.tasks.samples_take_due"
    from annotate import tasks

    assert tasks.samples_take_due.name == entry["task"]


def test_the_ks_distance_matches_scipy():
    rng = np.random.default_rng(7)
    for a, b in (
        (rng.normal(100, 20, 300), rng.normal(110, 25, 200)),
        (rng.integers(0, 5, 50), rng.integers(0, 5, 80)),
    ):
        assert samples._ks(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic)


def test_drift_compare_flags_missing_fields_shifted_lengths_and_missing_metadata():
    rng = np.random.default_rng(1)
    items = {"input": rng.normal(200, 30, 500).astype(int), "output": rng.normal(400, 50, 500).astype(int)}
    same = {"input": rng.normal(200, 30, 300).astype(int), "output": rng.normal(400, 50, 300).astype(int)}
    keys = Counter({"model": 500, "locale": 500})
    calm = samples.drift_compare(
        fields=("input", "output"),
        item_lengths=items,
        record_lengths=same,
        item_keys=keys,
        record_keys=Counter({"model": 300, "locale": 300}),
        n_items=500,
        n_records=300,
    )
    assert calm["flags"] == [] and calm["missing_metadata"] == []
    shifted = {"input": rng.normal(800, 30, 300).astype(int), "output": np.r_[np.zeros(100), rng.normal(400, 50, 200)]}
    drift = samples.drift_compare(
        fields=("input", "output"),
        item_lengths=items,
        record_lengths=shifted,
        item_keys=keys,
        record_keys=Counter({"model": 300, "trace_id": 300}),
        n_items=500,
        n_records=300,
    )
    assert any(flag.startswith("input length shifted") for flag in drift["flags"])
    assert any(flag.startswith("output is empty in 33% of records") for flag in drift["flags"])
    assert drift["missing_metadata"] == ["locale"] and drift["new_metadata"] == ["trace_id"]


def test_the_lead_dashboard_shows_todays_sample_with_its_progress_and_drift(client, project, lead, annotator):
    project.sample_size = 3
    project.save()
    for i in range(30):
        ItemFactory(project=project, input=f"Short {i}", output="ok")
    _records_of(
        project, timezone.localdate() - dt.timedelta(days=1), 30, prefix="A much longer production question", length=60
    )
    samples.sample_take(project=project, day=timezone.localdate())
    client.force_login(lead)
    page = client.get(reverse("project_detail", args=[project.slug])).content.decode()
    assert "Today's sample" in page and '<progress id="sample-progress" max="3" value="0">' in page
    assert "0 of 3 items complete" in page and "input length shifted" in page
    client.force_login(annotator)
    assert "Today's sample" not in client.get(reverse("project_detail", args=[project.slug])).content.decode()


def test_the_samples_endpoint_takes_records_from_a_leads_token_only(client, project, lead, annotator):
    def post(user, body):
        _row, raw = tokens.token_create(user=user, name="pipeline")
        return client.post(
            f"/api/v1/projects/{project.slug}/samples",
            data=json.dumps(body),
            content_type="application/json",
            headers={"Authorization": f"Bearer {raw}"},
        )

    ok = post(lead, {"records": [{"input": "Q", "output": "A"}, {"input": "Q", "output": "A"}]})
    assert ok.status_code == 200 and ok.json() == {"received": 1, "duplicates": 1}
    assert post(annotator, {"input": "Q", "output": "A"}).status_code == 404
    bad = post(lead, {"records": [{"input": "Q"}]})
    assert bad.status_code == 400 and bad.json()["errors"] == [
        {"field": "records.0.output", "message": "missing field"}
    ]
    progress = client.get(
        f"/api/v1/projects/{project.slug}/progress",
        headers={"Authorization": f"Bearer {tokens.token_create(user=lead, name='read')[1]}"},
    ).json()
    assert progress["today_sample"]["n_records_today"] == 1 and progress["today_sample"]["taken"] is False
