"""A real browser walks the judge loop on the real Tülu 1 sample: the lead writes a judge, sets its target, runs it on
dev against the stand-in model through a real Celery worker, reads the report, opens a disagreement, makes a child
version with a changed template, runs it, and lands on the comparison. Screenshots: judge-report, judge-compare."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from annotate.demo import demo_load
from annotate.models import Membership, Project
from judges.models import Judge, JudgeRun, JudgeVersion
from tests.browser.conftest import console_errors, screenshot
from tests.browser.test_login_and_project import csp_problems, log_in_by_keyboard
from tests.factories import membership
from tests.judges.conftest import MODEL, standin, standin_server  # noqa: F401 - fixtures, used by name below

# The stand-in model server, and settings pointing the "standin" endpoint at it.
pytestmark = pytest.mark.usefixtures("transactional_db", "standin")

CHILD_TEMPLATE = "{{ examples }}The user asked:\n{{ input }}\n\nThe assistant answered:\n{{ output }}"


def test_a_lead_walks_the_judge_loop_from_first_version_to_comparison(
    page: Page, live_server, lead, celery_worker, settings, tmp_path
):
    settings.VAR_DIR = tmp_path
    demo_load()
    project = Project.objects.get(slug="tulu-acceptability")
    membership(lead, project, Membership.Role.LEAD)
    base = live_server.url
    log_in_by_keyboard(page, base, lead.username)

    # A judge for "Acceptable", first version, on the stand-in model.
    page.goto(base + reverse("judges:judge_list", args=[project.slug]))
    page.get_by_role("row", name=re.compile("Acceptable")).get_by_role("link", name="Write a judge").click()
    page.get_by_label("Endpoint").select_option("standin")
    page.get_by_label("Model", exact=True).fill(MODEL)
    page.get_by_role("button", name="Save version").click()
    expect(page.get_by_role("heading", name=re.compile("version 1"))).to_be_visible()
    judge = Judge.objects.get(project=project, criterion_key="acceptable")

    # The bar it must clear.
    page.goto(base + reverse("judges:judge_detail", args=[project.slug, judge.pk]))
    page.get_by_label("Kind of target").select_option("tpr_tnr")
    page.get_by_label("TPR at least").fill("0.8")
    page.get_by_label("TNR at least").fill("0.6")
    page.get_by_role("button", name="Save target").click()
    expect(page.locator("#target")).to_contain_text("Target saved")
    judge.refresh_from_db()
    assert (judge.target, judge.target_tpr, judge.target_tnr) == ("tpr_tnr", 0.8, 0.6)

    # Run v1 on dev; the page polls, then reloads with the report when the worker is done.
    page.get_by_role("link", name="v1", exact=True).click()
    page.get_by_role("button", name="Start run").click()
    expect(page.get_by_role("heading", name="Judge vs humans")).to_be_visible(timeout=60_000)
    run = JudgeRun.objects.get(version__judge=judge)
    assert run.status == "done" and run.report["n"] > 0
    verdict = page.get_by_label("Calibration verdict")
    expect(verdict).to_contain_text(re.compile(r"Calibrated on dev split|Not yet: T[PN]R"))
    expect(verdict).to_contain_text("95% lower bound")
    expect(page.locator("svg.chart-heatmap")).to_be_visible()
    expect(page.locator("svg.chart-bars")).to_be_visible()
    expect(page.locator("abbr", has_text="TNR")).to_have_attribute("title", re.compile("humans failed"))
    screenshot(page, "judge-report")

    # Open the disagreements where the judge was too lenient: the item, each human label, the judge's reasoning.
    page.get_by_role("link", name=re.compile("Judge too lenient")).click()
    expect(page).to_have_url(re.compile(r"\?kind=lenient"))
    card = page.locator("article.item-card").first
    expect(card).to_contain_text("Judge too lenient")
    expect(card.locator(".labels li").first).to_contain_text("fail")
    expect(card).to_contain_text("Stand-in rule")
    screenshot(page, "judge-disagreement")

    # A child version with a changed template, checked as it is typed, saved and run on dev in one go.
    page.get_by_role("link", name="New version from this one").click()
    expect(page.get_by_label("Model", exact=True)).to_have_value(MODEL)
    page.get_by_label("User template").fill(CHILD_TEMPLATE + " {{ verdict_hint }}")
    expect(page.locator("#check")).to_contain_text("Unknown placeholder {{ verdict_hint }}")
    page.get_by_label("User template").fill(CHILD_TEMPLATE)
    expect(page.locator("#check")).to_contain_text("Every placeholder is known")
    screenshot(page, "judge-editor")
    page.get_by_label("Change note").fill("Plain labels instead of XML tags")
    page.get_by_role("button", name="Save and run on dev").click()
    expect(page).to_have_url(re.compile(r"/judges/compare/\?va=\d+&vb=\d+$"))
    expect(page.get_by_role("heading", name=re.compile("What changed"))).to_be_visible(timeout=60_000)
    child = JudgeVersion.objects.get(judge=judge, number=2)
    assert child.parent.number == 1 and child.user_template == CHILD_TEMPLATE
    expect(page.locator("#comparison")).to_contain_text("fixed")
    expect(page.locator("table.deltas tbody tr")).to_have_count(5)
    expect(page.locator("svg.chart-line")).to_be_visible()
    screenshot(page, "judge-compare")

    # Flipped items, side by side: both versions' verdicts on one card.
    page.get_by_role("link", name=re.compile("Broken")).click()
    flipped = page.locator("#flips article.item-card")
    if flipped.count():
        expect(flipped.first).to_contain_text("v1 · run")
        expect(flipped.first).to_contain_text("v2 · run")

    # The judge's page: alignment across versions.
    page.goto(base + reverse("judges:judge_detail", args=[project.slug, judge.pk]))
    expect(page.get_by_role("heading", name="Alignment across versions")).to_be_visible()
    expect(page.locator("svg.chart-line circle")).to_have_count(6)  # TPR, TNR, κ for v1 and v2
    screenshot(page, "judge-detail")
    page.get_by_role("link", name="Judges").click()
    expect(page.get_by_role("heading", name="Latest alignment per criterion")).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("Acceptable"))).to_contain_text("not yet")
    screenshot(page, "judge-list")
    assert csp_problems(page) == [] and console_errors(page) == []


def test_a_pairwise_report_shows_position_consistency_and_the_order_filter(
    page: Page, live_server, lead, celery_worker, settings, tmp_path
):
    from judges import prompts
    from judges.services import judge_versions

    settings.VAR_DIR = tmp_path
    demo_load()
    project = Project.objects.get(slug="tulu-preference")
    membership(lead, project, Membership.Role.LEAD)
    judge = judge_versions.judge_create(project=project, criterion_key="overall", actor=lead)
    version = judge_versions.judge_version_create(
        judge=judge,
        system_template=prompts.DEFAULT_SYSTEM["pairwise"],
        user_template=prompts.DEFAULT_USER["pairwise"],
        endpoint="standin",
        model=MODEL,
        actor=lead,
    )
    judge_versions.judge_target_set(judge=judge, target="kappa", numbers={"target_kappa": 0.4})
    log_in_by_keyboard(page, live_server.url, lead.username)
    page.goto(live_server.url + reverse("judges:version_detail", args=[project.slug, version.pk]))
    page.get_by_role("button", name="Start run").click()
    expect(page.get_by_role("heading", name="Judge vs humans")).to_be_visible(timeout=60_000)
    expect(page.locator("table.figure-table")).to_contain_text("Position consistency")
    expect(page.get_by_label("Calibration verdict")).to_contain_text("κ")
    expect(page.locator("svg.chart-heatmap")).to_contain_text("tie")
    screenshot(page, "judge-report-pairwise")
    page.get_by_role("link", name=re.compile("Inconsistent order")).click()
    expect(page).to_have_url(re.compile(r"\?kind=order"))
    assert csp_problems(page) == [] and console_errors(page) == []
