"""The daily monitor: a calibrated judge version on each day's production records, the corrected pass rate per day
with its interval, the budget cap, idempotent and free re-runs, the beat job, the page, the dashboard and the API."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from annotate import tokens
from judges import monitor, selectors
from judges.models import CachedCompletion, Monitor, MonitorDay, MonitorDayClaim
from judges.services import judge_versions
from tests.judges.conftest import make_version
from tests.judges.monitor_data import N_PER_DAY, calibrated_version, seed_day, seed_week
from tests.judges.test_runs import _wait

DAY = dt.date(2026, 11, 10)


@pytest.fixture
def calibrated(project, standin):
    standin.configure(rule="keyword")
    return calibrated_version(project)


def _monitor(version, **options) -> Monitor:
    return monitor.monitor_set(
        judge=version.judge,
        version=version,
        daily_budget_usd=options.get("budget"),
        threshold=options.get("threshold", 0.7),
    )


@pytest.mark.django_db
def test_the_calibration_is_the_judges_measured_tpr_and_tnr_on_human_labels(calibrated):
    found = monitor.calibration_of(version=calibrated)
    assert found is not None
    assert (found.n_pos, found.n_neg) == (25, 25)
    assert found.tpr == pytest.approx(24 / 25) and found.tnr == pytest.approx(24 / 25)


@pytest.mark.django_db
def test_a_version_never_compared_with_human_labels_cannot_monitor(project, standin):
    version = make_version(judge_versions.judge_create(project=project, criterion_key="acceptable"))
    with pytest.raises(ValidationError, match="run it on dev or test items first"):
        monitor.monitor_set(judge=version.judge, version=version, daily_budget_usd=None, threshold=0.7)
    assert not Monitor.objects.exists()


@pytest.mark.django_db
def test_a_regression_day_is_corrected_and_falls_below_the_threshold_while_a_normal_day_does_not(
    project, calibrated, standin
):
    m = _monitor(calibrated)
    seed_day(project, DAY, wrong_share=0.1)
    seed_day(project, DAY + dt.timedelta(days=1), wrong_share=0.6)
    normal = monitor.monitor_day_compute(monitor_id=m.pk, day=DAY)
    bad = monitor.monitor_day_compute(monitor_id=m.pk, day=DAY + dt.timedelta(days=1))
    assert normal is not None and bad is not None
    assert (normal.n_records, normal.n_sampled, normal.n_ok, normal.n_pass) == (N_PER_DAY, N_PER_DAY, 40, 36)
    assert (bad.n_ok, bad.n_pass) == (40, 16)
    # Rogan–Gladen: (p + TNR - 1) / (TPR + TNR - 1) with TPR = TNR = 24/25.
    assert bad.value == pytest.approx((0.4 + 24 / 25 - 1) / (48 / 25 - 1))
    assert normal.value == pytest.approx((0.9 + 24 / 25 - 1) / (48 / 25 - 1))
    assert bad.ci_low < bad.value < bad.ci_high < 0.7
    assert bad.alert and not normal.alert
    assert normal.ci_high >= 0.7
    assert (normal.n_called, normal.n_cached) == (40, 0)
    assert normal.cost_usd is not None and normal.cost_usd > 0
    assert normal.calibration_run.version_id == calibrated.pk


@pytest.mark.django_db
def test_running_a_day_again_makes_no_call_costs_nothing_and_gives_the_same_figures(project, calibrated, standin):
    m = _monitor(calibrated)
    seed_day(project, DAY, wrong_share=0.6)
    first = monitor.monitor_day_compute(monitor_id=m.pk, day=DAY)
    assert first is not None
    calls_before = standin.stats()["requests"]
    again = monitor.monitor_day_compute(monitor_id=m.pk, day=DAY)
    assert again is not None
    assert standin.stats()["requests"] == calls_before
    assert (again.n_called, again.n_cached, again.cost_usd) == (0, N_PER_DAY, Decimal(0))
    assert again.total_cost_usd == first.cost_usd  # the day's spend stays what the first computation paid
    figures = ("n_sampled", "n_ok", "n_pass", "value", "ci_low", "ci_high", "alert", "seed")
    assert [getattr(again, f) for f in figures] == [getattr(first, f) for f in figures]
    assert MonitorDay.objects.filter(project=project, day=DAY).count() == 1


@pytest.mark.django_db
def test_the_budget_caps_the_day_to_a_seeded_random_sample_whose_cost_fits(project, calibrated, standin):
    seed_day(project, DAY, wrong_share=0.1, n=60)
    full = _monitor(calibrated, budget=None)
    context_cost = monitor.monitor_day_compute(monitor_id=full.pk, day=DAY)
    assert context_cost is not None and context_cost.estimated_cost_usd is not None
    per_record = context_cost.estimated_cost_usd / 60
    MonitorDay.objects.all().delete()
    CachedCompletion.objects.all().delete()
    budget = (per_record * 15).quantize(Decimal("0.0001"))
    capped = _monitor(calibrated, budget=budget)
    row = monitor.monitor_day_compute(monitor_id=capped.pk, day=DAY)
    assert row is not None
    assert 10 <= row.n_sampled < 20 and row.n_records == 60
    assert row.estimated_cost_usd <= budget and row.cost_usd <= budget
    assert row.n_called == row.n_sampled
    assert f"of 60 records fit the budget of ${budget}" in row.sample_note
    # The sample is random, not the first records received, and fixed by the day.
    judged = {c.key for c in CachedCompletion.objects.all()}
    assert len(judged) == row.n_sampled
    again = monitor.monitor_day_compute(monitor_id=capped.pk, day=DAY)
    assert again is not None and again.n_called == 0 and again.n_sampled == row.n_sampled
    assert {c.key for c in CachedCompletion.objects.all()} == judged


@pytest.mark.django_db
def test_a_zero_budget_judges_nothing_and_says_why(project, calibrated, standin):
    seed_day(project, DAY, wrong_share=0.1)
    row = monitor.monitor_day_compute(monitor_id=_monitor(calibrated, budget=Decimal(0)).pk, day=DAY)
    assert row is not None
    assert (row.n_sampled, row.n_called, row.value, row.alert) == (0, 0, None, False)
    assert row.reason == "no record was judged (40 received, 0 sampled, 0 invalid answers, 0 failed calls)"


@pytest.mark.slow
def test_beat_sends_one_task_per_monitor_for_yesterday_and_the_worker_computes_it(
    celery_worker, project, standin, settings
):
    standin.configure(rule="keyword")
    settings.MONITOR_HOUR = 5
    version = calibrated_version(project)
    m = _monitor(version)
    now = timezone.localtime().replace(hour=6)
    yesterday = now.date() - dt.timedelta(days=1)
    seed_day(project, yesterday, wrong_share=0.6)
    project.status = "active"
    project.save(update_fields=["status"])
    assert monitor.monitors_run_due(now=now.replace(hour=4)) == 0  # before MONITOR_HOUR: nothing yet
    assert monitor.monitors_run_due(now=now) == 1
    _wait(lambda: MonitorDay.objects.filter(project=project, day=yesterday).exists())
    row = MonitorDay.objects.get(project=project, day=yesterday)
    assert (row.n_ok, row.alert, row.version_id) == (N_PER_DAY, True, m.version_id)
    assert monitor.monitors_run_due(now=now) == 0  # computed: not sent again


@pytest.mark.django_db
def test_beat_skips_paused_monitors_and_projects_that_are_not_active(
    project, calibrated, settings, django_capture_on_commit_callbacks
):
    settings.MONITOR_HOUR = 0
    m = _monitor(calibrated)
    with django_capture_on_commit_callbacks(execute=False) as sent:
        assert monitor.monitors_run_due() == 0  # the project is a draft
    project.status = "active"
    project.save(update_fields=["status"])
    Monitor.objects.filter(pk=m.pk).update(enabled=False)
    with django_capture_on_commit_callbacks(execute=False) as sent_paused:
        assert monitor.monitors_run_due() == 0
    Monitor.objects.filter(pk=m.pk).update(enabled=True)
    with django_capture_on_commit_callbacks(execute=False) as sent_on:
        assert monitor.monitors_run_due() == 1
    assert (len(sent), len(sent_paused), len(sent_on)) == (0, 0, 1)
    # Sent and not computed yet (a worker on it): not sent again until MONITOR_RESEND_SECONDS have passed.
    assert monitor.monitors_run_due() == 0
    later = timezone.now() + dt.timedelta(seconds=settings.MONITOR_RESEND_SECONDS + 1)
    assert monitor.monitors_run_due(now=later) == 1
    assert monitor.monitor_day_compute(monitor_id=m.pk + 1000, day=DAY) is None  # a monitor gone: nothing to do


def test_the_beat_schedule_runs_the_monitor_job():
    from django.conf import settings as django_settings

    from judges import tasks

    entry = django_settings.CELERY_BEAT_SCHEDULE["monitor-days-due"]
    assert entry["task"] == tasks.monitor_days_due.name
    assert tasks.monitor_day_run.name == "judges.tasks.monitor_day_run"


@pytest.mark.django_db
def test_a_refusing_endpoint_stops_the_calls_and_leaves_the_day_undefined_with_the_reason(
    project, calibrated, standin, settings
):
    settings.JUDGE_STANDIN_CONCURRENCY = 1
    standin.configure(script=["401"])
    seed_day(project, DAY, wrong_share=0.1, n=20)
    cached_before = CachedCompletion.objects.count()
    requests_before = standin.stats()["requests"]
    row = monitor.monitor_day_compute(monitor_id=_monitor(calibrated).pk, day=DAY)
    assert row is not None
    assert standin.stats()["requests"] - requests_before <= 3  # not 20: the refusal stopped the rest
    assert (row.n_errors, row.n_ok, row.value, row.alert) == (20, 0, None, False)
    assert "20 failed calls" in row.reason
    assert CachedCompletion.objects.count() == cached_before  # a failure is not an answer: nothing cached


@pytest.mark.django_db
def test_changing_the_threshold_judges_the_days_already_computed_against_it(project, calibrated, standin):
    seed_day(project, DAY, wrong_share=0.6)
    m = _monitor(calibrated, threshold=0.7)
    row = monitor.monitor_day_compute(monitor_id=m.pk, day=DAY)
    assert row is not None and row.alert
    _monitor(calibrated, threshold=0.1)
    row.refresh_from_db()
    assert (row.threshold, row.alert) == (0.1, False)
    _monitor(calibrated, threshold=None)
    row.refresh_from_db()
    assert (row.threshold, row.alert) == (None, False)
    _monitor(calibrated, threshold=0.7)
    row.refresh_from_db()
    assert (row.threshold, row.alert) == (0.7, True)


@pytest.mark.django_db
def test_a_pairwise_project_cannot_be_monitored(standin):
    from tests.factories import ProjectFactory

    pairwise = ProjectFactory(slug="pairs", kind="pairwise")
    judge = judge_versions.judge_create(project=pairwise, criterion_key="acceptable")
    version = make_version(judge)
    with pytest.raises(ValidationError, match="pass/fail project"):
        monitor.monitor_set(judge=judge, version=version, daily_budget_usd=None, threshold=0.5)


@pytest.mark.django_db
def test_the_monitor_page_calls_a_version_calibrated_exactly_when_the_judges_pages_do(
    client, project, lead, calibrated
):
    """One decision: the judges pages' target check on the version's newest dev run (TPR = TNR = 0.96 there)."""
    judge = calibrated.judge
    run = calibrated.runs.get()
    client.force_login(lead)
    url = reverse("judges:monitor_settings", args=[project.slug, judge.pk])
    cases = (
        (0.9, "calibrated", '<span class="badge good">calibrated</span>'),
        (0.97, "not yet calibrated: below its target", '<span class="badge bad">not yet</span>'),
    )
    for tpr, word, badge in cases:
        judge_versions.judge_target_set(judge=judge, target="tpr_tnr", numbers={"target_tpr": tpr, "target_tnr": 0.9})
        assert selectors.run_target_check(run=run).status == ("calibrated" if tpr < 0.96 else "not_yet")
        page = client.get(url).content.decode()
        assert f"v1 · standin-judge-2025-01-01 · {word} (dev run #{run.pk}) · corrects with TPR 0.96" in page
        listing = client.get(reverse("judges:judge_list", args=[project.slug])).content.decode()
        assert f"v1 · #{run.pk}</a> {badge}" in listing
    # A version below its target still monitors: its TPR and TNR correct the pass rate all the same.
    assert client.post(url, {"version": calibrated.pk, "threshold": "0.8"}).status_code == 302


@pytest.mark.django_db
def test_a_pairwise_judge_offers_no_monitor_and_its_page_says_why_up_front(client, lead, standin):
    from tests.factories import ProjectFactory, membership

    pairwise = ProjectFactory(slug="pairs", kind="pairwise")
    membership(lead, pairwise, "lead")
    judge = judge_versions.judge_create(project=pairwise, criterion_key="acceptable")
    version = make_version(judge)
    client.force_login(lead)
    detail = client.get(reverse("judges:judge_detail", args=[pairwise.slug, judge.pk])).content.decode()
    url = reverse("judges:monitor_settings", args=[pairwise.slug, judge.pk])
    assert url not in detail and "Daily monitor" not in detail
    page = client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "it needs a pass/fail project" in html and "<form" not in html.split("<main")[-1]
    refused = client.post(url, {"version": version.pk, "threshold": "0.5", "enabled": "on"})
    assert refused.status_code == 422 and "it needs a pass/fail project" in refused.content.decode()
    assert not Monitor.objects.exists()


# --- Pages and the API ----------------------------------------------------------------------------------------


@pytest.fixture
def week(project, calibrated):
    m = _monitor(calibrated)
    days = seed_week(project, DAY, regression=DAY - dt.timedelta(days=2))
    for day in days:
        monitor.monitor_day_compute(monitor_id=m.pk, day=day)
    return days


@pytest.mark.django_db
def test_the_dashboard_plots_each_day_and_warns_of_the_day_below_the_threshold(client, project, lead, week):
    client.force_login(lead)
    html = client.get(reverse("project_detail", args=[project.slug])).content.decode()
    assert "Daily monitor" in html
    assert html.count('class="day alert"') == 1
    assert html.count('class="day"') == 6
    assert "Below threshold:" in html and "Nov 08" in html


@pytest.mark.django_db
def test_the_api_gives_each_day_with_its_interval_and_the_alert(client, project, lead, annotator, outsider, week):
    url = "/api/v1/projects/support-bot/monitor"
    _row, raw = tokens.token_create(user=lead, name="ci")
    body = client.get(url, headers={"Authorization": f"Bearer {raw}"}).json()
    assert body["alert"] is True
    (criterion,) = body["criteria"]
    assert criterion["alert_days"] == [(DAY - dt.timedelta(days=2)).isoformat()]
    assert len(criterion["days"]) == 7
    bad = criterion["days"][4]
    assert bad["ci_high"] < bad["threshold"] == 0.7 and bad["alert"] is True
    assert criterion["latest"]["day"] == DAY.isoformat() and criterion["latest"]["alert"] is False
    for user in (annotator, outsider):
        _row, other = tokens.token_create(user=user, name="x")
        assert client.get(url, headers={"Authorization": f"Bearer {other}"}).status_code == 404
    assert client.get(url).status_code == 401


@pytest.mark.django_db
def test_a_lead_chooses_the_version_budget_and_threshold_on_the_monitor_page(client, project, lead, calibrated):
    client.force_login(lead)
    url = reverse("judges:monitor_settings", args=[project.slug, calibrated.judge_id])
    page = client.get(url).content.decode()
    run_id = calibrated.runs.get().pk
    assert (
        f"v1 · standin-judge-2025-01-01 · no target set (dev run #{run_id}) · corrects with TPR 0.96, TNR 0.96 of its "
        "dev run" in page
    )
    # The box sits in its label, box first (templates/_field.html), not alone under a detached label.
    assert '<label class="inline" for="id_enabled"><input type="checkbox" name="enabled"' in page
    assert "Run every day</label>" in page
    response = client.post(
        url, {"version": calibrated.pk, "daily_budget_usd": "0.25", "threshold": "0.8", "enabled": "on"}
    )
    assert response.status_code == 302
    m = Monitor.objects.get(judge=calibrated.judge)
    assert (m.version_id, m.daily_budget_usd, m.threshold, m.enabled) == (calibrated.pk, Decimal("0.25"), 0.8, True)


@pytest.mark.django_db
def test_an_uncalibrated_version_or_a_bad_threshold_is_refused_with_the_typed_values_kept(
    client, project, lead, calibrated
):
    client.force_login(lead)
    newer = make_version(calibrated.judge, change_note="not run yet")
    url = reverse("judges:monitor_settings", args=[project.slug, calibrated.judge_id])
    # Before any monitor, the page preselects the newest version that can monitor, not the newest one.
    assert f'<option value="{calibrated.pk}" selected>' in client.get(url).content.decode()
    response = client.post(url, {"version": newer.pk, "daily_budget_usd": "1.5", "threshold": "0.8"})
    assert response.status_code == 422
    html = response.content.decode()
    assert "run it on dev or test items first" in html and 'value="1.5"' in html
    assert (
        "v2 · standin-judge-2025-01-01 · no finished dev run · cannot monitor: no run on items humans passed and "
        "failed" in html
    )
    response = client.post(url, {"version": calibrated.pk, "threshold": "1.5"})
    assert response.status_code == 422 and "The threshold is a pass rate between 0 and 1." in response.content.decode()
    assert not Monitor.objects.exists()


@pytest.mark.django_db
def test_annotators_and_outsiders_get_404_on_the_monitor_page(client, project, annotator, outsider, calibrated):
    url = reverse("judges:monitor_settings", args=[project.slug, calibrated.judge_id])
    for user in (annotator, outsider):
        client.force_login(user)
        assert client.get(url).status_code == 404
        assert client.post(url, {"version": calibrated.pk, "threshold": "0.5"}).status_code == 404
    assert not Monitor.objects.exists()


# Two threads writing at once: the SQLite test database is in memory with a shared cache, where a second writer gets
# "database table is locked" at once (no busy timeout applies), unlike `make run`'s file, where it waits its turn.
@pytest.mark.postgres(reason="two writers at once: the in-memory shared-cache SQLite test database cannot wait")
@pytest.mark.django_db(transaction=True)
def test_two_computations_of_the_same_day_started_together_judge_and_pay_once(project, standin):
    # Beat's task and a manual re-run (or a redelivered message on a second worker) start at the same moment. The
    # stand-in answers slowly, so without the claim both would call for every record and add up their costs.
    standin.configure(rule="keyword")
    m = _monitor(calibrated_version(project))
    seed_day(project, DAY, wrong_share=0.6)
    standin.configure(latency_ms=150)
    calls_before = standin.stats()["requests"]
    start = threading.Barrier(2)
    outcomes: list[object] = []

    def compute() -> None:
        start.wait()
        try:
            outcomes.append(monitor.monitor_day_compute(monitor_id=m.pk, day=DAY))
        except monitor.DayBusy as exc:
            outcomes.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=compute) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(outcomes) == 2
    rows = [o for o in outcomes if isinstance(o, MonitorDay)]
    busy = [o for o in outcomes if isinstance(o, monitor.DayBusy)]
    assert (len(rows), len(busy)) == (1, 1)
    assert standin.stats()["requests"] - calls_before == N_PER_DAY
    row = MonitorDay.objects.get(project=project, day=DAY)
    assert row.n_called == N_PER_DAY and row.total_cost_usd == row.cost_usd > 0
    claim = MonitorDayClaim.objects.get(monitor=m, day=DAY)
    assert claim.finished_at is not None
    # Once the first is done the day can be computed again: from the cache, at no cost.
    standin.configure(latency_ms=0)
    again = monitor.monitor_day_compute(monitor_id=m.pk, day=DAY)
    assert again is not None and again.n_called == 0 and again.total_cost_usd == row.cost_usd


@pytest.mark.django_db
def test_a_claim_left_by_a_dead_worker_is_taken_over_once_stale_but_a_live_one_turns_the_run_away(
    project, calibrated, standin, settings
):
    m = _monitor(calibrated)
    seed_day(project, DAY, wrong_share=0.1)
    claim = MonitorDayClaim.objects.create(monitor=m, day=DAY, token="x" * 32, claimed_at=timezone.now())
    calls_before, cached_before = standin.stats()["requests"], CachedCompletion.objects.count()
    with pytest.raises(monitor.DayBusy, match="being computed by another task"):
        monitor.monitor_day_compute(monitor_id=m.pk, day=DAY)
    assert not MonitorDay.objects.exists()
    assert (standin.stats()["requests"], CachedCompletion.objects.count()) == (calls_before, cached_before)
    claim.claimed_at = timezone.now() - dt.timedelta(seconds=settings.MONITOR_RESEND_SECONDS + 1)
    claim.save()
    row = monitor.monitor_day_compute(monitor_id=m.pk, day=DAY)
    assert row is not None and row.n_ok == N_PER_DAY
    claim.refresh_from_db()
    assert claim.token != "x" * 32 and claim.finished_at is not None
