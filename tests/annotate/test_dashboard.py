"""The project page: the lead's dashboard (progress, stored agreement, adjudication queue, throughput, judges) and the
annotator's own page, which shows none of the lead's figures."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.cache import cache
from django.template import Context, Template
from django.urls import reverse
from django.utils import timezone

from annotate import reports, selectors, services
from annotate.models import Label, Membership
from judges import prompts
from judges import services as judge_services
from judges.models import JudgeRun
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
    services.project_set_status(project=project, status="active")
    project.refresh_from_db()
    items = [ItemFactory(project=project) for _ in range(12)]
    for n, item in enumerate(items):
        for key in ("acceptable", "follows_instructions", "factually_correct"):
            label(item, annotator, key, "pass" if n % 2 else "fail")
            label(item, other_annotator, key, "pass" if n % 2 or n % 3 == 0 else "fail")
    services.queue_counts_refresh(project=project)
    reports.report_refresh(project=project, force=True)
    cache.delete(selectors.throughput_cache_key(project=project, today=timezone.localdate()))
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
    judge = judge_services.judge_create(project=project, criterion_key="acceptable", actor=lead)
    version = judge_services.judge_version_create(
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
    assert "κ 0.42 [0.21, 0.63]" in page and "Calibrated on v1" in page and "Stale" not in page
    criteria = [dict(c) for c in DEFAULT_CRITERIA]
    criteria[0]["description"] = "A user would ship it as it is."
    services.rubric_set_criteria(project=project, criteria=criteria, actor=lead)
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
    with django_assert_max_num_queries(20):
        assert client.get(url).status_code == 200


def test_project_stats_count_labels_per_rubric_version(project, lead, annotator):
    item = ItemFactory(project=project)
    label(item, annotator, "acceptable", "pass")
    criteria = [dict(c) for c in DEFAULT_CRITERIA]
    criteria[1]["name"] = "Follows every instruction"
    services.rubric_set_criteria(project=project, criteria=criteria, actor=lead)
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
