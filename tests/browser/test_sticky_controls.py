"""The decision controls stay in view on long items: a sticky side panel on wide screens, a sticky footer on narrow
ones. The annotator labels an item many screens long by keyboard without ever scrolling to the controls, and the
item's own text (user text, escaped) still renders."""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import Browser, Page, expect

from annotate.models import Label
from tests.browser.conftest import HOSTILE, active_project, console_errors, wait_for_labels
from tests.browser.test_login_and_project import csp_problems, log_in_by_keyboard

pytestmark = pytest.mark.usefixtures("transactional_db")

# A long answer, as LLM outputs are: about forty screens of text at 1366×768, with hostile markup among it.
LONG_PARAGRAPH = (
    "The refund policy allows returns within thirty days of delivery, provided the item is unused and in its "
    "original packaging; shipping costs are refunded only when the item arrived damaged or was not what was ordered."
)
LONG_OUTPUT = "\n\n".join(f"{i}. {LONG_PARAGRAPH}" for i in range(400)) + "\n\n" + HOSTILE + "\n\nTHE-END-MARKER"


def _in_viewport(page: Page, selector: str) -> bool:
    """The element's whole box is inside the window (not merely in the layout)."""
    return page.evaluate(
        """(sel) => { const el = document.querySelector(sel); if (!el) return false;
           const r = el.getBoundingClientRect();
           return r.width > 0 && r.height > 0 && r.top >= 0 && r.left >= 0
             && r.bottom <= window.innerHeight && r.right <= window.innerWidth; }""",
        selector,
    )


def _wait_until(page, condition: str) -> None:
    """Poll a condition from here: wait_for_function evaluates its string inside the page, which the app's CSP (no
    unsafe-eval) refuses."""
    for _ in range(50):
        if page.evaluate(condition):
            return
        page.wait_for_timeout(100)
    assert page.evaluate(condition), condition


def _label_long_item(browser: Browser, live_server, *, width: int, height: int, name: str) -> None:
    project, user = active_project("binary", 0)
    from tests.factories import ItemFactory

    item = ItemFactory(project=project, input="Summarise our refund policy. " + HOSTILE, output=LONG_OUTPUT)
    following = ItemFactory(project=project, input="And the exchange policy? " + HOSTILE, output=LONG_OUTPUT)
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(30_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.console_errors = errors  # type: ignore[attr-defined]
    try:
        log_in_by_keyboard(page, live_server.url, user.username)
        page.goto(live_server.url + reverse("label_queue", args=[project.slug]))
        expect(page.locator("#current fieldset.criterion.active")).to_have_count(1)
        shown = int(page.locator("#current form.item-form").get_attribute("data-item"))
        item, following = (item, following) if shown == item.pk else (following, item)

        doc_height = page.evaluate("document.documentElement.scrollHeight")
        assert doc_height > 10 * height, "the item is meant to be many screens long"
        # The user's text renders, escaped: its markup is shown as text and nothing of it ran.
        expect(page.locator("#current").get_by_text("THE-END-MARKER")).to_have_count(1)
        expect(page.locator("#current")).to_contain_text("window.__xss=2")
        assert page.evaluate("window.__xss") is None

        for selector in (
            "#current .controls fieldset.criterion.active",
            "#current .controls button.submit",
            "#current .controls .choice.pass",
        ):
            assert _in_viewport(page, selector), f"{selector} is not in view at load ({width}×{height})"
        assert page.evaluate("window.scrollY") == 0
        window_shot(page, f"sticky-{name}-top")

        # Reading halfway down the item: the controls are still in view.
        page.mouse.wheel(0, doc_height // 2)
        _wait_until(page, "window.scrollY > 0")
        for selector in ("#current .controls fieldset.criterion.active", "#current .controls button.submit"):
            assert _in_viewport(page, selector), f"{selector} left the window while reading ({width}×{height})"
        window_shot(page, f"sticky-{name}-reading")

        # Labeled by keyboard from there, without scrolling to the controls.
        scrolled = page.evaluate("window.scrollY")
        page.keyboard.press("p")
        page.keyboard.press("f")
        page.keyboard.press("p")
        assert _in_viewport(page, "#current .controls button.submit")
        assert abs(page.evaluate("window.scrollY") - scrolled) < height / 2, "choosing values scrolled the page"
        page.keyboard.press("n")
        page.keyboard.type("Point 12 contradicts point 3.")
        page.keyboard.press("Escape")
        page.keyboard.press("Enter")
        wait_for_labels(page, project, 3)
        # The next item starts at its top, its controls in view, though the submit was made halfway down.
        expect(page.locator("#current form.item-form")).to_have_attribute("data-item", str(following.pk))
        _wait_until(page, "window.scrollY === 0")
        assert _in_viewport(page, "#current .controls button.submit")
        window_shot(page, f"sticky-{name}-next")
        stored = Label.objects.filter(item=item).order_by("criterion__position")
        assert list(stored.values_list("value", flat=True)) == ["pass", "fail", "pass"]
        assert stored[0].note == "Point 12 contradicts point 3."
        assert errors == [] and csp_problems(page) == []
    finally:
        context.close()


def window_shot(page: Page, name: str) -> None:
    """Save what the window shows (not the whole page): tests/browser/screenshots/<name>.png."""
    page.screenshot(path=str(screenshot_path(name)))


def screenshot_path(name: str):
    from tests.browser.conftest import SCREENSHOTS

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"


def test_an_annotator_labels_a_long_item_at_1366x768_without_scrolling_to_the_controls(browser: Browser, live_server):
    _label_long_item(browser, live_server, width=1366, height=768, name="1366x768")


def test_on_a_phone_the_controls_are_a_sticky_footer_over_a_long_item(browser: Browser, live_server):
    _label_long_item(browser, live_server, width=390, height=844, name="390x844")


def test_the_change_your_labels_page_keeps_its_controls_in_view_too(page: Page, live_server):
    project, user = active_project("binary", 0)
    from tests.factories import ItemFactory, label

    item = ItemFactory(project=project, input="Summarise our refund policy.", output=LONG_OUTPUT)
    for key, value in (("acceptable", "pass"), ("follows_instructions", "pass"), ("factually_correct", "fail")):
        label(item, user, key, value)
    page.set_viewport_size({"width": 1366, "height": 768})
    log_in_by_keyboard(page, live_server.url, user.username)
    page.goto(live_server.url + reverse("label_edit", args=[project.slug, item.pk]))
    expect(page.locator("#current fieldset.criterion.active")).to_have_count(1)
    page.mouse.wheel(0, 20_000)
    _wait_until(page, "window.scrollY > 0")
    assert _in_viewport(page, "#current .controls button.submit")
    window_shot(page, "sticky-edit-1366x768")
    assert console_errors(page) == []


def test_pairwise_long_outputs_side_by_side_keep_the_controls_in_view(page: Page, live_server):
    project, user = active_project("pairwise", 0, allow_tie=True)
    from tests.factories import ItemFactory

    ItemFactory(project=project, input="Compare. " + HOSTILE, output="", output_a=LONG_OUTPUT, output_b=LONG_OUTPUT)
    page.set_viewport_size({"width": 1366, "height": 768})
    log_in_by_keyboard(page, live_server.url, user.username)
    page.goto(live_server.url + reverse("label_queue", args=[project.slug]))
    expect(page.locator("#current fieldset.criterion.active")).to_have_count(1)
    page.mouse.wheel(0, 30_000)
    _wait_until(page, "window.scrollY > 0")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("t")
    page.keyboard.press("ArrowRight")
    assert _in_viewport(page, "#current .controls button.submit")
    window_shot(page, "sticky-pairwise-1366x768")
    page.keyboard.press("Enter")
    wait_for_labels(page, project, 3)
    assert sorted(Label.objects.values_list("value", flat=True)) == ["a", "b", "tie"]  # left and right are A and B
    assert console_errors(page) == []
