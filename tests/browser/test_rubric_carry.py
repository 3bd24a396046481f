"""A real browser walks a rubric edit on a labeled project (issue 15): the review says which criterion needs new labels
and which keep theirs; after saving, the dashboard still shows agreement for the kept criteria, the agreement page
says per criterion which version its definition dates from, and an annotator is asked only for the reworded one."""

from __future__ import annotations

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from annotate import reports
from annotate.models import Label, Membership
from annotate.services.leases import queue_counts_refresh
from annotate.services.projects import project_set_status
from tests.browser.conftest import console_errors, screenshot, wait_until
from tests.browser.test_login_and_project import csp_problems, log_in_by_keyboard
from tests.factories import ItemFactory, ProjectFactory, UserFactory, label, membership

pytestmark = pytest.mark.usefixtures("transactional_db")

REWORDED = "No factual or arithmetic error, checked against the source; a refusal to answer fails."


def test_a_lead_rewords_one_criterion_and_the_other_labels_keep_counting(page: Page, live_server):
    project = ProjectFactory(slug="carry-demo", name="Carry demo", overlap=2)
    project_set_status(project=project, status="active")
    lead, ann, other = (UserFactory(username=n) for n in ("lena-lead", "ada-annotator", "omar-annotator"))
    membership(lead, project, Membership.Role.LEAD)
    membership(ann, project)
    membership(other, project)
    items = [ItemFactory(project=project) for _ in range(12)]
    for n, item in enumerate(items):
        for key in ("acceptable", "follows_instructions", "factually_correct"):
            label(item, ann, key, "pass" if n % 2 else "fail")
            label(item, other, key, "pass" if n % 3 else "fail")
    queue_counts_refresh(project=project)
    project.refresh_from_db()
    reports.report_refresh(project=project, force=True, n_boot=200)

    base = live_server.url
    log_in_by_keyboard(page, base, lead.username)
    page.goto(base + reverse("project_criteria", args=[project.slug]))
    editor = page.locator("#criteria-editor")
    editor.locator("#form-2-description").fill(REWORDED)
    page.get_by_role("button", name="Review changes").click()
    expect(editor).to_contain_text("v2 will:")
    expect(editor.locator("p.consequence")).to_have_text(
        "“Factually correct” will need 24 new labels; the other 2 criteria keep their 48 labels."
    )
    screenshot(page, "carry-criteria-review")
    page.get_by_role("button", name="Save as v2").click()
    expect(page.locator("ul.messages")).to_contain_text("Saved rubric v2")
    assert Label.objects.filter(rubric_version=project.rubric_versions.get(number=2)).count() == 48

    page.goto(base + reverse("project_detail", args=[project.slug]))
    card = page.locator("#agreement-card")
    expect(card).not_to_contain_text("No agreement report yet")
    expect(card.locator("tbody tr")).to_have_count(2)
    expect(card.locator("tbody")).to_contain_text("Acceptable")
    expect(card.locator(".agreement-waiting")).to_contain_text(
        "No labels yet under the current definition of “Factually correct” (since v2)"
    )
    screenshot(page, "carry-dashboard-after-edit")

    page.goto(base + reverse("agreement_page", args=[project.slug]))
    expect(page.locator(".defined-in")).to_have_text(["definition since v1", "definition since v1"])
    screenshot(page, "carry-agreement-page")

    # The annotator is asked only for the reworded criterion on an item they labeled under v1.
    page.context.clear_cookies()
    log_in_by_keyboard(page, base, ann.username)
    page.goto(base + reverse("label_queue", args=[project.slug]))
    form = page.locator("#current form.item-form")
    expect(form.locator("fieldset.criterion")).to_have_count(1)
    expect(form.locator("fieldset.criterion legend")).to_contain_text("Factually correct")
    expect(form.locator(".carried-note")).to_be_visible()
    screenshot(page, "carry-label-form")
    form.get_by_text("Pass").click()
    form.get_by_role("button", name="Submit").click()
    v2 = project.rubric_versions.get(number=2)

    def answered() -> bool:
        return Label.objects.filter(rubric_version=v2, annotator=ann, carried=False).exists()

    wait_until(page, answered)
    assert Label.objects.filter(rubric_version=v2, annotator=ann, carried=False).count() == 1

    assert csp_problems(page) == []
    assert console_errors(page) == []
