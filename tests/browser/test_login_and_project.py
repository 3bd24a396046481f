"""A real browser against the live server: keyboard login, the htmx status card, 404 for outsiders, and user text
that stays text under the enforced Content-Security-Policy."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from annotate.models import Membership, Project
from tests.browser.conftest import console_errors, screenshot
from tests.conftest import PASSWORD
from tests.factories import ItemFactory, ProjectFactory, UserFactory, membership

# The live server runs in another thread and sees only committed data.
pytestmark = pytest.mark.usefixtures("transactional_db")

XSS_IMG = '<img src=x onerror="window.__xss=1">'
XSS_SCRIPT = "<script>window.__xss=2</script>"


def log_in_by_keyboard(page: Page, base_url: str, username: str) -> None:
    page.goto(base_url + reverse("login"))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.locator("#id_username")).to_be_focused()  # autofocus: typing starts at the username
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    expect(page.locator("#id_password")).to_be_focused()
    page.keyboard.type(PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page).to_have_url(base_url + reverse("home"))


def csp_problems(page: Page) -> list[str]:
    reported = page.evaluate("window.__cspViolations || []")
    from_console = [m for m in console_errors(page) if "Content Security Policy" in m or "Content-Security" in m]
    return [str(v) for v in reported] + from_console


def test_a_lead_logs_in_by_keyboard_and_activates_a_project(page: Page, live_server, project, lead, annotator):
    base = live_server.url
    log_in_by_keyboard(page, base, lead.username)

    leading = page.locator("section", has=page.get_by_role("heading", name="Projects you lead"))
    expect(leading.get_by_role("link", name="Support bot answers")).to_be_visible()
    expect(leading.locator("tbody tr")).to_have_count(1)
    expect(page.get_by_role("heading", name="Projects you label")).to_have_count(0)
    screenshot(page, "home-lead")

    leading.get_by_role("link", name="Support bot answers").click()
    expect(page).to_have_url(base + reverse("project_detail", args=[project.slug]))
    expect(page.get_by_role("heading", level=1)).to_have_text("Support bot answers")
    card = page.locator("#status-card")
    expect(card.locator(".badge")).to_have_text("Draft")

    # A full page load would wipe this marker; an htmx swap keeps the same document.
    page.evaluate("window.__sameDocument = 'yes'")
    page.get_by_label("Set status").select_option("active")
    with page.expect_response(lambda r: r.url.endswith(reverse("project_status", args=[project.slug]))) as info:
        page.get_by_role("button", name="Save status").click()
    response = info.value
    assert response.status == 200
    assert response.request.headers.get("hx-request") == "true"

    expect(card.locator(".badge")).to_have_text("Active")
    expect(card.locator(".badge")).to_have_class(re.compile(r"\bstatus-active\b"))
    expect(page.locator("#id_status")).to_have_value("active")
    expect(card.get_by_role("alert")).to_have_count(0)
    expect(page.get_by_role("button", name="Save status")).to_be_enabled()  # hx-disabled-elt released it
    assert page.evaluate("window.__sameDocument") == "yes"
    expect(page).to_have_url(base + reverse("project_detail", args=[project.slug]))
    expect(page.locator("ul.messages")).to_have_count(0)  # the non-htmx fallback would redirect with a message

    project.refresh_from_db()
    assert project.status == Project.Status.ACTIVE
    assert csp_problems(page) == []
    assert console_errors(page) == []
    screenshot(page, "project-lead-activated")


def test_an_outsider_gets_the_404_page_for_a_project_they_do_not_belong_to(
    page: Page, live_server, project, lead, outsider
):
    base = live_server.url
    log_in_by_keyboard(page, base, outsider.username)
    expect(page.get_by_role("link", name="Other team")).to_be_visible()
    expect(page.get_by_role("link", name="Support bot answers")).to_have_count(0)

    response = page.goto(base + reverse("project_detail", args=[project.slug]))
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Not Found")).to_be_visible()
    expect(page.locator("body")).not_to_contain_text("Support bot answers")
    screenshot(page, "project-outsider-404")


def test_html_in_a_project_name_and_instructions_renders_as_text_under_the_csp(page: Page, live_server):
    hostile = ProjectFactory(
        slug="hostile",
        name=f"Evil {XSS_IMG}{XSS_SCRIPT}",
        instructions=f"Read this: {XSS_IMG}\n\n{XSS_SCRIPT}\n\n**Be kind.**",
    )
    ItemFactory(project=hostile, input=f"Item {XSS_IMG}", output=XSS_SCRIPT)
    membership(UserFactory(username="hana-lead"), hostile, Membership.Role.LEAD)

    base = live_server.url
    log_in_by_keyboard(page, base, "hana-lead")
    expect(page.locator("main table").get_by_role("link")).to_have_text(f"Evil {XSS_IMG}{XSS_SCRIPT}")

    page.goto(base + reverse("project_detail", args=[hostile.slug]))
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Evil {XSS_IMG}{XSS_SCRIPT}")
    expect(page).to_have_title(f"Evil {XSS_IMG}{XSS_SCRIPT} · annotate")
    prose = page.locator(".prose")
    expect(prose).to_contain_text(f"Read this: {XSS_IMG}")
    expect(prose).to_contain_text(XSS_SCRIPT)
    expect(prose.locator("strong")).to_have_text("Be kind.")  # Markdown still works; only the HTML is inert
    expect(page.locator("main img")).to_have_count(0)
    expect(page.locator("main script")).to_have_count(0)

    # Exercise htmx too, so anything it injects at runtime (e.g. indicator styles) would show up as a violation.
    page.get_by_label("Set status").select_option("archived")
    page.get_by_role("button", name="Save status").click()
    expect(page.locator("#status-card .badge")).to_have_text("Archived")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Evil {XSS_IMG}{XSS_SCRIPT}")
    page.wait_for_load_state("load")

    assert page.evaluate("window.__xss") is None
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.evaluate("typeof htmx") == "object"  # our own script ran under the policy
    assert page.evaluate("htmx.config.includeIndicatorStyles") is False
    assert page.locator("head style").count() == 0
    assert csp_problems(page) == []
    assert console_errors(page) == []
    screenshot(page, "project-hostile-text")
