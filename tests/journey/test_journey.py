"""The paths people take, on the real `make run` (conftest.py): an annotator labels by keyboard only, a lead imports,
runs a judge, iterates on it and exports. Run once on the embedded default and once on PostgreSQL + Redis.

Each test fails on any 5xx the browser sees, any console error and any error line in make run's output (Watch in
conftest.py), besides its own checks of what was stored.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Locator, Page, expect

from tests.journey.conftest import Watch
from tests.journey.makerun import MakeRun
from tests.journey.rows import pairwise_items, pairwise_jsonl

BINARY = "tulu-acceptability"
PAIRWISE = "tulu-preference"
CHOICES = {"binary": ("pass", "fail"), "pairwise": ("left", "right", "tie")}
STANDIN_MODEL = "standin-judge-2025-01-01"


# --- helpers ---------------------------------------------------------------------------------------------------


def log_in(page: Page, app: MakeRun, username: str) -> None:
    """Log in as make run printed it: the name and password come from its output, typed into the form."""
    assert username in app.credentials, f"make run printed no password for {username}: {app.credentials}"
    password, _role = app.credentials[username]
    page.goto(app.base_url + "/login/")
    expect(page.locator("#id_username")).to_be_focused()
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page).to_have_url(app.base_url + "/")


def activate(link: Locator) -> None:
    """Follow a link from the keyboard: focus it (as Tab would), press Enter, wait for the new page to load."""
    link.focus()
    with link.page.expect_navigation():
        link.press("Enter")


def wait_until(page: Page, watch: Watch, what: str, condition: Callable[[], bool], timeout: float = 20) -> None:
    """Poll `condition` while Playwright keeps working; stop at once on a server error."""
    deadline = time.monotonic() + timeout
    while not condition():
        watch.check()
        if time.monotonic() > deadline:
            watch.check()
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        page.wait_for_timeout(100)


def user_id(app: MakeRun, username: str) -> int:
    return app.db.value("SELECT id FROM auth_user WHERE username = %s", [username])


def stored_labels(app: MakeRun, username: str, item_id: int) -> dict[str, tuple[str, str, str | None, int]]:
    """criterion key -> (value, note, shown_order, revision) of one annotator's labels on one item."""
    rows = app.db.rows(
        "SELECT c.key, l.value, l.note, l.shown_order, l.revision FROM annotate_label l "
        "JOIN annotate_criterion c ON c.id = l.criterion_id WHERE l.annotator_id = %s AND l.item_id = %s",
        [user_id(app, username), item_id],
    )
    return {key: (value, note, order, revision) for key, value, note, order, revision in rows}


def item_row(app: MakeRun, item_id: int) -> dict[str, Any]:
    (row,) = app.db.rows(
        "SELECT external_id, input, output, output_a, output_b FROM annotate_item WHERE id = %s", [item_id]
    )
    return dict(zip(("external_id", "input", "output", "output_a", "output_b"), row, strict=True))


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _likeness(shown: str, source: str) -> float:
    """How much of `source` (raw item text) reads as `shown` (its rendering: Markdown lists lose their numbers)."""
    return difflib.SequenceMatcher(None, _words(shown), _words(source), autojunk=False).ratio()


def shown_order_on_screen(form: Locator, item: dict[str, Any]) -> str:
    """Which output the page showed on the left ("ab": output_a), read from the rendered Left and Right texts."""
    left, right = (section.inner_text() for section in form.locator(".outputs section").all())
    as_ab = _likeness(left, item["output_a"]) + _likeness(right, item["output_b"])
    as_ba = _likeness(left, item["output_b"]) + _likeness(right, item["output_a"])
    assert as_ab != as_ba, f"the two outputs of item {item['external_id']} cannot be told apart on screen"
    return "ab" if as_ab > as_ba else "ba"


def stored_value(kind: str, shown: str, order: str | None) -> str:
    """What a choice on screen is stored as: pass/fail, or left/right mapped back to a/b through the shown order."""
    if kind == "binary" or shown == "tie":
        return shown
    left, right = ("a", "b") if order == "ab" else ("b", "a")
    return left if shown == "left" else right


@dataclass
class Keyboard:
    """Presses keys on one labeling page, simulates what the keyboard contract says they do, records coverage."""

    page: Page
    bindings: dict[tuple[str, str], list[Any]]  # (page, kind) -> the keymap's entries
    pressed: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    where: tuple[str, str] = ("queue", "binary")

    def on(self, page_name: str, kind: str) -> None:
        self.where = (page_name, kind)

    def action(self, key: str) -> str | None:
        for binding in self.bindings[self.where]:
            if key in binding.keys:
                return binding.action
        return None

    def press(self, key: str) -> None:
        self.pressed.setdefault(self.where, set()).add(key)
        self.page.keyboard.press(key)

    def play(self, keys: Sequence[str], criteria: list[str], values: dict[str, str]) -> dict[str, str]:
        """Press `keys` from the first criterion; return the values the contract says the form now holds."""
        values, active = dict(values), 0
        choices = CHOICES[self.where[1]]
        for key in keys:
            action = self.action(key)
            assert action is not None, f"{key!r} is not a documented key on the {self.where} page"
            if action == "next":
                active = min(active + 1, len(criteria) - 1)
            elif action == "prev":
                active = max(active - 1, 0)
            elif action.startswith("choose:"):
                values[criteria[active]] = choices[int(action.split(":")[1])]
                active = min(active + 1, len(criteria) - 1)
            else:
                raise AssertionError(f"play() is for moving and choosing, not {action}")
            self.press(key)
        return values

    def write_note(self, form: Locator, text: str) -> None:
        """n focuses the note, the text is typed, Escape leaves the note (and nothing else happens)."""
        url = self.page.url
        self.press("n")
        note = form.locator("textarea[name=note]")
        expect(note).to_be_focused()
        self.page.keyboard.press("ControlOrMeta+a")  # replaces what the note held (the edit page shows it)
        self.page.keyboard.type(text)
        self.press("Escape")
        expect(note).not_to_be_focused()
        assert self.page.url == url
        expect(note).to_have_value(text)

    def toggle_help(self) -> None:
        """? shows the help, listing every documented key of the page, and ? hides it again."""
        dialog = self.page.locator("dialog#help")
        self.press("?")
        expect(dialog).to_be_visible()
        for binding in self.bindings[self.where]:
            expect(dialog).to_contain_text(binding.label)
        self.press("?")
        expect(dialog).to_be_hidden()


def checked(form: Locator) -> dict[str, str]:
    """criterion key -> the value of its checked radio, as the page holds it."""
    out = {}
    for fieldset in form.locator("fieldset.criterion").all():
        radio = fieldset.locator("input[type=radio]:checked")
        if radio.count():
            out[fieldset.get_attribute("data-key") or ""] = radio.get_attribute("value") or ""
    return out


def criteria_keys(form: Locator) -> list[str]:
    return [fs.get_attribute("data-key") or "" for fs in form.locator("fieldset.criterion").all()]


@dataclass
class Labeler:
    app: MakeRun
    page: Page
    watch: Watch
    keyboard: Keyboard
    username: str

    def current(self) -> Locator:
        return self.page.locator("#current form.item-form")

    def open_queue(self, slug: str) -> None:
        self.page.goto(f"{self.app.base_url}/p/{slug}/")
        activate(self.page.get_by_role("link", name="Start labeling"))
        expect(self.page).to_have_url(f"{self.app.base_url}/p/{slug}/label/")
        expect(self.current()).to_be_visible()

    def label(self, kind: str, keys: Sequence[str], note: str = "") -> tuple[int, dict[str, str]]:
        """Label the item on screen with `keys` (and a note), submit with Enter; check what was stored."""
        self.keyboard.on("queue", kind)
        form = self.current()
        item_id = int(form.get_attribute("data-item") or 0)
        item = item_row(self.app, item_id)
        order = None
        if kind == "pairwise":
            order = shown_order_on_screen(form, item)
        criteria = criteria_keys(form)
        expected = self.keyboard.play(keys, criteria, {})
        assert checked(form) == expected, f"the form does not hold what was pressed ({keys})"
        if note:
            self.keyboard.write_note(form, note)
        self.keyboard.press("Enter")
        wait_until(
            self.page,
            self.watch,
            f"the labels of item {item_id}",
            lambda: len(stored_labels(self.app, self.username, item_id)) == len(criteria),
        )
        expect(self.current()).not_to_have_attribute("data-item", str(item_id))  # the next item is on screen
        stored = stored_labels(self.app, self.username, item_id)
        for key, shown in expected.items():
            value, stored_note, stored_order, revision = stored[key]
            assert stored_order == order, f"item {item_id} was shown as {order}, stored as {stored_order}"
            assert value == stored_value(kind, shown, order), (item_id, key, shown, order, value)
            assert (stored_note, revision) == (note, 1)
        return item_id, expected

    def edit(
        self, kind: str, item_id: int, before: dict[str, str], keys: Sequence[str], note: str, back_to: str
    ) -> dict[str, str]:
        """On the edit page of `item_id`: change the labels with `keys`, write `note`, save with Enter."""
        self.keyboard.on("edit", kind)
        form = self.page.locator("form.edit-form")
        expect(self.page.get_by_role("heading", name="Change your labels")).to_be_visible()
        assert f"/label/{item_id}/edit/" in self.page.url
        assert checked(form) == before, "the edit page does not show the labels as given"
        expected = self.keyboard.play(keys, criteria_keys(form), before)
        assert checked(form) == expected, f"the edit form does not hold what was pressed ({keys})"
        self.keyboard.write_note(form, note)
        with self.page.expect_navigation():
            self.keyboard.press("Enter")
        expect(self.page.get_by_text("Your labels were updated.")).to_be_visible()
        assert self.page.url.startswith(back_to), (self.page.url, back_to)
        stored = stored_labels(self.app, self.username, item_id)
        for key, shown in expected.items():
            value, stored_note, order, revision = stored[key]
            assert value == stored_value(kind, shown, order), (item_id, key, shown, order, value)
            assert stored_note == note and revision == 2
        return expected

    def cancel_edit(self, back_to: str) -> None:
        """Escape on the edit page goes back where it came from, changing nothing."""
        with self.page.expect_navigation():
            self.keyboard.press("Escape")
        assert self.page.url.startswith(back_to), (self.page.url, back_to)

    def skip(self, kind: str) -> int:
        self.keyboard.on("queue", kind)
        item_id = int(self.current().get_attribute("data-item") or 0)
        self.keyboard.press("s")
        expect(self.current()).not_to_have_attribute("data-item", str(item_id))
        wait_until(
            self.page,
            self.watch,
            f"the skip of item {item_id}",
            lambda: (
                app_value(
                    self.app,
                    "SELECT state FROM annotate_assignment WHERE item_id = %s AND annotator_id = %s",
                    [item_id, user_id(self.app, self.username)],
                )
                == "skipped"
            ),
        )
        assert stored_labels(self.app, self.username, item_id) == {}
        return item_id

    def undo(self, kind: str, item_id: int) -> None:
        self.keyboard.on("queue", kind)
        with self.page.expect_navigation():
            self.keyboard.press("u")
        expect(self.page).to_have_url(re.compile(rf"/label/{item_id}/edit/"))


def app_value(app: MakeRun, sql: str, params: Sequence[Any]) -> Any:
    return app.db.value(sql, params)


# --- the annotator -------------------------------------------------------------------------------------------


def test_an_annotator_labels_binary_and_pairwise_items_by_keyboard_only(app: MakeRun, page: Page, watch: Watch):
    from annotate.keymap import keymap  # the keyboard contract, as data

    bindings = {
        (page_name, kind): keymap(page=page_name, kind=kind, allow_tie=kind == "pairwise")
        for page_name in ("queue", "edit")
        for kind in ("binary", "pairwise")
    }
    keyboard = Keyboard(page, bindings)
    me = Labeler(app, page, watch, keyboard, "annotator1")
    base = app.base_url
    log_in(page, app, "annotator1")

    # Binary: every key that moves or chooses, a note, help; then Undo, the edit page, Skip.
    me.open_queue(BINARY)
    keyboard.on("queue", "binary")
    keyboard.toggle_help()
    first, first_values = me.label("binary", ["1", "f", "p", "k", "p"], note="Reads well.")
    second, second_values = me.label("binary", ["j", "2", "p", "k", "k", "f"])
    me.undo("binary", second)
    keyboard.on("edit", "binary")
    me.cancel_edit(back_to=f"{base}/p/{BINARY}/label/")
    assert stored_labels(app, "annotator1", second)["acceptable"][3] == 1  # cancel changed nothing
    me.undo("binary", second)
    keyboard.on("edit", "binary")
    keyboard.toggle_help()
    me.edit(
        "binary",
        second,
        second_values,
        ["j", "1", "2", "k", "k", "f"],
        note="Changed my mind.",
        back_to=f"{base}/p/{BINARY}/label/",
    )
    me.skip("binary")

    # History, and an edit from there: Escape goes back to History, Enter saves and goes back to History.
    activate(page.get_by_role("link", name="History"))
    expect(page.get_by_role("heading", name="Your labels")).to_be_visible()
    # The row of that item, by its change link: annotators are not shown external ids (blind labeling).
    row = page.locator("tbody tr").filter(has=page.locator(f'a[href*="/label/{first}/edit/"]'))
    activate(row.get_by_role("link", name="Change"))
    keyboard.on("edit", "binary")
    me.cancel_edit(back_to=f"{base}/p/{BINARY}/history/")
    activate(row.get_by_role("link", name="Change"))
    me.edit(
        "binary",
        first,
        first_values,
        ["2", "p"],
        note="Not acceptable after all.",
        back_to=f"{base}/p/{BINARY}/history/",
    )

    # Pairwise: arrows, digits and t; the stored a/b follow the order shown on screen.
    me.open_queue(PAIRWISE)
    keyboard.on("queue", "pairwise")
    keyboard.toggle_help()
    me.label("pairwise", ["ArrowLeft", "ArrowRight", "t"])
    me.label("pairwise", ["j", "ArrowLeft", "3", "k", "k", "ArrowRight"], note="Right is clearer.")
    third, third_values = me.label("pairwise", ["2", "1", "3"])
    me.undo("pairwise", third)
    keyboard.on("edit", "pairwise")
    me.cancel_edit(back_to=f"{base}/p/{PAIRWISE}/label/")
    me.undo("pairwise", third)
    keyboard.on("edit", "pairwise")
    keyboard.toggle_help()
    me.edit(
        "pairwise",
        third,
        third_values,
        ["j", "k", "ArrowLeft", "2", "3", "k", "1", "t", "k", "k", "ArrowRight", "ArrowRight"],
        note="Both fine on correctness.",
        back_to=f"{base}/p/{PAIRWISE}/label/",
    )
    me.skip("pairwise")

    # Every documented key of every page was pressed above.
    for where, entries in bindings.items():
        documented = {key for binding in entries for key in binding.keys}
        assert documented <= keyboard.pressed.get(where, set()), (
            where,
            documented - keyboard.pressed.get(where, set()),
        )
    watch.check()


# --- the lead --------------------------------------------------------------------------------------------------


def test_a_lead_imports_runs_a_judge_iterates_and_exports(app: MakeRun, page: Page, watch: Watch, tmp_path: Path):
    base = app.base_url
    log_in(page, app, "lead")

    # Import a small file of real pairwise items into the pairwise demo project.
    path = tmp_path / "llmbar-natural.jsonl"
    path.write_text(pairwise_jsonl(), encoding="utf-8")
    page.get_by_role("link", name="Tülu 1: which response is better?").first.click()
    page.get_by_role("link", name="Import", exact=True).click()
    page.set_input_files("input[type=file]", str(path))
    page.get_by_role("button", name="Check the file").click()
    expect(page.locator("#job")).to_contain_text("3 new items would be added")
    page.get_by_role("button", name="Import 3 new items").click()
    job = page.locator("#job")
    expect(job).to_contain_text(re.compile("new items added|Failed|nothing was imported"), timeout=60_000)
    expect(job).to_contain_text("3 new items added", timeout=1)
    stored = {
        row[0]: row[1:]
        for row in app.db.rows(
            "SELECT i.external_id, i.input, i.output_a, i.output_b, i.metadata FROM annotate_item i "
            "JOIN annotate_project p ON p.id = i.project_id WHERE p.slug = %s AND i.external_id LIKE %s",
            [PAIRWISE, "llmbar-natural-%"],
        )
    }
    for item in pairwise_items():
        text_in, out_a, out_b, metadata = stored[item["external_id"]]
        assert (text_in, out_a, out_b) == (item["input"], item["output_a"], item["output_b"])
        assert (json.loads(metadata) if isinstance(metadata, str) else metadata) == item["metadata"]
    # Back and forward through the pages htmx pushed: whole pages each time.
    page.go_back()
    expect(page.locator("header.topbar")).to_be_visible()
    page.go_forward()
    expect(page.locator("header.topbar")).to_be_visible()
    expect(page.locator("#job")).to_contain_text("3 new items added")

    # A judge of the binary demo project on the stand-in, with two few-shot examples from train.
    page.goto(f"{base}/p/{BINARY}/")
    page.get_by_role("link", name="Judges").first.click()
    page.get_by_role("row", name=re.compile("Acceptable")).get_by_role("link", name="Write a judge").click()
    page.get_by_label("Endpoint").select_option("standin")
    page.get_by_label("Model", exact=True).fill(STANDIN_MODEL)
    train = [t for t in page.locator("section[aria-labelledby=train-h] code").all_inner_texts() if "…" not in t]
    assert len(train) >= 2, train
    page.get_by_role("textbox", name="Examples").fill(
        f"{train[0]} pass | It answers the request.\n{train[1]} fail | It ignores part of the request."
    )
    page.get_by_role("button", name="Save version").click()
    expect(page.get_by_role("heading", name=re.compile("version 1"))).to_be_visible()
    page.get_by_role("button", name="Start run").click()
    expect(page.get_by_role("heading", name="Judge vs humans")).to_be_visible(timeout=90_000)
    run_id = int(re.search(r"/judges/runs/(\d+)/", page.url)[1])  # type: ignore[index]
    verdicts = dict(
        app.db.rows(
            "SELECT status || ':' || value, COUNT(*) FROM judges_verdict WHERE run_id = %s GROUP BY 1", [run_id]
        )
    )
    assert set(verdicts) == {"ok:pass", "ok:fail"}, f"the stand-in judged every item alike, or failed: {verdicts}"

    # The report's disagreements, one kind opened.
    expect(page.get_by_label("Calibration verdict")).to_be_visible()
    kinds = page.locator("nav.filters a").filter(has_text=re.compile(r"Judge too \w+"))
    with_items = [link for link in kinds.all() if int(link.locator(".count").inner_text()) > 0]
    assert with_items, "the run has no disagreement to open"
    with_items[0].click()
    expect(page).to_have_url(re.compile(r"\?kind=\w+"))
    expect(page.locator("#disagreements article.item-card").first).to_be_visible()

    # A child version of the prompt, saved and run on dev, lands on the comparison of the two runs.
    page.get_by_role("link", name="New version from this one").click()
    template = page.get_by_label("User template")
    template.fill("Judge the response only, never the request.\n\n" + template.input_value())
    page.get_by_label("Change note").fill("Say what is judged")
    page.get_by_role("button", name="Save and run on dev").click()
    expect(page).to_have_url(re.compile(r"/judges/compare/\?va=\d+&vb=\d+$"))
    expect(page.get_by_role("heading", name=re.compile("What changed"))).to_be_visible(timeout=90_000)
    expect(page.locator("table.deltas tbody tr").first).to_be_visible()
    parent, examples = app.db.rows(
        "SELECT p.number, (SELECT COUNT(*) FROM judges_fewshotexample e WHERE e.version_id = v.id) "
        "FROM judges_judgeversion v JOIN judges_judgeversion p ON p.id = v.parent_id "
        "JOIN judges_judge j ON j.id = v.judge_id JOIN annotate_project pr ON pr.id = j.project_id "
        "WHERE v.number = 2 AND pr.slug = %s",
        [BINARY],
    )[0]
    assert (parent, examples) == (1, 2)

    # Every format the export page offers, for both demo projects: non-empty and parseable.
    for slug in (BINARY, PAIRWISE):
        page.goto(f"{base}/p/{slug}/")
        page.get_by_role("link", name="Export", exact=True).click()
        select = page.get_by_label("Format")
        formats = [v for v in select.locator("option").evaluate_all("os => os.map(o => o.value)") if v]
        assert {"jsonl", "csv"} <= set(formats), formats
        for fmt in formats:
            select.select_option(fmt)
            with page.expect_download() as download:
                page.get_by_role("button", name="Download").click()
            body = Path(download.value.path()).read_text(encoding="utf-8")
            rows = parse_export(fmt, body)
            assert rows, f"{slug} {fmt}: the download is empty"
    watch.check()


def parse_export(fmt: str, body: str) -> list[dict[str, Any]]:
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(body)))
    rows = [json.loads(line) for line in body.splitlines() if line.strip()]
    assert all(isinstance(row, dict) for row in rows), f"{fmt}: not one JSON object per line"
    return rows
