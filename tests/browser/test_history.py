"""History in the browser: the values and note you gave, a filter that swaps the results in place, and a row edited in
place (the row becomes its form, Save brings it back with the new values)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from annotate.models import Label
from tests.browser.conftest import HOSTILE, active_project, console_errors, screenshot, wait_until
from tests.browser.test_login_and_project import csp_problems, log_in_by_keyboard
from tests.factories import ItemFactory, label

pytestmark = pytest.mark.usefixtures("transactional_db")

KEYS = ("acceptable", "follows_instructions", "factually_correct")


def test_an_annotator_filters_their_history_and_edits_a_row_in_place(page: Page, live_server):
    project, user = active_project("binary", 0)
    items = []
    for i, (values, note) in enumerate(
        [
            (("pass", "pass", "pass"), ""),
            (("pass", "fail", "pass"), "Ignores the 100-word limit. " + HOSTILE),
            (("fail", "fail", "pass"), "Wrong refund window."),
        ]
    ):
        item = ItemFactory(project=project, input=f"Question {i}: {HOSTILE}", output=f"Answer {i}")
        items.append(item)
        for key, value in zip(KEYS, values, strict=True):
            label(item, user, key, value, note=note, created_at=timezone.now() - dt.timedelta(days=i))
    page.set_viewport_size({"width": 1366, "height": 768})
    log_in_by_keyboard(page, live_server.url, user.username)
    page.goto(live_server.url + reverse("label_history", args=[project.slug]))
    rows = page.locator("table.history tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator(f"#row-{items[1].pk}")).to_contain_text("Ignores the 100-word limit. <script>")
    assert page.evaluate("window.__xss") is None
    screenshot(page, "history")

    # Filter: the results swap in place and the URL says what is shown.
    page.get_by_label("Value").select_option("fail")
    expect(rows).to_have_count(2)
    history_url = live_server.url + reverse("label_history", args=[project.slug])
    expect(page).to_have_url(f"{history_url}?value=fail&since=&until=")
    page.get_by_label("From").fill(str(timezone.localdate() - dt.timedelta(days=1)))
    page.get_by_label("From").dispatch_event("change")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_id(f"row-{items[1].pk}")
    screenshot(page, "history-filtered")

    # Edit in place: the row becomes its form, with the values and note given.
    rows.first.get_by_role("button", name="Edit").click()
    editing = page.locator(f"#row-{items[1].pk}.editing")
    expect(editing).to_be_visible()
    expect(editing.locator('input[name="c-follows_instructions"][value="fail"]')).to_be_checked()
    expect(editing.get_by_label("Note")).to_have_value("Ignores the 100-word limit. " + HOSTILE)
    screenshot(page, "history-editing")
    editing.locator('label.choice.pass:has(input[name="c-follows_instructions"])').click()
    editing.get_by_label("Note").fill("On second reading it keeps to the limit.")
    editing.get_by_role("button", name="Save").click()
    saved = page.locator(f"#row-{items[1].pk}:not(.editing)")
    expect(saved).to_contain_text("On second reading it keeps to the limit.")
    expect(saved.locator(".saved-note")).to_have_text("Saved")
    wait_until(page, lambda: not Label.objects.filter(item=items[1], value="fail").exists())
    assert set(Label.objects.filter(item=items[1]).values_list("revision", flat=True)) == {2}
    screenshot(page, "history-saved")

    # A refused edit keeps the form and says why: a note over the cap.
    saved.get_by_role("button", name="Edit").click()
    editing.get_by_label("Note").evaluate("(el) => { el.removeAttribute('maxlength'); el.value = 'x'.repeat(10001); }")
    editing.get_by_role("button", name="Save").click()
    expect(editing.locator(".form-error")).to_contain_text("The note is too long")
    editing.get_by_role("button", name="Cancel").click()
    expect(page.locator(f"#row-{items[1].pk}:not(.editing)")).to_contain_text("On second reading")
    assert console_errors(page) == [] and csp_problems(page) == []
