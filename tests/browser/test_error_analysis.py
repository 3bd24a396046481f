"""A real browser walks the error-analysis loop on the Tülu 1 demo (issue 21): review 30 items with a pass/fail and a
note by keyboard (today's production sample first), ask the stand-in for a suggested grouping through a real Celery
worker and apply two of its groups, make the third mode on the board and file notes by keyboard and by drag, rename a
mode, read the counts chart, promote a mode to a criterion (a new rubric version) and start its judge on dev.
Screenshots: review-item, review-suggestion, review-board, review-counts, review-promote, review-judge-run."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from annotate import samples, selectors
from annotate.demo import demo_load
from annotate.models import FailureMode, Item, Label, Membership, ProductionRecord, Project, ReviewNote
from judges.models import JudgeRun
from tests.browser.conftest import SCREENSHOTS, console_errors
from tests.browser.test_login_and_project import csp_problems, log_in_by_keyboard
from tests.factories import membership
from tests.judges.conftest import MODEL, standin, standin_server  # noqa: F401 - fixtures, used by name below

pytestmark = pytest.mark.usefixtures("transactional_db", "standin")

# Three kinds of failure, worded so that notes of a kind share their words (the stand-in groups by shared words).
THEMES = (
    "Invents a citation to a paper that does not exist",
    "Arithmetic error: the total is wrong",
    "Ignores the requested bullet format",
)


def screenshot(page: Page, name: str) -> None:
    """A full-page screenshot that leaves the caret alone: Playwright hides it by writing a style attribute on every
    input, which this app's CSP refuses (and reports on the console, as it should for the app's own pages)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True, caret="initial")


def _todays_sample(project: Project) -> int:
    """Five production records received yesterday, sampled into today's queue."""
    rows = [
        (n, {"external_id": f"prod-{n}", "input": f"Production question {n}?", "output": f"Production answer {n}."})
        for n in range(1, 6)
    ]
    samples.records_receive(project=project, rows=rows)
    today = timezone.localdate()
    ProductionRecord.objects.filter(project=project).update(received_on=today - dt.timedelta(days=1))
    Project.objects.filter(pk=project.pk).update(sample_size=5)
    project.refresh_from_db()
    sample, _created = samples.sample_take(project=project, day=today)
    return sample.n_added


def test_a_lead_walks_the_error_analysis_loop_on_the_tulu_demo(
    page: Page, live_server, lead, celery_worker, settings, tmp_path
):
    settings.VAR_DIR = tmp_path
    demo_load()
    project = Project.objects.get(slug="tulu-acceptability")
    membership(lead, project, Membership.Role.LEAD)
    assert _todays_sample(project) == 5
    base = live_server.url
    log_in_by_keyboard(page, base, lead.username)

    # --- Review 30 items by keyboard: P or F, the note, Ctrl+Enter. ------------------------------------------------
    page.goto(base + reverse("project_detail", args=[project.slug]))
    page.get_by_role("link", name="Review", exact=True).click()
    expect(page.get_by_role("heading", name="Review", exact=True)).to_be_visible()
    for n in range(30):
        expect(page.locator(".review-progress")).to_contain_text(f"You have reviewed {n} of")
        if n < 5:  # today's production sample comes first
            expect(page.locator("#review")).to_contain_text("Production question")
        # The verdict has the focus, so the keys act at once.
        expect(page.locator("input[name=verdict][value=pass]")).to_be_focused()
        if n == 0:
            screenshot(page, "review-item")
        if n % 5 == 4:
            page.keyboard.press("p")
            page.keyboard.press("Enter")
        else:
            page.keyboard.press("f")
            expect(page.locator("#review-note")).to_be_focused()
            page.keyboard.type(f"{THEMES[n % 3]} (#{n + 1})")
            page.keyboard.press("Control+Enter")
    expect(page.locator(".review-progress")).to_contain_text("You have reviewed 30 of")
    notes = ReviewNote.objects.filter(project=project, reviewer=lead)
    assert notes.count() == 30 and notes.filter(verdict="fail").count() == 24
    assert notes.filter(item__source=Item.Source.SAMPLE).count() == 5

    assert not console_errors(page), ("review", console_errors(page))

    # --- A suggested grouping from the judge endpoint (the stand-in), applied group by group. ----------------------
    page.goto(base + reverse("failure_modes", args=[project.slug]))
    expect(page.locator("#unassigned-h")).to_contain_text("24 notes")
    page.get_by_role("link", name="Suggest a grouping").click()
    page.get_by_label("Endpoint").select_option("standin")
    page.get_by_label("Model").fill(MODEL)
    page.get_by_role("button", name=re.compile("Suggest a grouping of 24 notes")).click()
    expect(page.get_by_role("heading", name=re.compile("Suggested: Citation"))).to_be_visible(timeout=60_000)
    expect(page.locator("#suggestion")).to_contain_text("$0")
    assert not FailureMode.objects.filter(project=project).exists()  # only shown until the lead applies
    screenshot(page, "review-suggestion")
    page.get_by_role("button", name="Apply “Citation”").click()
    expect(page.locator("#suggestion")).to_contain_text("Applied.")
    page.get_by_role("button", name="Apply “Arithmetic”").click()
    expect(page.locator("#suggestion .suggested-group").filter(has_text="Arithmetic")).to_contain_text("Applied.")
    assert sorted(FailureMode.objects.filter(project=project).values_list("name", flat=True)) == [
        "Arithmetic",
        "Citation",
    ]

    assert not console_errors(page), ("suggestion", console_errors(page))

    # --- The board: a third mode, notes filed by keyboard and one by drag, a rename. -------------------------------
    page.get_by_role("link", name="Back to the failure modes").click()
    expect(page.locator("#unassigned-h")).to_contain_text("8 notes")
    page.locator("#new-mode-name").fill("Ignores the format")
    page.locator("#new-mode-definition").fill("Does not use the format the user asked for.")
    page.get_by_role("button", name="Create").click()
    expect(page.locator("#board")).to_contain_text("Created “Ignores the format”")
    third = FailureMode.objects.get(project=project, name="Ignores the format")
    # One note by drag and drop onto the new mode.
    # Headless Chromium here ends a native drag at once (dragstart, then dragend), so the drag's events are sent to
    # the page's own handlers as a browser sends them, with one DataTransfer carried from dragstart to drop.
    transfer = page.evaluate_handle("() => new DataTransfer()")
    page.locator(".unassigned .note-row").first.dispatch_event("dragstart", {"dataTransfer": transfer})
    drop_zone = page.locator(f"#mode-{third.pk} h2")
    drop_zone.dispatch_event("dragover", {"dataTransfer": transfer})
    expect(page.locator(f"#mode-{third.pk}")).to_have_class(re.compile("drop-here"))
    drop_zone.dispatch_event("drop", {"dataTransfer": transfer})
    expect(page.locator("#unassigned-h")).to_contain_text("7 notes")
    # The rest by keyboard: J and K move between notes, 3 files the focused one; the focus moves on to the next.
    page.locator(".unassigned .note-row").first.focus()
    page.keyboard.press("j")
    expect(page.locator(".unassigned .note-row").nth(1)).to_be_focused()
    page.keyboard.press("k")
    expect(page.locator(".unassigned .note-row").first).to_be_focused()
    for left in range(7, 0, -1):
        focused = page.locator(".note-row:focus")
        expect(focused, f"the focus with {left} notes left").to_contain_text("bullet format")
        page.keyboard.press("3")
        expect(page.locator("#unassigned-h")).to_contain_text(f"{left - 1} note")
    expect(page.locator(".unassigned")).to_contain_text("every failing note is in a mode")
    assert third.notes.count() == 8
    citation = FailureMode.objects.get(project=project, name="Citation")
    section = page.locator(f"#mode-{citation.pk}")
    section.get_by_text("Rename, merge, split").click()
    section.get_by_label("Name", exact=True).fill("Invented citations")
    section.get_by_label("Definition", exact=True).fill("Cites a source that does not exist.")
    section.get_by_role("button", name="Save name and definition").click()
    expect(page.locator("#board")).to_contain_text("Saved “Invented citations”")
    screenshot(page, "review-board")
    assert {m.name: m.notes.count() for m in FailureMode.objects.filter(project=project)} == {
        "Invented citations": 8,
        "Arithmetic": 8,
        "Ignores the format": 8,
    }

    assert not console_errors(page), ("board", console_errors(page))

    # --- Counts and the chart. ----------------------------------------------------------------------------------
    page.get_by_role("link", name="Counts & drift").click()
    expect(page.locator("svg.chart-line")).to_be_visible()
    table = page.locator("table.counts")
    expect(table.get_by_role("row", name=re.compile("Invented citations"))).to_contain_text("8/30")
    expect(table.get_by_role("row", name=re.compile("Unassigned"))).to_contain_text("0/30")
    screenshot(page, "review-counts")

    assert not console_errors(page), ("counts", console_errors(page))

    # --- Promote a mode: the usual review wording, a new rubric version, labels from the reviews. -------------------
    before = selectors.rubric_current(project=project).number
    page.goto(base + reverse("failure_modes", args=[project.slug]))
    page.locator(f"#mode-{citation.pk}").get_by_role("link", name="Promote to a criterion").click()
    expect(page.get_by_role("heading", name=f"Saving makes rubric v{before + 1}. v{before + 1} will:")).to_be_visible()
    expect(page.locator(".changes")).to_contain_text("add “Avoids: Invented citations”")
    expect(page.locator(".consequence")).to_contain_text("from the reviews (8 fail, 6 pass)")
    screenshot(page, "review-promote")
    page.get_by_role("button", name=f"Save as v{before + 1}").click()
    expect(page.get_by_role("heading", name=re.compile("is a criterion"))).to_be_visible()
    assert selectors.rubric_current(project=project).number == before + 1
    labels = Label.objects.filter(rubric_version__number=before + 1, criterion__key="avoids_invented_citations")
    assert labels.filter(value="fail").count() == 8 and labels.filter(value="pass").count() == 6

    assert not console_errors(page), ("promote", console_errors(page))

    # --- Start its judge on dev. ----------------------------------------------------------------------------------
    page.get_by_role("link", name="Create its judge").click()
    expect(page.get_by_label("Criterion")).to_have_value("avoids_invented_citations")
    # The mode's train items come as few-shot candidates: failing ones from its notes, passing ones from passed reviews.
    expect(page.locator("textarea[name=examples]")).to_have_value(re.compile(r" fail \| Invents a citation"))
    page.get_by_label("Endpoint").select_option("standin")
    page.get_by_label("Model", exact=True).fill(MODEL)
    page.get_by_role("button", name="Save version").click()
    expect(page.get_by_role("heading", name=re.compile("version 1"))).to_be_visible()
    page.get_by_role("button", name="Start run").click()
    # The run page polls, then shows the report when the worker is done.
    expect(page.get_by_role("heading", name="Judge vs humans")).to_be_visible(timeout=60_000)
    run = JudgeRun.objects.get(project=project)
    assert run.status == "done" and run.version.judge.criterion_key == "avoids_invented_citations"
    assert run.version.examples.filter(verdict="fail").exists()  # the few-shot candidates were kept
    screenshot(page, "review-judge-run")
    assert not console_errors(page), console_errors(page)
    assert not csp_problems(page)
