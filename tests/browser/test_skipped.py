"""Skipped items come back, in a real browser: skip by key, the empty queue counts the skip, the Skipped list reopens
it and the labeling page shows it first."""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from annotate.models import Assignment, Label
from tests.browser.conftest import active_project, console_errors, screenshot, wait_for_labels, wait_until
from tests.browser.test_login_and_project import csp_problems, log_in_by_keyboard

pytestmark = pytest.mark.usefixtures("transactional_db")


def test_an_annotator_skips_sees_it_counted_reopens_it_from_the_skipped_list_and_labels_it(page: Page, live_server):
    project, user = active_project("binary", 2)
    log_in_by_keyboard(page, live_server.url, user.username)
    page.goto(live_server.url + reverse("label_queue", args=[project.slug]))
    expect(page.get_by_role("button", name="Skip")).to_be_visible()
    skipped_text = page.locator("#current").inner_text()
    page.keyboard.press("s")

    def skip_stored() -> bool:
        return Assignment.objects.filter(annotator=user, state="skipped").exists()

    wait_until(page, skip_stored)
    skipped_id = Assignment.objects.get(annotator=user, state="skipped").item_id
    for key in ("1", "1", "1", "Enter"):
        page.keyboard.press(key)
    wait_for_labels(page, project, 3)
    empty = page.locator("#current .skips-back")
    expect(empty).to_contain_text("No items left for you; 1 skipped item comes back after")
    screenshot(page, "skips-empty-queue")
    empty.get_by_role("link", name="Skipped").click()
    expect(page.get_by_role("heading", name="Your skipped items")).to_be_visible()
    screenshot(page, "skips-list")
    page.get_by_role("button", name="Reopen").click()
    expect(page.get_by_role("button", name="Submit")).to_be_visible()
    assert page.locator("#current").inner_text().splitlines()[:3] == skipped_text.splitlines()[:3]
    for key in ("2", "2", "2", "Enter"):
        page.keyboard.press(key)
    wait_for_labels(page, project, 6)
    expect(page.get_by_role("heading", name="Nothing left for you here")).to_be_visible()
    expect(page.locator("#current .skips-back")).to_have_count(0)
    # The reopened item is the one skipped, and it got the labels typed after Reopen.
    assert set(Label.objects.filter(item_id=skipped_id).values_list("value", flat=True)) == {"fail"}
    assert not Assignment.objects.filter(annotator=user).exists()
    assert not console_errors(page) and not csp_problems(page)
