"""A lead adjudicates by keyboard: one disputed item at a time, the labeling keys choose the gold value per criterion,
Enter saves and opens the next unresolved item, `s` leaves one for later; every key the overlay documents is pressed.
"""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from annotate import reports
from annotate.models import GoldLabel, Membership
from annotate.services.projects import project_set_status
from tests.browser.conftest import HOSTILE, console_errors, wait_until
from tests.browser.test_label_keys import Keys, _active_index, _checked, _expect_overlay
from tests.browser.test_login_and_project import csp_problems, log_in_by_keyboard
from tests.browser.test_sticky_controls import LONG_OUTPUT, _in_viewport, window_shot
from tests.factories import ItemFactory, ProjectFactory, UserFactory, label, membership

pytestmark = pytest.mark.usefixtures("transactional_db")

KEYS = ("acceptable", "follows_instructions", "factually_correct")


def _disputed_project(kind: str, n_items: int, *, allow_tie: bool = False):
    """Two annotators who disagree on every criterion of every item, with notes; the report computed; a lead."""
    project = ProjectFactory(slug=f"adj-{kind}", name=f"Adjudicate {kind}", kind=kind, overlap=2, allow_tie=allow_tie)
    project_set_status(project=project, status="active")
    lead = UserFactory(username=f"{kind}-lead")
    ann_a, ann_b = UserFactory(username="ann-a"), UserFactory(username="ann-b")
    membership(lead, project, Membership.Role.LEAD)
    items = []
    for i in range(n_items):
        fields = {"output_a": f"Answer A{i}", "output_b": f"Answer B{i}", "output": ""} if kind == "pairwise" else {}
        item = ItemFactory(project=project, input=f"Question {i}: {HOSTILE}", **({"output": LONG_OUTPUT} | fields))
        items.append(item)
        values = ("a", "b") if kind == "pairwise" else ("pass", "fail")
        for who, value in zip((ann_a, ann_b), values, strict=True):
            for key in KEYS:
                label(item, who, key, value, note=f"{who.username}: reasons for {value} on item {i}")
    reports.report_refresh(project=project, n_boot=20)
    return project, lead, items


def _shown(page: Page) -> int:
    return int(page.locator("#current form.item-form").get_attribute("data-item"))


def _ready(page: Page) -> None:
    expect(page.locator("#current fieldset.criterion.active")).to_have_count(1)


def test_a_lead_adjudicates_by_keyboard_and_a_saved_item_leaves_the_list(page: Page, live_server):
    project, lead, items = _disputed_project("binary", 3)
    page.set_viewport_size({"width": 1366, "height": 768})
    log_in_by_keyboard(page, live_server.url, lead.username)
    page.goto(live_server.url + reverse("adjudicate_queue", args=[project.slug]))
    _ready(page)
    keys = Keys(page)
    expect(page.locator(".unresolved-count")).to_have_text("3 unresolved")
    assert _shown(page) == items[0].pk
    # Each annotator's labels and note, beside the item; the user's text escaped.
    expect(page.locator(".annotator-labels")).to_contain_text("ann-a: reasons for pass on item 0")
    expect(page.locator(".annotator-labels")).to_contain_text("ann-b: reasons for fail on item 0")
    expect(page.locator("#current")).to_contain_text("<script>window.__xss=1</script>")
    assert page.evaluate("window.__xss") is None
    window_shot(page, "adjudicate-binary-1366x768")
    assert _in_viewport(page, "#current .controls button.submit")

    keys.press("adjudicate", "?")
    _expect_overlay(page, where="adjudicate", kind="binary", allow_tie=False)
    window_shot(page, "adjudicate-keys-overlay")
    keys.press("adjudicate", "?")
    expect(page.get_by_role("dialog")).to_be_hidden()

    keys.press("adjudicate", "j")
    assert _active_index(page) == 1
    keys.press("adjudicate", "k")
    assert _active_index(page) == 0
    keys.press("adjudicate", "p", "2", "1")
    assert _checked(page) == ["pass", "fail", "pass"]
    keys.press("adjudicate", "k", "k", "f")  # back to the first criterion: change pass to fail
    assert _checked(page) == ["fail", "fail", "pass"]
    keys.press("adjudicate", "n")
    page.keyboard.type("Both readings are defensible; the policy text decides.")
    page.keyboard.press("Escape")
    with page.expect_navigation():
        keys.press("adjudicate", "Enter")
    _ready(page)
    gold = dict(GoldLabel.objects.filter(item=items[0]).values_list("criterion__key", "value"))
    assert gold == {"acceptable": "fail", "follows_instructions": "fail", "factually_correct": "pass"}
    assert GoldLabel.objects.filter(item=items[0]).first().note.startswith("Both readings")
    # The saved item left the list: the next unresolved one is shown and the count went down.
    assert _shown(page) == items[1].pk
    window_shot(page, "adjudicate-binary-after-save")
    assert _in_viewport(page, "#current .controls button.submit")
    expect(page.locator(".unresolved-count")).to_have_text("2 unresolved")

    # `s`: leave this one for later, nothing saved.
    with page.expect_navigation():
        keys.press("adjudicate", "s")
    _ready(page)
    assert _shown(page) == items[2].pk and not GoldLabel.objects.filter(item=items[1]).exists()
    # Enter with a criterion left open saves nothing and says which.
    keys.press("adjudicate", "p")
    keys.press("adjudicate", "Enter")
    expect(page.locator("#current .form-error")).to_contain_text("Choose a value for")
    assert not GoldLabel.objects.filter(item=items[2]).exists()
    keys.press("adjudicate", "p", "p")
    with page.expect_navigation():
        keys.press("adjudicate", "Enter")
    _ready(page)
    wait_until(page, lambda: GoldLabel.objects.filter(item=items[2]).count() == 3)
    # Wrapped round to the one left for later, now the last.
    assert _shown(page) == items[1].pk
    expect(page.locator(".unresolved-count")).to_have_text("1 unresolved")
    window_shot(page, "adjudicate-binary-last")
    keys.press("adjudicate", "p", "p", "p")
    with page.expect_navigation():
        keys.press("adjudicate", "Enter")
    expect(page.locator(".unresolved-count")).to_have_text("0 unresolved")
    expect(page.get_by_text("Nothing to adjudicate")).to_be_visible()
    window_shot(page, "adjudicate-done")
    assert GoldLabel.objects.count() == 9
    keys.assert_covered("adjudicate", kind="binary", allow_tie=False)
    assert console_errors(page) == [] and csp_problems(page) == []


def test_pairwise_adjudication_uses_the_labeling_keys_on_outputs_a_and_b(page: Page, live_server):
    project, lead, items = _disputed_project("pairwise", 2, allow_tie=True)
    log_in_by_keyboard(page, live_server.url, lead.username)
    page.goto(live_server.url + reverse("adjudicate_queue", args=[project.slug]))
    _ready(page)
    keys = Keys(page)
    keys.press("adjudicate", "?")
    _expect_overlay(page, where="adjudicate", kind="pairwise", allow_tie=True)
    keys.press("adjudicate", "?")
    with page.expect_navigation():
        keys.press("adjudicate", "s")
    _ready(page)
    assert _shown(page) == items[1].pk
    keys.press("adjudicate", "j", "k", "ArrowLeft", "ArrowRight", "t")
    assert _checked(page) == ["a", "b", "tie"]
    keys.press("adjudicate", "k", "k", "1", "2", "3")
    assert _checked(page) == ["a", "b", "tie"]
    keys.press("adjudicate", "n")
    page.keyboard.press("Escape")
    window_shot(page, "adjudicate-pairwise")
    with page.expect_navigation():
        keys.press("adjudicate", "Enter")
    gold = dict(GoldLabel.objects.filter(item=items[1]).values_list("criterion__key", "value"))
    assert gold == {"acceptable": "a", "follows_instructions": "b", "factually_correct": "tie"}
    expect(page.locator(".unresolved-count")).to_have_text("1 unresolved")
    assert _shown(page) == items[0].pk
    keys.assert_covered("adjudicate", kind="pairwise", allow_tie=True)
    assert console_errors(page) == [] and csp_problems(page) == []
