"""Issue 16: at 1366 px wide (the commonest laptop screen), every table and select stays inside its card, on the
real demo data (Tülu 1 human evaluation) with a calibrated judge: nothing sticks out past a card's edge. A table
too wide for its card scrolls inside it (a scrolling box in the card), which counts as inside."""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import Browser

from annotate import reports
from annotate.demo import demo_load
from annotate.models import Membership, Project
from judges.models import Judge, JudgeRun
from tests.browser.conftest import screenshot
from tests.browser.test_dashboard import _calibrated_judge
from tests.browser.test_login_and_project import log_in_by_keyboard
from tests.factories import UserFactory, membership

pytestmark = pytest.mark.usefixtures("transactional_db")

# For each table and select in a card: how far its visible right edge (clipped by any scrolling box between it and
# the card) passes the card's inner right edge, in CSS pixels.
_OVERFLOWS = """
() => {
  const found = [];
  for (const el of document.querySelectorAll(".card table, .card select")) {
    const card = el.closest(".card");
    let right = el.getBoundingClientRect().right;
    for (let box = el.parentElement; box && box !== card; box = box.parentElement) {
      const style = getComputedStyle(box);
      if (["auto", "scroll", "hidden", "clip"].includes(style.overflowX)) {
        right = Math.min(right, box.getBoundingClientRect().right);
      }
    }
    const edge = card.getBoundingClientRect().right - parseFloat(getComputedStyle(card).borderRightWidth);
    if (right > edge + 0.5) {
      const head = card.querySelector("h2, h3");
      found.push(`${el.tagName.toLowerCase()}${el.name ? "[name=" + el.name + "]" : ""} in "${
        head ? head.textContent.trim() : card.id}": ${Math.round(right - edge)} px past the card`);
    }
  }
  if (document.documentElement.scrollWidth > window.innerWidth) {
    found.push(`the page scrolls sideways: ${document.documentElement.scrollWidth} px`);
  }
  return found;
}
"""


@pytest.fixture
def demo(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    demo_load()
    lead = UserFactory(username="lena-lead")
    for project in Project.objects.all():
        membership(lead, project, Membership.Role.LEAD)
        reports.report_refresh(project=project, force=True)
    binary = Project.objects.get(slug="tulu-acceptability")
    _calibrated_judge(binary, lead)
    return binary, lead


def test_tables_and_selects_stay_inside_their_cards_at_1366_px(browser: Browser, live_server, demo):
    project, lead = demo
    judge = Judge.objects.get(project=project)
    run = JudgeRun.objects.get(version__judge=judge)
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    base = live_server.url
    try:
        log_in_by_keyboard(page, base, lead.username)
        problems = {}
        for slug in ("tulu-acceptability", "tulu-preference"):
            urls = [
                reverse(name, args=[slug])
                for name in (
                    "project_detail",
                    "agreement_page",
                    "export_page",
                    "rubric_timeline",
                    "import_start",
                    "label_history",
                    "project_settings",
                    "project_criteria",
                    "project_members",
                    "judges:judge_list",
                )
            ]
            if slug == project.slug:
                urls += [
                    reverse("judges:judge_detail", args=[slug, judge.pk]),
                    reverse("judges:version_detail", args=[slug, run.version_id]),
                    reverse("judges:run_detail", args=[slug, run.pk]),
                    reverse("judges:judge_new", args=[slug]),
                ]
            for url in [reverse("home"), reverse("token_list"), *urls]:
                response = page.goto(base + url)
                assert response is not None and response.status == 200, url
                found = page.evaluate(_OVERFLOWS)
                if found:
                    problems[url] = found
                    screenshot(page, "layout-1366" + url.replace("/", "-").rstrip("-"))
        assert problems == {}
    finally:
        context.close()
