"""Every documented key on every labeling page does what the `?` overlay says, and what is stored is what was pressed.

The pages: the queue (binary, pairwise with and without tie) and the change-your-labels page that Undo opens
(binary, pairwise). Each test presses keys through `Keys`, which remembers them, and ends by checking that it pressed
every key the keyboard map (annotate/keymap.py) documents for that page: a key added to the map without a test fails.
The expected effects are written out here, from the keyboard contract, not derived from the map.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from annotate.keymap import keymap
from annotate.models import Assignment, Label
from tests.browser.conftest import active_project, console_errors, screenshot, wait_for_labels, wait_until
from tests.browser.test_login_and_project import csp_problems, log_in_by_keyboard

pytestmark = pytest.mark.usefixtures("transactional_db")


class Keys:
    """Presses keys on the page and remembers which ones, per labeling page."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.pressed: dict[str, set[str]] = defaultdict(set)

    def press(self, where: str, *keys: str) -> None:
        for key in keys:
            self.page.keyboard.press(key)
            self.pressed[where].add(key)

    def assert_covered(self, where: str, *, kind: str, allow_tie: bool) -> None:
        documented = {key for binding in keymap(page=where, kind=kind, allow_tie=allow_tie) for key in binding.keys}
        assert documented - self.pressed[where] == set(), f"documented {where} keys this test never pressed"


def _active_index(page: Page) -> int:
    return page.evaluate(
        "Array.from(document.querySelectorAll('#current fieldset.criterion')).findIndex("
        "fs => fs.classList.contains('active'))"
    )


def _checked(page: Page) -> list[str | None]:
    return page.evaluate(
        "Array.from(document.querySelectorAll('#current fieldset.criterion')).map("
        "fs => { const r = fs.querySelector('input:checked'); return r ? r.value : null; })"
    )


def _current_item(page: Page) -> int:
    return int(page.locator("#current form.item-form").get_attribute("data-item"))


def _stored(item_id: int) -> list[str]:
    return list(Label.objects.filter(item_id=item_id).order_by("criterion__position").values_list("value", flat=True))


def _canonical(choice: str, order: str) -> str:
    """What a pairwise choice is stored as: the side's canonical letter, whichever output was shown on the left."""
    if choice == "tie":
        return "tie"
    return "a" if (choice == "left") == (order == "ab") else "b"


def _order(item_id: int) -> str:
    return Label.objects.filter(item_id=item_id).values_list("shown_order", flat=True).first()


def _expect_overlay(page: Page, *, where: str, kind: str, allow_tie: bool) -> None:
    """The overlay is open and lists exactly the map's bindings, in order: the keys shown and what they do."""
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    rows = dialog.locator("tr")
    bindings = keymap(page=where, kind=kind, allow_tie=allow_tie)
    expect(rows).to_have_count(len(bindings))
    for row, binding in zip(rows.all(), bindings, strict=True):
        expect(row.locator("td").last).to_have_text(binding.label)
        expect(row.locator("kbd")).to_have_count(len(binding.keys))


def _ready(page: Page, heading: str = "") -> None:
    """The page is there and its script has run (it marks the active criterion): keys pressed now are not lost."""
    if heading:
        expect(page.get_by_role("heading", name=heading)).to_be_visible()
    expect(page.locator("#current fieldset.criterion.active")).to_have_count(1)


def _open_queue(page: Page, live_server, project, user) -> None:
    log_in_by_keyboard(page, live_server.url, user.username)
    page.goto(live_server.url + reverse("label_queue", args=[project.slug]))
    _ready(page)


def test_every_key_of_the_binary_queue_does_what_the_overlay_says(page: Page, live_server):
    project, user = active_project("binary", 3)
    _open_queue(page, live_server, project, user)
    keys = Keys(page)

    keys.press("queue", "?")
    _expect_overlay(page, where="queue", kind="binary", allow_tie=False)
    expect(page.get_by_role("dialog")).to_contain_text("Skip this item")
    keys.press("queue", "?")
    expect(page.get_by_role("dialog")).to_be_hidden()

    first = _current_item(page)
    assert _active_index(page) == 0
    keys.press("queue", "j")
    assert _active_index(page) == 1
    keys.press("queue", "k")
    assert _active_index(page) == 0
    keys.press("queue", "p")
    assert (_checked(page), _active_index(page)) == (["pass", None, None], 1)
    # Left/Right are not bound on a binary page, and they never move the browser's radio selection either.
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowRight")
    assert (_checked(page), _active_index(page)) == (["pass", None, None], 1)
    keys.press("queue", "f")
    assert (_checked(page), _active_index(page)) == (["pass", "fail", None], 2)
    keys.press("queue", "1")
    assert _checked(page) == ["pass", "fail", "pass"]
    keys.press("queue", "k", "k", "2")  # a second choice replaces the first
    assert (_checked(page), _active_index(page)) == (["fail", "fail", "pass"], 1)

    keys.press("queue", "n")
    expect(page.locator("#current textarea[name=note]")).to_be_focused()
    page.keyboard.type("ps fu1?")  # letters typed into the note are text, not shortcuts
    page.keyboard.press("Escape")
    expect(page.locator("#current textarea[name=note]")).not_to_be_focused()
    assert _checked(page) == ["fail", "fail", "pass"] and _current_item(page) == first
    expect(page.get_by_role("dialog")).to_be_hidden()

    keys.press("queue", "Enter")
    wait_for_labels(page, project, 3)
    assert _stored(first) == ["fail", "fail", "pass"]
    assert set(Label.objects.filter(item_id=first).values_list("note", flat=True)) == {"ps fu1?"}

    second = _current_item(page)
    assert second != first and _active_index(page) == 0
    keys.press("queue", "s")
    wait_until(page, lambda: Assignment.objects.filter(item_id=second, annotator=user, state="skipped").exists())
    expect(page.locator("#current form.item-form")).not_to_have_attribute("data-item", str(second))
    third = _current_item(page)
    keys.press("queue", "2", "1", "2", "Enter")
    wait_for_labels(page, project, 6)
    assert _stored(third) == ["fail", "pass", "fail"]
    assert not Label.objects.filter(item_id=second).exists()
    expect(page.get_by_role("heading", name="Nothing left for you here")).to_be_visible()

    keys.press("queue", "u")
    expect(page).to_have_url(live_server.url + reverse("label_edit", args=[project.slug, third]))
    keys.assert_covered("queue", kind="binary", allow_tie=False)
    assert console_errors(page) == [] and csp_problems(page) == []


def test_every_key_of_the_pairwise_queue_with_tie_records_the_side_pressed(page: Page, live_server):
    project, user = active_project("pairwise", 3, allow_tie=True)
    _open_queue(page, live_server, project, user)
    keys = Keys(page)
    keys.press("queue", "?")
    _expect_overlay(page, where="queue", kind="pairwise", allow_tie=True)
    screenshot(page, "label-help-pairwise")
    keys.press("queue", "?")
    expect(page.get_by_role("dialog")).to_be_hidden()

    first = _current_item(page)
    # The arrows choose a side; the browser's own arrow navigation between radios would have recorded Tie (←).
    keys.press("queue", "ArrowLeft")
    assert (_checked(page), _active_index(page)) == (["left", None, None], 1)
    keys.press("queue", "ArrowRight")
    assert (_checked(page), _active_index(page)) == (["left", "right", None], 2)
    keys.press("queue", "t")
    assert _checked(page) == ["left", "right", "tie"]
    keys.press("queue", "k", "k", "j")
    assert _active_index(page) == 1
    # With the checked radio focused, an arrow still chooses and never moves the selection by itself.
    keys.press("queue", "ArrowLeft")
    assert (_checked(page), _active_index(page)) == (["left", "left", "tie"], 2)
    keys.press("queue", "Enter")
    wait_for_labels(page, project, 3)
    order = _order(first)
    assert _stored(first) == [_canonical("left", order), _canonical("left", order), "tie"]

    second = _current_item(page)
    keys.press("queue", "1", "2", "3")
    assert _checked(page) == ["left", "right", "tie"]
    keys.press("queue", "n")
    page.keyboard.type("t3 is a tie")
    page.keyboard.press("Escape")
    keys.press("queue", "Enter")
    wait_for_labels(page, project, 6)
    order = _order(second)
    assert _stored(second) == [_canonical("left", order), _canonical("right", order), "tie"]

    third = _current_item(page)
    keys.press("queue", "s")
    wait_until(page, lambda: Assignment.objects.filter(item_id=third, annotator=user, state="skipped").exists())
    expect(page.get_by_role("heading", name="Nothing left for you here")).to_be_visible()
    keys.press("queue", "u")
    expect(page).to_have_url(live_server.url + reverse("label_edit", args=[project.slug, second]))
    keys.assert_covered("queue", kind="pairwise", allow_tie=True)
    assert console_errors(page) == [] and csp_problems(page) == []


def test_the_pairwise_queue_without_tie_has_no_tie_key_and_its_arrows_choose_sides(page: Page, live_server):
    project, user = active_project("pairwise", 2, allow_tie=False)
    _open_queue(page, live_server, project, user)
    keys = Keys(page)
    keys.press("queue", "?")
    _expect_overlay(page, where="queue", kind="pairwise", allow_tie=False)
    expect(page.get_by_role("dialog")).not_to_contain_text("Tie")
    keys.press("queue", "?")

    first = _current_item(page)
    page.keyboard.press("3")
    page.keyboard.press("t")
    assert (_checked(page), _active_index(page)) == ([None, None, None], 0)
    # Without a Tie radio, the browser would have wrapped ← round to Right.
    keys.press("queue", "ArrowLeft", "ArrowRight", "ArrowLeft")
    assert _checked(page) == ["left", "right", "left"]
    keys.press("queue", "k", "j", "k", "2")
    assert _checked(page) == ["left", "right", "left"] and _active_index(page) == 2
    keys.press("queue", "1")
    keys.press("queue", "n")
    page.keyboard.press("Escape")
    keys.press("queue", "Enter")
    wait_for_labels(page, project, 3)
    order = _order(first)
    assert _stored(first) == [_canonical(c, order) for c in ("left", "right", "left")]

    second = _current_item(page)
    keys.press("queue", "s")
    wait_until(page, lambda: Assignment.objects.filter(item_id=second, annotator=user, state="skipped").exists())
    keys.press("queue", "u")
    expect(page.get_by_role("heading", name="Change your labels")).to_be_visible()
    keys.assert_covered("queue", kind="pairwise", allow_tie=False)
    assert console_errors(page) == [] and csp_problems(page) == []


def test_the_binary_edit_page_that_undo_opens_works_by_keyboard_and_leads_back_to_a_working_queue(
    page: Page, live_server
):
    project, user = active_project("binary", 3)
    _open_queue(page, live_server, project, user)
    keys = Keys(page)
    first = _current_item(page)
    keys.press("queue", "1", "1", "1", "Enter")
    wait_for_labels(page, project, 3)
    keys.press("queue", "u")
    _ready(page, "Change your labels")
    assert _checked(page) == ["pass", "pass", "pass"] and _active_index(page) == 0

    keys.press("edit", "?")
    _expect_overlay(page, where="edit", kind="binary", allow_tie=False)
    screenshot(page, "label-edit-help")
    keys.press("edit", "?")
    expect(page.get_by_role("dialog")).to_be_hidden()
    keys.press("edit", "j")
    assert _active_index(page) == 1
    keys.press("edit", "k", "2")
    assert (_checked(page), _active_index(page)) == (["fail", "pass", "pass"], 1)
    keys.press("edit", "f", "1", "k", "k", "p")
    assert (_checked(page), _active_index(page)) == (["pass", "fail", "pass"], 1)
    keys.press("edit", "n")
    expect(page.locator("#current textarea[name=note]")).to_be_focused()
    page.keyboard.type("second look")
    keys.press("edit", "Escape")  # leaves the note; does not cancel the page
    expect(page.get_by_role("heading", name="Change your labels")).to_be_visible()
    keys.press("edit", "Enter")

    expect(page.get_by_text("Your labels were updated.")).to_be_visible()
    expect(page).to_have_url(live_server.url + reverse("label_queue", args=[project.slug]))
    _ready(page)
    assert _stored(first) == ["pass", "fail", "pass"]
    assert set(Label.objects.filter(item_id=first).values_list("revision", "note")) == {(2, "second look")}
    # Back in the queue, the keyboard works at once.
    keys.press("queue", "2")
    assert _checked(page) == ["fail", None, None]

    keys.press("queue", "u")
    _ready(page, "Change your labels")
    keys.press("edit", "2", "Escape")  # cancel: back to the queue, nothing saved
    expect(page).to_have_url(live_server.url + reverse("label_queue", args=[project.slug]))
    assert set(Label.objects.filter(item_id=first).values_list("revision", flat=True)) == {2}

    # Opened from History, Escape goes back to History.
    page.goto(live_server.url + reverse("label_history", args=[project.slug]))
    page.get_by_role("link", name="Change").first.click()
    _ready(page, "Change your labels")
    keys.press("edit", "Escape")
    expect(page).to_have_url(live_server.url + reverse("label_history", args=[project.slug]))
    keys.assert_covered("edit", kind="binary", allow_tie=False)
    assert console_errors(page) == [] and csp_problems(page) == []


def test_the_pairwise_edit_page_records_the_sides_pressed(page: Page, live_server):
    project, user = active_project("pairwise", 2, allow_tie=True)
    _open_queue(page, live_server, project, user)
    keys = Keys(page)
    first = _current_item(page)
    keys.press("queue", "1", "1", "1", "Enter")
    wait_for_labels(page, project, 3)
    keys.press("queue", "u")
    _ready(page, "Change your labels")
    assert _checked(page) == ["left", "left", "left"]

    keys.press("edit", "?")
    _expect_overlay(page, where="edit", kind="pairwise", allow_tie=True)
    keys.press("edit", "?", "j", "k")
    assert _active_index(page) == 0
    keys.press("edit", "ArrowRight", "t", "ArrowLeft")
    assert _checked(page) == ["right", "tie", "left"]
    keys.press("edit", "k", "k", "3", "2", "1")
    assert _checked(page) == ["tie", "right", "left"]
    keys.press("edit", "n")
    page.keyboard.type("a tie, then sides")
    keys.press("edit", "Escape", "Enter")
    expect(page.get_by_text("Your labels were updated.")).to_be_visible()
    order = _order(first)
    assert _stored(first) == ["tie", _canonical("right", order), _canonical("left", order)]
    keys.assert_covered("edit", kind="pairwise", allow_tie=True)
    assert console_errors(page) == [] and csp_problems(page) == []
