"""The labeling queue on slow and failing networks, in a real browser.

Playwright's routing stands between the page and the server: answers held back ~1.5 s while the annotator submits
again 0.4 s later (in order and out of order), a submit cut off, a 500 with a traceback-sized body, a 403, the login
page after the session ended, the server's own refusals (409, 410). In every case the annotator sees a short human
message next to the form (never a response body), nothing is lost, the keys keep working, and no item stays leased
to an annotator whose page never showed it.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, Route, expect

from annotate import selectors
from annotate.models import Assignment, Item, Label
from annotate.services.labels import label_submit
from annotate.services.leases import assignments_expire
from tests.browser.conftest import active_project, console_errors, screenshot, wait_for_labels
from tests.browser.test_login_and_project import csp_problems, log_in_by_keyboard
from tests.factories import UserFactory, membership

pytestmark = pytest.mark.usefixtures("transactional_db")

BINARY = {"1": "pass", "p": "pass", "2": "fail", "f": "fail"}
DROPPED = "Not saved: the connection dropped. Your choices are kept; press Enter to try again."
SERVER = "Not saved: the server had a problem. Your choices are kept; press Enter to try again in a moment."
SESSION = (
    "Not saved: your session has ended or this page is out of date. Reload the page (log in again if asked); "
    "this item will still be in your queue."
)
# What Django's debug page looks like from afar: 26 KB of HTML with a traceback in it.
TRACEBACK_PAGE = (
    "<!DOCTYPE html><html><head><title>OperationalError at /p/x/label/1/</title></head><body><h1>Server Error</h1>"
    + "<pre>Traceback (most recent call last):\n"
    + "".join(
        f'  File "/app/annotate/label_views.py", line {n}, in label_submit\n    label_services.label_submit(\n'
        for n in range(400)
    )
    + "</pre></body></html>"
)
SUBMITS = "**/label/*/"  # submit URLs: /p/<slug>/label/<item>/ (skip, edit, heartbeat have longer paths)

# A failed request shows up in the console: the browser's network line and htmx's own report of it.
EXPECTED_CONSOLE = ("Failed to load resource", "htmx:", "Response Status Error Code")


def _unexpected_console(page: Page) -> list[str]:
    return [e for e in console_errors(page) if not e.startswith(EXPECTED_CONSOLE)]


def _open_queue(page: Page, live_server, project, user) -> None:
    log_in_by_keyboard(page, live_server.url, user.username)
    page.goto(live_server.url + reverse("label_queue", args=[project.slug]))
    expect(page.locator("#current fieldset.criterion.active")).to_have_count(1)


def _current_item(page: Page) -> int:
    return int(page.locator("#current form.item-form").get_attribute("data-item"))


def _stored(item_id: int) -> list[str]:
    return list(Label.objects.filter(item_id=item_id).order_by("criterion__position").values_list("value", flat=True))


def _leased(user) -> set[int]:
    return set(Assignment.objects.filter(annotator=user, state="leased").values_list("item_id", flat=True))


def _press(page: Page, *keys: str) -> None:
    for key in keys:
        page.keyboard.press(key)


def _message(page: Page):
    return page.locator("#current .form-error")


class HeldRoutes:
    """Routes held by the test and let go when their time comes, while the page goes on (see wait_for_labels: the
    sync API serves routes only while the test thread is inside a Playwright call, so time passes in `pump`)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.held: list[tuple[float, Callable[[], None]]] = []

    def later(self, delay: float, release: Callable[[], None]) -> None:
        self.held.append((time.monotonic() + delay, release))

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            now = time.monotonic()
            for entry in [h for h in self.held if h[0] <= now]:
                self.held.remove(entry)
                entry[1]()
            if now >= end:
                return
            self.page.wait_for_timeout(25)

    def drain(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while self.held and time.monotonic() < deadline:
            self.pump(0.05)
        assert not self.held

    def release_all(self) -> None:
        """Let every held route go now: a test that fails must not leave routes open (closing the page would wait)."""
        while self.held:
            _due, release = self.held.pop(0)
            with contextlib.suppress(Exception):  # the page may be gone already
                release()


@pytest.fixture
def held(page: Page) -> Iterator[HeldRoutes]:
    routes = HeldRoutes(page)
    try:
        yield routes
    finally:
        # A handler still fetching when the page closes would raise into the next test: let it end quietly.
        with contextlib.suppress(Exception):
            page.unroute_all(behavior="ignoreErrors")
        routes.release_all()


def slow_link(page: Page, held: HeldRoutes, mode: str, delays: list[float]) -> None:
    """Every labeling POST takes `delays[i]` seconds (cycled): either its answer is held back after the server did
    the work ("answers"), or the request itself reaches the server that much later ("requests")."""
    cycle = itertools.cycle(delays)

    def handle(route: Route) -> None:
        if route.request.method != "POST" or route.request.url.split("?")[0].endswith("/heartbeat/"):
            route.continue_()
            return
        delay = next(cycle)
        if mode == "requests":
            held.later(delay, route.continue_)
        else:
            try:
                response = route.fetch()
            except PlaywrightError:  # the page closed while the answer was on its way: the test is over
                return
            held.later(delay, lambda: route.fulfill(response=response))

    page.route("**/label/**", handle)


_WORKSPACE_STATE = """() => {
  const c = document.getElementById("current");
  if (c.querySelector("form.item-form fieldset.criterion.active")) return "form";
  if (c.querySelector("[data-empty]")) return "empty";
  const text = c.innerText.trim();
  return text ? "message: " + text : "blank";
}"""


def _next_state(page: Page, link: HeldRoutes, seen: set[str], timeout: float = 15) -> str:
    """Wait (letting held routes go) until the annotator has a form or the empty queue; never a blank workspace."""
    deadline = time.monotonic() + timeout
    while True:
        state = page.evaluate(_WORKSPACE_STATE)
        seen.add(state)
        assert state != "blank", "the workspace is blank, with no message"
        if state in {"form", "empty"}:
            return state
        assert state == "message: Loading the next item…", state
        assert time.monotonic() < deadline, "the next item never came"
        link.pump(0.05)


@pytest.mark.parametrize(
    ("mode", "delays"),
    [("answers", [1.5]), ("answers", [1.5, 0.4]), ("requests", [1.5, 0.4])],
    ids=["answers-in-order", "answers-out-of-order", "requests-out-of-order"],
)
def test_rapid_submits_on_a_slow_link_label_every_item_as_pressed_and_leave_no_lease_behind(
    page: Page, live_server, held, mode, delays
):
    project, user = active_project("binary", 7)
    _open_queue(page, live_server, project, user)
    slow_link(page, held, mode, delays)
    link = held
    plans = itertools.cycle([("1", "2", "1"), ("f", "f", "p"), ("2", "1", "1")])
    pressed: dict[int, tuple[str, ...]] = {}
    seen: set[str] = set()
    while True:
        if _next_state(page, link, seen) == "empty":
            link.drain()  # an answer still on its way may bring an item: the queue is empty only when all are in
            if _next_state(page, link, seen) == "empty":
                break
        item = _current_item(page)
        assert item not in pressed, "an item came back after it was submitted"
        pressed[item] = next(plans)
        _press(page, *pressed[item], "Enter")
        link.pump(0.4)  # the next submit comes 0.4 s after this one
    wait_for_labels(page, project, 3 * 7)

    assert set(pressed) == set(Item.objects.filter(project=project).values_list("pk", flat=True))
    for item, keys in pressed.items():
        assert _stored(item) == [BINARY[k] for k in keys], item
    assert Item.objects.filter(project=project, n_submitted=1, n_leased=0).count() == 7
    assert _leased(user) == set(), "an item stayed leased to this annotator"
    # With every answer 1.5 s late, the second of two quick submits waits for its item, and says so.
    assert "message: Loading the next item…" in seen or delays != [1.5]
    assert console_errors(page) == [] and csp_problems(page) == []


def test_a_submit_cut_off_while_the_annotator_moved_on_comes_back_filled_in_and_nothing_is_lost(
    page: Page, live_server, held
):
    project, user = active_project("binary", 3)
    _open_queue(page, live_server, project, user)
    first = _current_item(page)
    cut = {"left": 1}

    def cut_first(route: Route) -> None:
        if route.request.method == "POST" and cut["left"]:
            cut["left"] -= 1
            held.later(1.0, lambda: route.abort("connectionreset"))
        else:
            route.continue_()

    page.route(SUBMITS, cut_first)
    _press(page, "1", "2", "1", "Enter")
    second = _current_item(page)  # the prefetched item, at once
    _press(page, "2", "2")  # half done when the first submit fails
    held.pump(1.2)

    message = _message(page)
    expect(message).to_have_text(DROPPED)
    expect(message).to_be_in_viewport()
    expect(message).to_be_focused()
    expect(message).to_have_attribute("role", "alert")
    assert _current_item(page) == first
    assert page.locator("#current input:checked").count() == 3
    assert not Label.objects.exists()

    _press(page, "Enter")  # retry: stored; the item the annotator had moved on to is back with its two choices
    wait_for_labels(page, project, 3)
    assert _stored(first) == ["pass", "fail", "pass"]
    expect(page.locator("#current form.item-form")).to_have_attribute("data-item", str(second))
    expect(page.locator("#current input:checked")).to_have_count(2)
    expect(message).to_be_hidden()
    _press(page, "1", "Enter")
    wait_for_labels(page, project, 6)
    assert _stored(second) == ["fail", "fail", "pass"]
    third = _current_item(page)
    _press(page, "1", "1", "1", "Enter")
    wait_for_labels(page, project, 9)
    assert _stored(third) == ["pass", "pass", "pass"]
    expect(page.get_by_role("heading", name="Nothing left for you here")).to_be_visible()
    assert _leased(user) == set()
    assert _unexpected_console(page) == []


def test_a_500_with_a_traceback_shows_a_short_message_next_to_the_form_never_the_body(page: Page, live_server):
    project, user = active_project("binary", 2)
    _open_queue(page, live_server, project, user)
    first = _current_item(page)
    broken = {"left": 1}

    def saved_then_500(route: Route) -> None:
        # The server saved the labels, then the answer that said so was lost behind a 500 (a proxy, a crash).
        if route.request.method == "POST" and broken["left"]:
            broken["left"] -= 1
            route.fetch()
            route.fulfill(status=500, content_type="text/html", body=TRACEBACK_PAGE)
        else:
            route.continue_()

    page.route(SUBMITS, saved_then_500)
    page.evaluate("window.scrollTo(0, 0)")
    _press(page, "2", "1", "2", "Enter")
    message = _message(page)
    expect(message).to_have_text(SERVER)
    expect(message).to_be_in_viewport()
    expect(message).to_be_focused()
    expect(page.locator("#workspace")).not_to_contain_text("Traceback")
    assert len(page.locator("#workspace").inner_text()) < 2000
    assert _current_item(page) == first and page.locator("#current input:checked").count() == 3
    screenshot(page, "label-failed-submit")

    _press(page, "Enter")  # the retry is recognised as the same form: stored once, and labeling goes on
    expect(page.locator("#current form.item-form")).not_to_have_attribute("data-item", str(first))
    assert _stored(first) == ["fail", "pass", "fail"]
    assert Item.objects.get(pk=first).n_submitted == 1
    _press(page, "1", "1", "1", "Enter")
    wait_for_labels(page, project, 6)
    expect(page.get_by_role("heading", name="Nothing left for you here")).to_be_visible()
    assert _leased(user) == set()
    assert _unexpected_console(page) == []


def test_a_403_says_to_reload_and_log_in(page: Page, live_server):
    project, user = active_project("binary", 2)
    _open_queue(page, live_server, project, user)
    first = _current_item(page)
    page.route(
        SUBMITS,
        lambda route: route.fulfill(
            status=403, content_type="text/html", body="<h1>Forbidden (403)</h1><p>CSRF verification failed.</p>" * 50
        ),
    )
    _press(page, "1", "1", "1", "Enter")
    expect(_message(page)).to_have_text(SESSION)
    expect(page.locator("#workspace")).not_to_contain_text("CSRF")
    assert _current_item(page) == first and page.locator("#current input:checked").count() == 3
    assert _unexpected_console(page) == []


def test_after_the_session_ended_the_login_page_is_not_taken_for_the_next_item(page: Page, live_server):
    project, user = active_project("binary", 2)
    _open_queue(page, live_server, project, user)
    first = _current_item(page)
    page.context.clear_cookies(name="sessionid")
    _press(page, "1", "2", "1", "Enter")
    expect(_message(page)).to_have_text(SESSION)
    expect(page.locator("#workspace")).not_to_contain_text("Password")
    assert _current_item(page) == first and page.locator("#current input:checked").count() == 3
    assert not Label.objects.exists()
    assert _unexpected_console(page) == []


def test_the_servers_own_refusal_is_shown_in_its_words_and_the_form_kept(page: Page, live_server):
    project, user = active_project("binary", 2, require_note_on_fail=True)
    _open_queue(page, live_server, project, user)
    first = _current_item(page)
    _press(page, "1", "2", "1", "Enter")  # a fail without a note: the server refuses (409) and says why
    message = _message(page)
    expect(message).to_have_text("This project asks for a note whenever something fails: say why.")
    expect(message).to_be_in_viewport()
    assert _current_item(page) == first and page.locator("#current input:checked").count() == 3
    _press(page, "n")
    page.keyboard.type("Misses the second step.")
    _press(page, "Escape", "Enter")
    wait_for_labels(page, project, 3)
    assert _stored(first) == ["pass", "fail", "pass"]
    assert set(Label.objects.filter(item_id=first).values_list("note", flat=True)) == {"Misses the second step."}
    expect(message).to_be_hidden()
    assert _unexpected_console(page) == []


def test_an_item_that_no_longer_needs_the_label_says_so_and_the_annotator_carries_on(page: Page, live_server):
    project, user = active_project("binary", 3)
    _open_queue(page, live_server, project, user)
    first = _current_item(page)
    # Meanwhile the lease ran out, the sweep freed it, and someone else gave the item its one label.
    Assignment.objects.filter(annotator=user, item_id=first).update(expires_at=timezone.now())
    assignments_expire()
    other = UserFactory(username="quick-colleague")
    membership(other, project)
    label_submit(
        project=project,
        annotator=other,
        item_id=first,
        criteria=selectors.criteria_of_version(project.current_rubric_id),
        values={"acceptable": "fail", "follows_instructions": "fail", "factually_correct": "fail"},
    )
    _press(page, "1", "1", "1", "Enter")
    message = _message(page)
    expect(message).to_contain_text("it has since got all the labels it needs")
    expect(message).to_be_in_viewport()
    second = _current_item(page)
    assert second != first
    _press(page, "2", "2", "2", "Enter")
    wait_for_labels(page, project, 6)
    assert _stored(second) == ["fail", "fail", "fail"]
    assert not Label.objects.filter(item_id=first, annotator=user).exists()
    third = _current_item(page)
    assert third not in {first, second}
    assert _leased(user) == {third}
    assert _unexpected_console(page) == []


def test_an_item_submitted_the_moment_it_arrives_is_sent_by_htmx_not_as_a_page_load(page: Page, live_server, held):
    project, user = active_project("binary", 4)
    _open_queue(page, live_server, project, user)
    slow_link(page, held, "answers", [1.0])
    page.evaluate("window.__samePage = true")
    _press(page, "1", "1", "1", "Enter")  # the prefetched item is shown at once...
    _press(page, "2", "2", "2", "Enter")  # ...and submitted too: the next one is on its way
    expect(page.locator("#current")).to_have_text("Loading the next item…")
    # The instant an item replaces the loading card (before htmx would have settled it), choose and submit it.
    page.evaluate(
        """() => new MutationObserver((records, observer) => {
             const form = document.querySelector("#current form.item-form");
             if (!form) return;
             observer.disconnect();
             form.querySelectorAll("fieldset.criterion").forEach((fs) => { fs.querySelector("input").checked = true; });
             form.requestSubmit(form.querySelector("button.submit"));
           }).observe(document.getElementById("current"), {childList: true})"""
    )
    deadline = time.monotonic() + 15
    while Label.objects.filter(item__project=project).count() < 9 and time.monotonic() < deadline:
        held.pump(0.05)
    held.drain()
    assert page.evaluate("window.__samePage") is True, "the submit was a plain form post: the page was reloaded"
    assert Label.objects.filter(item__project=project).count() == 9
    assert _unexpected_console(page) == []


def test_undo_pressed_while_the_submit_is_on_its_way_opens_that_item_once_it_is_saved(page: Page, live_server, held):
    project, user = active_project("binary", 3)
    _open_queue(page, live_server, project, user)
    first = _current_item(page)
    slow_link(page, held, "requests", [1.0])
    _press(page, "1", "2", "1", "Enter", "u")  # leaving at once would cut the submit off
    expect(_message(page)).to_have_text("Saving your last item first; Undo opens it once it is saved.")
    deadline = time.monotonic() + 15
    while "/edit/" not in page.url and time.monotonic() < deadline:
        held.pump(0.05)
    expect(page).to_have_url(live_server.url + reverse("label_edit", args=[project.slug, first]))
    expect(page.locator("#current fieldset.criterion.active")).to_have_count(1)
    assert _stored(first) == ["pass", "fail", "pass"]
    assert _unexpected_console(page) == []
