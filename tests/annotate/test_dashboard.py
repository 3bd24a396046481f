"""The project page: the lead's dashboard (progress, stored agreement, adjudication queue, throughput, judges) and the
annotator's own page, which shows none of the lead's figures."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from django.db import connection, transaction
from django.template import Context, Template
from django.urls import reverse
from django.utils import timezone

from annotate import reports, selectors, tasks, throughput
from annotate.models import Label, Membership, ThroughputCount, ThroughputWatermark
from annotate.services.leases import queue_counts_refresh
from annotate.services.projects import project_set_status
from annotate.services.rubrics import rubric_set_criteria
from judges import prompts
from judges.models import Judge, JudgeRun
from judges.services import judge_versions
from tests.factories import DEFAULT_CRITERIA, ItemFactory, ProjectFactory, UserFactory, label, membership

pytestmark = pytest.mark.django_db

LEAD_ONLY_MARKERS = (
    "Human–human agreement",
    "Adjudication queue",
    "Annotators' throughput",
    "Krippendorff",
    "to adjudicate",
    "judges/",
    "Today's sample",
    "Work done",
)


@pytest.fixture
def labeled(project, lead, annotator, other_annotator):
    """An active project with 12 items labeled by two annotators who disagree on some, and a stored report."""
    project_set_status(project=project, status="active")
    project.refresh_from_db()
    items = [ItemFactory(project=project) for _ in range(12)]
    for n, item in enumerate(items):
        for key in ("acceptable", "follows_instructions", "factually_correct"):
            label(item, annotator, key, "pass" if n % 2 else "fail")
            label(item, other_annotator, key, "pass" if n % 2 or n % 3 == 0 else "fail")
    queue_counts_refresh(project=project)
    reports.report_refresh(project=project, force=True)
    return project, items


def test_the_lead_sees_progress_agreement_with_intervals_and_the_adjudication_queue(client, lead, labeled):
    project, _ = labeled
    client.force_login(lead)
    page = client.get(reverse("project_detail", args=[project.slug])).content.decode()
    stored = reports.AgreementReport.objects.get(project=project)
    alpha = stored.data["criteria"]["acceptable"]["human"]["krippendorff_alpha"]
    assert f"{alpha['value']:.2f} [{alpha['ci_low']:.2f}, {alpha['ci_high']:.2f}]" in page
    assert 'class="chart chart-bars"' in page
    needs = stored.data["criteria"]["acceptable"]["consensus"]["n_needs_adjudication"]
    assert needs > 0
    adjudicate = reverse("adjudicate", args=[project.slug, "acceptable"])
    assert f'<a class="count-link" href="{adjudicate}">{needs} to adjudicate</a>' in page
    assert "computed <time" in page and reverse("agreement_compute", args=[project.slug]) in page
    # Progress: 12 items, each submitted completely by its 2 annotators.
    assert "<dt>Complete</dt><dd>12</dd>" in page and "<dt>Work done</dt><dd>100%</dd>" in page
    assert "<dt>Labels, rubric v1</dt><dd>72</dd>" in page


def test_labels_given_after_the_report_are_counted_as_new(client, lead, annotator, labeled):
    project, _ = labeled
    extra = ItemFactory(project=project)
    label(extra, annotator, "acceptable", "pass")
    client.force_login(lead)
    page = client.get(reverse("project_detail", args=[project.slug])).content.decode()
    assert "+1 labels since" in page and "<dt>Labels, rubric v1</dt><dd>73</dd>" in page


def test_without_a_report_the_dashboard_says_so_and_offers_to_compute_it(client, lead, project):
    client.force_login(lead)
    page = client.get(reverse("project_detail", args=[project.slug])).content.decode()
    assert "No agreement report yet" in page
    assert "No labels in the last 14 days." in page


def test_throughput_counts_labels_per_annotator_per_local_day_in_the_window_and_only_this_project(
    project, annotator, other_annotator
):
    today = dt.date(2026, 3, 20)
    tz = timezone.get_current_timezone()

    def at(days_ago: int) -> dt.datetime:
        return dt.datetime.combine(today - dt.timedelta(days=days_ago), dt.time(12), tzinfo=tz)

    item = ItemFactory(project=project)
    keys = [c["key"] for c in DEFAULT_CRITERIA]
    for days_ago, user, n in ((0, annotator, 3), (3, annotator, 2), (10, annotator, 1), (20, annotator, 3)):
        for key in keys[:n]:
            other = ItemFactory(project=project)
            label(other if days_ago else item, user, key, "pass", created_at=at(days_ago))
    label(item, other_annotator, "acceptable", "fail", created_at=at(6))
    elsewhere = ProjectFactory(slug="elsewhere")
    membership(annotator, elsewhere)
    label(ItemFactory(project=elsewhere), annotator, "acceptable", "pass", created_at=at(0))

    flow = selectors.throughput(project=project, days=14, today=today)
    assert flow.days[0] == today - dt.timedelta(days=13) and flow.days[-1] == today
    by_name = {a.username: a for a in flow.annotators}
    assert (by_name["ada-annotator"].last_7, by_name["ada-annotator"].last_14) == (5, 6)
    assert by_name["ada-annotator"].active_days == 3
    assert (by_name["omar-annotator"].last_7, by_name["omar-annotator"].last_14) == (1, 1)
    assert [a.username for a in flow.annotators] == ["ada-annotator", "omar-annotator"]
    assert flow.per_day[-1] == 3 and flow.per_day[-4] == 2 and sum(flow.per_day) == 7


def test_the_dashboard_shows_throughput_as_a_chart_and_a_table(client, lead, labeled):
    project, _ = labeled
    client.force_login(lead)
    page = client.get(reverse("project_detail", args=[project.slug])).content.decode()
    assert 'class="chart chart-columns"' in page
    row = '<tr><td>ada-annotator</td><td class="num">36</td><td class="num">36</td><td class="num">1</td></tr>'
    assert row in page


def test_judges_show_their_latest_alignment_and_a_stale_flag_once_the_rubric_moves_on(client, lead, labeled):
    project, _ = labeled
    judge = judge_versions.judge_create(project=project, criterion_key="acceptable", actor=lead)
    version = judge_versions.judge_version_create(
        judge=judge,
        system_template=prompts.DEFAULT_SYSTEM[project.kind],
        user_template=prompts.DEFAULT_USER[project.kind],
        endpoint="standin",
        model="standin-judge-2024-01-01",
    )
    JudgeRun.objects.create(
        project=project,
        version=version,
        rubric_version=project.current_rubric,
        status=JudgeRun.Status.DONE,
        report={"figures": {"kappa": {"value": 0.42, "ci_low": 0.21, "ci_high": 0.63, "n": 12}}},
        finished_at=timezone.now(),
    )
    client.force_login(lead)
    url = reverse("project_detail", args=[project.slug])
    page = client.get(url).content.decode()
    # "Calibrated" only when the run meets the judge's target, as the judges page decides it.
    assert "κ 0.42 [0.21, 0.63]" in page and "Calibrated" not in page and "Stale" not in page
    Judge.objects.filter(pk=judge.pk).update(target=Judge.Target.KAPPA, target_kappa=0.60)
    page = client.get(url).content.decode()
    assert "Below target" in page and "Calibrated" not in page
    Judge.objects.filter(pk=judge.pk).update(target_kappa=0.40)
    page = client.get(url).content.decode()
    assert "Calibrated (rubric v1)" in page and "Below target" not in page
    run = JudgeRun.objects.get(version=version)
    assert f'href="{reverse("judges:run_production", args=[project.slug, run.pk])}">production quality' in page
    criteria = [dict(c) for c in DEFAULT_CRITERIA]
    criteria[0]["description"] = "A user would ship it as it is."
    rubric_set_criteria(project=project, criteria=criteria, actor=lead)
    page = client.get(url).content.decode()
    assert 'badge stale"' in page and "1 judge calibrated on an older rubric" in page
    assert "The criterion&#x27;s definition changed since the last calibration run." in page


def test_an_annotator_sees_their_own_progress_and_none_of_the_leads_figures(client, annotator, labeled):
    project, _ = labeled
    client.force_login(annotator)
    response = client.get(reverse("project_detail", args=[project.slug]))
    page = response.content.decode()
    assert response.status_code == 200
    assert "Your progress" in page and "Start labeling" in page
    assert "12 of 12 items have all the labels they need" in page
    for marker in LEAD_ONLY_MARKERS:
        assert marker not in page, marker
    assert "omar-annotator" not in page  # nobody else's name, let alone their figures
    assert "lena-lead" not in page.split("<main>")[1]


def test_the_dashboard_reads_a_fixed_number_of_queries(client, lead, labeled, django_assert_max_num_queries):
    project, _ = labeled
    client.force_login(lead)
    url = reverse("project_detail", args=[project.slug])
    client.get(url)
    with django_assert_max_num_queries(21):  # one more for the judges' latest dev runs (the "calibrated" badge)
        assert client.get(url).status_code == 200


def test_project_stats_count_labels_per_rubric_version(project, lead, annotator):
    item = ItemFactory(project=project)
    label(item, annotator, "acceptable", "pass")
    criteria = [dict(c) for c in DEFAULT_CRITERIA]
    criteria[0]["name"] = "Acceptable as it is"  # renamed: its labels start again under v2
    rubric_set_criteria(project=project, criteria=criteria, actor=lead)
    project.refresh_from_db()
    label(item, annotator, "acceptable", "fail")
    label(item, annotator, "follows_instructions", "fail")
    stats = selectors.project_stats(project=project)
    assert (stats.n_labels, stats.n_labels_current) == (3, 2)
    assert Label.objects.filter(item__project=project).count() == 3
    assert selectors.project_stats(project=project, count_labels=False).n_labels is None


def test_links_to_pages_that_do_not_exist_yet_are_left_out():
    rendered = Template(
        "{% load dashboard %}{% optional_url 'no_such_page' 'x' as a %}{% optional_url 'project_detail' 'x' as b %}"
        "[{{ a }}][{{ b }}]"
    ).render(Context({}))
    assert rendered == "[][/p/x/]"


def test_staff_see_the_lead_dashboard_and_members_are_listed(client, labeled):
    project, _ = labeled
    staff = UserFactory(username="sam-staff", is_staff=True)
    client.force_login(staff)
    page = client.get(reverse("project_detail", args=[project.slug])).content.decode()
    assert "Human–human agreement" in page and "You are lead" in page
    assert Membership.objects.filter(project=project, role=Membership.Role.ANNOTATOR).count() == 2
    assert "ada-annotator" in page and "omar-annotator" in page


# --- Stored throughput: the beat pass and the read ------------------------------------------------------------


def _counted_by_hand(project, today: dt.date, days: int = 14) -> dict[tuple[str, dt.date], int]:
    """Labels per (annotator, local day) in the window, counted row by row in Python: the figure the page must show."""
    first = today - dt.timedelta(days=days - 1)
    tz = timezone.get_default_timezone()
    out: dict[tuple[str, dt.date], int] = {}
    for created_at, username in Label.objects.filter(item__project=project).values_list(
        "created_at", "annotator__username"
    ):
        day = timezone.localtime(created_at, tz).date()
        if first <= day <= today:
            out[(username, day)] = out.get((username, day), 0) + 1
    return out


def _shown(project, today: dt.date) -> dict[tuple[str, dt.date], int]:
    flow = selectors.throughput(project=project, days=14, today=today)
    return {(a.username, day): n for a in flow.annotators for day, n in zip(flow.days, a.per_day, strict=True) if n}


def _stored(project) -> dict[tuple[int, dt.date], int]:
    return {(c.annotator_id, c.day): c.n for c in ThroughputCount.objects.filter(project=project)}


def test_stored_throughput_stays_exact_across_beat_passes_with_labels_given_in_between(
    project, annotator, other_annotator
):
    today = timezone.localdate(timezone=timezone.get_default_timezone())
    tz = timezone.get_default_timezone()

    def at(days_ago: int) -> dt.datetime:
        return dt.datetime.combine(today - dt.timedelta(days=days_ago), dt.time(12), tzinfo=tz)

    keys = [c["key"] for c in DEFAULT_CRITERIA]
    elsewhere = ProjectFactory(slug="elsewhere")
    membership(annotator, elsewhere)
    for round_, (days_ago, user) in enumerate(((0, annotator), (2, other_annotator), (20, annotator), (0, annotator))):
        for _ in range(round_ + 1):
            item = ItemFactory(project=project)
            for key in keys:
                label(item, user, key, "pass", created_at=at(days_ago))
        label(ItemFactory(project=elsewhere), annotator, "acceptable", "pass")
        # Before the pass the new labels come from the read's own count, after it from the stored rows.
        assert _shown(project, today) == _counted_by_hand(project, today)
        added = throughput.throughput_count_pass(project=project)
        assert added == 3 * (round_ + 1)
        assert _shown(project, today) == _counted_by_hand(project, today)
    # Every label of the project is stored (the 20-day-old ones too, outside the window), none of the other project.
    assert sum(_stored(project).values()) == Label.objects.filter(item__project=project).count() == 30
    assert sum(_stored(elsewhere).values()) == 0
    mark = ThroughputWatermark.objects.get(project=project)
    assert mark.counted_through == Label.objects.order_by("-id").values_list("id", flat=True).first()
    assert mark.pending_through is None


def test_a_repeated_pass_adds_nothing_and_edits_deletes_and_removed_members_keep_the_counts(
    project, annotator, other_annotator
):
    today = timezone.localdate(timezone=timezone.get_default_timezone())
    items = [ItemFactory(project=project) for _ in range(3)]
    labels = [label(item, user, "acceptable", "pass") for item in items for user in (annotator, other_annotator)]
    assert throughput.throughput_count_pass(project=project) == 6
    before = _stored(project)
    assert throughput.throughput_count_pass(project=project) == 0
    assert tasks.throughput_counts_refresh.apply(args=[project.pk]).get() == 0
    assert _stored(project) == before
    shown = _shown(project, today)
    assert shown == {("ada-annotator", today): 3, ("omar-annotator", today): 3}
    Label.objects.filter(pk=labels[0].pk).update(value="fail", revision=2)
    Label.objects.filter(pk=labels[1].pk).delete()
    Membership.objects.filter(project=project, user=other_annotator).delete()
    assert throughput.throughput_count_pass(project=project) == 0
    assert _shown(project, today) == shown  # creation counts: what was given stays given


def test_the_label_at_the_watermark_is_counted_once_and_the_next_one_by_the_read_until_the_next_pass(
    project, annotator
):
    today = timezone.localdate(timezone=timezone.get_default_timezone())
    item = ItemFactory(project=project)
    at_mark = label(item, annotator, "acceptable", "pass")
    throughput.throughput_count_pass(project=project)
    assert ThroughputWatermark.objects.get(project=project).counted_through == at_mark.pk
    assert _shown(project, today) == {("ada-annotator", today): 1}
    after = label(item, annotator, "follows_instructions", "pass")
    assert after.pk == at_mark.pk + 1
    assert _shown(project, today) == {("ada-annotator", today): 2}
    assert _stored(project) == {(annotator.pk, today): 1}
    throughput.throughput_count_pass(project=project)
    assert _shown(project, today) == {("ada-annotator", today): 2}
    assert _stored(project) == {(annotator.pk, today): 2}
    # A label imported today with last month's creation time lands on its own day, not in today's count.
    label(item, annotator, "factually_correct", "pass", created_at=timezone.now() - dt.timedelta(days=30))
    throughput.throughput_count_pass(project=project)
    assert _shown(project, today) == {("ada-annotator", today): 2}
    assert sum(_stored(project).values()) == 3


def test_the_beat_schedule_runs_the_pass_and_the_worker_fills_the_counts(celery_worker, project, annotator):
    from django.conf import settings

    assert settings.CELERY_BEAT_SCHEDULE["throughput-counts-refresh"]["task"] == tasks.throughput_counts_refresh.name
    item = ItemFactory(project=project)
    newest = label(item, annotator, "acceptable", "pass")
    tasks.throughput_counts_refresh.delay()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        mark = ThroughputWatermark.objects.filter(project=project).first()
        if mark is not None and mark.counted_through == newest.pk:
            break
        time.sleep(0.1)
    assert _stored(project) == {(annotator.pk, newest.created_at.astimezone(timezone.get_default_timezone()).date()): 1}


class _OpenWriter(threading.Thread):
    """Inserts one label in its own transaction and keeps it open until told to commit: a submit or an import whose
    id was drawn before others that commit first."""

    def __init__(self, item, annotator, key: str) -> None:
        super().__init__()
        self.item, self.annotator, self.key = item, annotator, key
        self.inserted, self.commit = threading.Event(), threading.Event()
        self.label_id = 0

    def run(self) -> None:
        try:
            with transaction.atomic():
                self.label_id = label(self.item, self.annotator, self.key, "pass").pk
                self.inserted.set()
                self.commit.wait(30)
        finally:
            connection.close()


@pytest.mark.postgres(reason="concurrent writers and passes: the watermark reads pg_locks; SQLite has one writer")
@pytest.mark.django_db(transaction=True)
def test_a_label_committed_after_a_larger_id_is_counted_once_by_a_later_pass(project, annotator, other_annotator):
    today = timezone.localdate(timezone=timezone.get_default_timezone())
    items = [ItemFactory(project=project) for _ in range(3)]
    label(items[0], annotator, "acceptable", "pass")
    assert throughput.throughput_count_pass(project=project) == 1
    writer = _OpenWriter(items[1], other_annotator, "acceptable")
    writer.start()
    try:
        assert writer.inserted.wait(20)
        later = label(items[2], annotator, "acceptable", "pass")  # a larger id, committed first
        assert later.pk > writer.label_id
        # A watermark at the largest visible id would now skip the open label for ever: the pass waits for it.
        assert throughput.throughput_count_pass(project=project) == 0
        mark = ThroughputWatermark.objects.get(project=project)
        assert mark.counted_through < writer.label_id and mark.pending_through == later.pk
        assert _shown(project, today) == {("ada-annotator", today): 2}  # the read counts what is committed
    finally:
        writer.commit.set()
        writer.join(30)
    assert _shown(project, today) == {("ada-annotator", today): 2, ("omar-annotator", today): 1}
    assert throughput.throughput_count_pass(project=project) == 2
    assert throughput.throughput_count_pass(project=project) == 0
    assert _shown(project, today) == _counted_by_hand(project, today)
    assert sum(_stored(project).values()) == 3


@pytest.mark.postgres(reason="concurrent writers and passes: the watermark reads pg_locks; SQLite has one writer")
@pytest.mark.django_db(transaction=True)
def test_passes_running_alongside_inserts_and_each_other_count_every_label_exactly_once(
    project, annotator, other_annotator
):
    today = timezone.localdate(timezone=timezone.get_default_timezone())
    items = [ItemFactory(project=project) for _ in range(40)]
    keys = [c["key"] for c in DEFAULT_CRITERIA]
    stop = threading.Event()
    errors: list[BaseException] = []

    def insert(user, chunk) -> None:
        try:
            for item in chunk:
                with transaction.atomic():  # one submit: an item's criteria together
                    for key in keys:
                        label(item, user, key, "pass")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    def passes() -> None:
        try:
            while not stop.is_set():
                throughput.throughput_count_pass(project=project)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    writers = [threading.Thread(target=insert, args=(u, items)) for u in (annotator, other_annotator)]
    counters = [threading.Thread(target=passes) for _ in range(2)]
    for t in counters + writers:
        t.start()
    for t in writers:
        t.join(120)
    stop.set()
    for t in counters:
        t.join(60)
    assert not errors, errors
    throughput.throughput_count_pass(project=project)
    assert sum(_stored(project).values()) == Label.objects.filter(item__project=project).count() == 240
    assert (
        _shown(project, today)
        == _counted_by_hand(project, today)
        == {
            ("ada-annotator", today): 120,
            ("omar-annotator", today): 120,
        }
    )
