"""The daily monitor in a real browser: the lead chooses the calibrated judge version and a threshold on the monitor
page, a week of production records is judged day by day (one day regressed), and the dashboard's chart shows that
day below the threshold, with the banner saying so."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from judges import monitor
from judges.models import Monitor, MonitorDay
from tests.browser.conftest import console_errors, screenshot
from tests.browser.test_login_and_project import csp_problems, log_in_by_keyboard
from tests.judges.conftest import standin, standin_server  # noqa: F401 - fixtures
from tests.judges.monitor_data import calibrated_version, seed_week

pytestmark = pytest.mark.usefixtures("transactional_db")

LAST_DAY = dt.date(2026, 11, 14)
REGRESSION = dt.date(2026, 11, 12)


def test_the_lead_sets_up_the_monitor_and_the_dashboard_shows_the_regressed_day(
    page: Page,
    live_server,
    project,
    lead,
    standin,  # noqa: F811
):
    standin.configure(rule="keyword")
    version = calibrated_version(project)
    days = seed_week(project, LAST_DAY, regression=REGRESSION)
    base = live_server.url
    log_in_by_keyboard(page, base, lead.username)

    page.goto(base + reverse("judges:judge_detail", args=[project.slug, version.judge_id]))
    page.get_by_role("link", name="Daily monitor").click()
    expect(page.get_by_role("heading", name="Daily monitor of acceptable")).to_be_visible()
    page.get_by_label("Judge version").select_option(str(version.pk))
    page.get_by_label("Pass-rate threshold").fill("0.7")
    page.get_by_role("button", name="Save the monitor").click()
    expect(page.get_by_text("Monitor saved")).to_be_visible()
    m = Monitor.objects.get(judge=version.judge)
    assert (m.version_id, m.threshold, m.daily_budget_usd) == (version.pk, 0.7, None)

    for day in days:  # what the beat job's tasks do, one day at a time
        monitor.monitor_day_compute(monitor_id=m.pk, day=day)
    page.reload()
    expect(page.locator("svg.chart-monitor circle.alert")).to_have_count(1)
    screenshot(page, "monitor-settings")
    assert list(MonitorDay.objects.filter(alert=True).values_list("day", flat=True)) == [REGRESSION]

    page.goto(base + reverse("project_detail", args=[project.slug]))
    card = page.locator("#monitor-card")
    expect(card.get_by_role("heading", name="Daily monitor")).to_be_visible()
    expect(card.get_by_role("alert")).to_contain_text("Nov 12")
    expect(card.locator("svg.chart-monitor circle.day")).to_have_count(7)
    expect(card.locator("svg.chart-monitor circle.alert")).to_have_count(1)
    expect(card.locator("svg.chart-monitor line.target")).to_have_count(1)
    desc = card.locator("svg.chart-monitor desc").text_content() or ""
    assert "Nov 12" in desc and "below the threshold" in desc
    card.scroll_into_view_if_needed()
    path = screenshot(page, "monitor-dashboard")
    assert path.exists()
    card.get_by_text("The days as a table").click()
    expect(card.locator("tr.alert")).to_have_count(1)
    page.locator("#monitor-card").screenshot(path=str(path.with_name("monitor-card.png")))
    assert not csp_problems(page)
    assert not console_errors(page)
