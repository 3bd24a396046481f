"""The production-quality page in a real browser: the three estimates, then a release comparison swapped in by htmx
with the address bar following, and no console or CSP error."""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from tests.browser.conftest import console_errors, screenshot
from tests.browser.test_login_and_project import csp_problems, log_in_by_keyboard
from tests.judges.conftest import judge, standin, standin_server, version  # noqa: F401 (fixtures)
from tests.judges.test_production import production_run  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("transactional_db")


def test_a_lead_compares_two_releases_on_the_production_page(page: Page, live_server, lead, project, production_run):  # noqa: F811
    log_in_by_keyboard(page, live_server.url, lead.username)
    url = reverse("judges:run_production", args=[project.slug, production_run.pk])
    page.goto(live_server.url + url)
    rates = page.locator("#production-rates")
    expect(rates.get_by_role("rowheader", name="PPI++")).to_be_visible()
    expect(rates).to_contain_text("64 human-labeled + 80 judged only")
    page.get_by_label("Field").select_option("release")
    page.get_by_label("First value").fill("v1")
    page.get_by_label("Second value").fill("v2")
    page.get_by_role("button", name="Compare").click()
    compare = page.locator("#release-compare")
    expect(compare).to_contain_text("Difference (v1 − v2)")
    expect(compare.locator("tr", has_text="Difference")).to_contain_text("points (95% CI")
    expect(compare).to_contain_text("33 human-labeled + 42 judged only")
    assert "field=release" in page.url and "a=v1" in page.url
    expect(page.locator("h1")).to_have_count(1)  # the fragment replaced #compare, not the page
    screenshot(page, "production-quality")
    page.goto(live_server.url + reverse("judges:run_detail", args=[project.slug, production_run.pk]))
    expect(page.locator("#bias-effects")).to_contain_text("output length (+1 SD)")
    screenshot(page, "run-bias-probe")
    assert console_errors(page) == [] and csp_problems(page) == []
