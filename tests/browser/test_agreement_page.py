"""The agreement page in a real browser on the demo's real labels (Tülu 1: items with two and with three labels)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from annotate import reports
from annotate.demo import demo_load
from annotate.models import Membership, Project
from tests.browser.conftest import console_errors, screenshot
from tests.browser.test_login_and_project import csp_problems, log_in_by_keyboard
from tests.factories import UserFactory, membership

pytestmark = pytest.mark.usefixtures("transactional_db")


def test_alpha_leads_the_agreement_page_where_items_have_two_or_three_labels(
    page: Page, live_server, settings, tmp_path
):
    settings.VAR_DIR = tmp_path
    demo_load()
    project = Project.objects.select_related("current_rubric").get(slug="tulu-preference")
    lead = UserFactory(username="agreement-lead")
    membership(lead, project, Membership.Role.LEAD)
    reports.report_refresh(project=project, force=True)
    log_in_by_keyboard(page, live_server.url, lead.username)
    page.goto(live_server.url + reverse("agreement_page", args=[project.slug]))

    section = page.locator("section", has=page.get_by_role("heading", name="overall"))
    expect(section.get_by_text("labels per item: 50 items with 2, 9 items with 3")).to_be_visible()
    expect(section.get_by_text("Items have different numbers of labels, so Krippendorff's α leads")).to_be_visible()
    rows = section.locator("table.grid").first.locator("tbody tr")
    expect(rows.first.locator("th")).to_have_text("Krippendorff's α headline")
    fleiss = rows.filter(has=page.get_by_role("rowheader", name="Fleiss' κ"))
    expect(fleiss.locator("td.num").last).to_have_text("59")  # every doubly labeled item, not just the 50
    expect(fleiss).to_contain_text("Gwet, Handbook of Inter-Rater Reliability")
    screenshot(page, "agreement-headline-alpha")
    assert console_errors(page) == [] and csp_problems(page) == []
