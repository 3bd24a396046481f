"""The lead's dashboard and the criteria drift page in a real browser, on the real demo data (a slice of the Tülu 1
human evaluation) with labels under two rubric versions, a judge calibrated on the first and one not run yet."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from annotate import drift, reports
from annotate.demo import demo_load
from annotate.models import Item, Label, Membership, Project
from annotate.services.leases import queue_counts_refresh
from annotate.services.rubrics import rubric_set_criteria
from judges import prompts
from judges.models import JudgeRun, Verdict
from judges.services import judge_versions, run_reports
from tests.browser.conftest import console_errors, screenshot
from tests.browser.test_login_and_project import csp_problems, log_in_by_keyboard
from tests.factories import UserFactory, membership

pytestmark = pytest.mark.usefixtures("transactional_db")

V2_CRITERIA = [
    {
        "key": "acceptable",
        "name": "Acceptable",
        "description": "It does what the request asks and a user would be satisfied with it as it is.",
    },
    {
        "key": "follows_instructions",
        "name": "Follows the instruction",
        "description": "It does exactly what was asked, in the requested format and length; nothing is ignored.",
    },
    {
        "key": "factually_correct",
        "name": "Factually correct",
        "description": "Every checkable claim is right; a response that refuses to answer a factual question fails.",
    },
    {"key": "concise", "name": "Concise", "description": "No filler, no repetition, nothing the user did not ask for."},
]


def _calibrated_judge(project: Project, lead) -> None:
    """A judge on "acceptable" with one finished dev run under rubric v1: its verdicts follow the humans' labels
    except on every fifth item, and its report comes from the real report code."""
    judge = judge_versions.judge_create(project=project, criterion_key="acceptable", actor=lead)
    # A bar the run below clears (its accuracy is about 0.8), so the dashboard calls the judge calibrated.
    judge_versions.judge_target_set(judge=judge, target="accuracy", numbers={"target_accuracy": 0.5})
    version = judge_versions.judge_version_create(
        judge=judge,
        system_template=prompts.DEFAULT_SYSTEM[project.kind],
        user_template=prompts.DEFAULT_USER[project.kind],
        endpoint="standin",
        model="standin-judge-2024-01-01",
    )
    run = JudgeRun.objects.create(
        project=project, version=version, rubric_version=project.current_rubric, status=JudgeRun.Status.RUNNING
    )
    first = dict(
        Label.objects.filter(rubric_version=project.current_rubric, criterion__key="acceptable")
        .order_by("item_id", "id")
        .values_list("item_id", "value")
    )
    flip = {"pass": "fail", "fail": "pass"}
    Verdict.objects.bulk_create(
        Verdict(run=run, item_id=item_id, order="one", status="ok", value=flip[v] if n % 5 == 0 else v, answer=v)
        for n, (item_id, v) in enumerate(sorted(first.items()))
    )
    run.report = run_reports.run_report(run=run)
    run.status = JudgeRun.Status.DONE
    run.finished_at = timezone.now()
    run.save()


def _labels_under_v2(project: Project) -> None:
    """Labels of the first 60 items on the criteria v2 redefined or added (the others' labels were carried into v2),
    given over the last ten days by the same annotators and following from their "acceptable" labels."""
    v2 = project.current_rubric
    criteria = {c.key: c for c in v2.criteria.all() if c.defined_in_id == v2.pk}
    rows = list(
        Label.objects.filter(criterion__key="acceptable", item__project=project)
        .exclude(rubric_version=v2)
        .order_by("item_id", "annotator_id")
        .values_list("item_id", "annotator_id", "value")
    )
    item_ids = sorted({r[0] for r in rows})[:60]
    now = timezone.now()
    built = []
    for n, (item_id, annotator_id, value) in enumerate(r for r in rows if r[0] in set(item_ids)):
        when = now - dt.timedelta(days=n % 10, hours=n % 7)
        derived = {
            "acceptable": value,
            "follows_instructions": value if n % 6 else ("pass" if value == "fail" else "fail"),
            "factually_correct": value if n % 4 else "fail",
            "concise": "fail" if (item_id + annotator_id) % 3 == 0 else "pass",
        }
        for key, v in derived.items():
            if key not in criteria:
                continue
            built.append(
                Label(
                    item_id=item_id,
                    criterion=criteria[key],
                    rubric_version=v2,
                    annotator_id=annotator_id,
                    value=v,
                    created_at=when,
                )
            )
    Label.objects.bulk_create(built)
    queue_counts_refresh(project=project)


@pytest.fixture
def demo_two_versions(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    demo_load()
    project = Project.objects.get(slug="tulu-acceptability")
    lead = UserFactory(username="lena-lead")
    membership(lead, project, Membership.Role.LEAD)
    reports.report_refresh(project=project, force=True)
    _calibrated_judge(project, lead)
    rubric_set_criteria(
        project=project,
        criteria=V2_CRITERIA,
        actor=lead,
        note="Factual correctness now covers refusals; a new Concise criterion.",
    )
    project.refresh_from_db()
    _labels_under_v2(project)
    judge_versions.judge_create(project=project, criterion_key="concise", actor=lead)
    reports.report_refresh(project=project, force=True)
    project.refresh_from_db()
    return project, lead


def test_the_lead_reads_the_dashboard_and_queues_drifted_items_for_relabeling(
    page: Page, live_server, demo_two_versions, celery_worker
):
    project, lead = demo_two_versions
    base = live_server.url
    log_in_by_keyboard(page, base, lead.username)
    page.goto(base + reverse("project_detail", args=[project.slug]))

    expect(page.get_by_role("heading", name="Human–human agreement")).to_be_visible()
    agreement = page.locator("#agreement-card")
    expect(agreement.locator("svg.chart-bars")).to_be_visible()
    expect(agreement.locator("tbody tr")).to_have_count(4)
    expect(page.get_by_role("heading", name="Adjudication queue")).to_be_visible()
    expect(page.get_by_role("heading", name="Annotators' throughput")).to_be_visible()
    expect(page.locator("svg.chart-columns")).to_have_count(2)
    # The "acceptable" judge was calibrated under v1, but v2 did not change its criterion: it is not stale.
    expect(page.locator(".judge-list .badge.stale")).to_have_count(0)
    expect(page.locator(".judge-list .badge.fresh")).to_have_text(["Calibrated (rubric v1)"])
    screenshot(page, "dashboard-lead")

    page.get_by_role("link", name="Rubric & drift").click()
    expect(page).to_have_url(base + reverse("rubric_timeline", args=[project.slug]))
    expect(page.get_by_role("heading", name="Rubric v2 current")).to_be_visible()
    expect(page.locator(".timeline-entry")).to_have_count(2)
    expect(page.locator(".change-added")).to_contain_text("Concise")
    expect(page.locator(".change-definition-changed")).to_contain_text("Factually correct")
    outdated = Item.objects.filter(project=project).count() - 60
    assert drift.items_outdated(project=project).count() == outdated
    card = page.locator("#outdated")
    expect(card.locator(".big-number").first).to_have_text(f"{outdated:,}")
    screenshot(page, "drift")

    page.evaluate("window.__sameDocument = 'yes'")
    card.get_by_role("button", name="Queue them for re-labeling").click()
    notice = page.locator("#outdated .notice")
    # The answer to the POST says "Queueing…" unless the worker was quicker still (the waiting state is covered in
    # tests/annotate/test_drift.py); the card polls until it is done.
    expect(notice).to_contain_text(re.compile(r"Queueing the outdated items for re-labeling|items queued for re-lab"))
    expect(notice).to_contain_text(f"{outdated:,} items queued for re-labeling under rubric v2", timeout=60_000)
    assert page.evaluate("window.__sameDocument") == "yes"  # an htmx swap, not a reload
    assert Item.objects.filter(project=project, priority=Item.PRIORITY_RELABEL).count() == outdated
    screenshot(page, "drift-after-relabel")

    assert csp_problems(page) == []
    assert console_errors(page) == []


def test_an_annotator_sees_their_own_progress_and_no_lead_page(page: Page, live_server, demo_two_versions):
    project, _ = demo_two_versions
    annotator = UserFactory(username="ada-annotator")
    membership(annotator, project, Membership.Role.ANNOTATOR)
    base = live_server.url
    log_in_by_keyboard(page, base, annotator.username)
    page.goto(base + reverse("project_detail", args=[project.slug]))
    expect(page.get_by_role("heading", name="Your progress")).to_be_visible()
    expect(page.get_by_role("link", name="Start labeling")).to_be_visible()
    for lead_heading in ("Human–human agreement", "Adjudication queue", "Annotators' throughput", "Judges"):
        expect(page.get_by_role("heading", name=lead_heading)).to_have_count(0)
    expect(page.locator("svg.chart")).to_have_count(0)
    screenshot(page, "project-annotator")
    response = page.goto(base + reverse("rubric_timeline", args=[project.slug]))
    assert response is not None and response.status == 404
