"""Annotators label whole queues by keyboard in a real browser: binary and pairwise, prefetch, failure recovery."""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import Page, Route, expect

from annotate.models import Item, Label
from annotate.splits import shown_order
from tests.browser.conftest import active_project, screenshot, wait_for_labels
from tests.browser.test_login_and_project import csp_problems, log_in_by_keyboard
from tests.factories import ItemFactory

pytestmark = pytest.mark.usefixtures("transactional_db")


def test_an_annotator_labels_a_binary_queue_by_keyboard_only(page: Page, live_server):
    project, user = active_project("binary", 3)
    log_in_by_keyboard(page, live_server.url, user.username)
    page.goto(live_server.url + reverse("label_queue", args=[project.slug]))
    expect(page.get_by_role("button", name="Submit")).to_be_visible()
    expect(page.get_by_role("button", name="Skip")).to_be_visible()
    expect(page.get_by_role("button", name="Undo")).to_be_visible()
    screenshot(page, "label-binary")
    # Item text is shown, never run: script, handlers and javascript: links stay inert; code blocks render.
    assert page.evaluate("window.__xss") is None
    expect(page.locator("#current pre code").first).to_contain_text("print('code block')")
    plan = [("1", "1", "2"), ("p", "f", "p"), ("2", "2", "2")]
    for n, keys in enumerate(plan, start=1):
        for key in keys:
            page.keyboard.press(key)
        page.keyboard.press("Enter")
        wait_for_labels(page, project, 3 * n)
    expect(page.get_by_role("heading", name="Nothing left for you here")).to_be_visible()
    screenshot(page, "label-binary-done")
    stored = list(
        Label.objects.filter(item__project=project)
        .order_by("created_at", "item_id", "criterion__position")
        .values_list("value", flat=True)
    )
    assert stored == ["pass", "pass", "fail", "pass", "fail", "pass", "fail", "fail", "fail"]
    assert all(t is not None and t >= 0 for t in Label.objects.values_list("time_spent_ms", flat=True))
    assert not csp_problems(page)


def _show_both_sides_first(project, user) -> None:
    """The side an item shows on the left is a hash of (annotator, item) ids, so six items all show A there once in
    32 runs: replace items until both sides come up (nothing labeled yet)."""
    items = list(Item.objects.filter(project=project).order_by("pk"))
    while len({shown_order(user.pk, item.pk) for item in items}) < 2:
        last = items.pop()
        fields = {"input": last.input, "output": "", "output_a": last.output_a, "output_b": last.output_b}
        last.delete()
        items.append(ItemFactory(project=project, **fields))


def test_an_annotator_labels_a_pairwise_queue_by_keyboard_and_the_sides_are_recorded(page: Page, live_server):
    project, user = active_project("pairwise", 6)
    _show_both_sides_first(project, user)
    log_in_by_keyboard(page, live_server.url, user.username)
    page.goto(live_server.url + reverse("label_queue", args=[project.slug]))
    expect(page.get_by_role("radio", name="Left is better").first).to_be_visible()
    screenshot(page, "label-pairwise")
    shown_left = []
    for n in range(1, 7):
        left_text = page.locator("#current .outputs section").first.inner_text()
        shown_left.append("A" if "Answer A" in left_text else "B")
        for _ in range(3):
            page.keyboard.press("1")  # Left is better, on every criterion
        page.keyboard.press("Enter")
        wait_for_labels(page, project, 3 * n)
    labels = Label.objects.filter(item__project=project).order_by("created_at", "item_id")
    per_item = {}
    for label in labels:
        per_item.setdefault(label.item_id, set()).add((label.shown_order, label.value))
    for pairs in per_item.values():
        assert len(pairs) == 1
        ((order, value),) = pairs
        # "Left is better" is stored canonically: A when A was on the left, B when B was.
        assert value == ("a" if order == "ab" else "b")
    orders = {order for pairs in per_item.values() for order, _ in pairs}
    assert orders == {"ab", "ba"}, "six items should show both sides on the left at least once"
    assert sorted(shown_left) == sorted("A" if o == "ab" else "B" for ((o, _),) in per_item.values())


def test_a_failed_submit_keeps_the_form_filled_and_a_retry_saves_once(page: Page, live_server):
    project, user = active_project("binary", 2)
    log_in_by_keyboard(page, live_server.url, user.username)
    page.goto(live_server.url + reverse("label_queue", args=[project.slug]))
    first_item = page.locator("#current form").get_attribute("data-item")
    failures = {"left": 1}

    def drop_once(route: Route) -> None:
        if route.request.method == "POST" and failures["left"]:
            failures["left"] -= 1
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/label/*/", drop_once)
    for key in ("1", "1", "2"):
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    message = page.locator("#current form .form-error")
    expect(message).to_have_text("Not saved: the connection dropped. Your choices are kept; press Enter to try again.")
    expect(message).to_be_in_viewport()
    expect(page.locator("#current form")).to_have_attribute("data-item", first_item)
    assert page.locator("#current input:checked").count() == 3
    assert not Label.objects.exists()
    page.keyboard.press("Enter")
    wait_for_labels(page, project, 3)
    expect(page.locator("#current form")).not_to_have_attribute("data-item", first_item)
    expect(page.locator("#current form .form-error")).to_be_hidden()
    assert Label.objects.filter(item_id=int(first_item)).count() == 3
    assert Item.objects.get(pk=int(first_item)).n_submitted == 1


def test_submit_with_a_missing_criterion_says_which_and_sends_nothing(page: Page, live_server):
    project, user = active_project("binary", 1)
    log_in_by_keyboard(page, live_server.url, user.username)
    page.goto(live_server.url + reverse("label_queue", args=[project.slug]))
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    expect(page.locator("#current .form-error")).to_contain_text("Follows the instruction")
    assert not Label.objects.exists()


def test_undo_reopens_the_last_item_and_the_help_overlay_lists_the_keys(page: Page, live_server):
    project, user = active_project("binary", 2)
    log_in_by_keyboard(page, live_server.url, user.username)
    page.goto(live_server.url + reverse("label_queue", args=[project.slug]))
    page.keyboard.press("?")
    expect(page.get_by_role("dialog")).to_contain_text("Skip this item")
    screenshot(page, "label-help")
    page.keyboard.press("Escape")
    for key in ("1", "1", "1"):
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    wait_for_labels(page, project, 3)
    page.keyboard.press("u")
    expect(page.get_by_role("heading", name="Change your labels")).to_be_visible()
    page.get_by_text("Fail").first.click()
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_text("Your labels were updated.")).to_be_visible()
    changed = Label.objects.get(criterion__key="acceptable")
    assert (changed.value, changed.revision) == ("fail", 2)
