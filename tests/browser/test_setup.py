"""A real browser: a lead creates a project, previews its instructions live, writes three criteria (rubric v1),
edits one and confirms the v2 summary, activates it and adds a member by username, all under the enforced CSP."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from playwright.sync_api import Page, expect

from annotate import selectors
from annotate.demo import BINARY_SPEC
from annotate.models import Membership, Project, RubricVersion
from tests.browser.conftest import console_errors, screenshot
from tests.browser.test_login_and_project import csp_problems, log_in_by_keyboard
from tests.factories import UserFactory

pytestmark = pytest.mark.usefixtures("transactional_db")

INSTRUCTIONS = (
    "Read the user's request, then the model's response.\n\n"
    "- Judge each criterion **on its own**.\n"
    "- Pass only if you would ship it as it is.\n"
    "<script>window.__xss=1</script>"
)


def test_a_lead_sets_up_a_project_from_scratch(page: Page, live_server):
    base = live_server.url
    lead = UserFactory(username="lena-lead", first_name="Lena", last_name="Lund")
    lead.user_permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotate"))
    UserFactory(username="ada", email="ada.annotator@example.org", first_name="Ada", last_name="Lovelace")
    log_in_by_keyboard(page, base, lead.username)

    page.get_by_role("link", name="New project").click()
    expect(page).to_have_url(base + reverse("project_new"))
    page.get_by_label("Name").fill("Tülu 1: is the response acceptable?")
    page.get_by_label("Address").fill("tulu-acceptability")
    page.get_by_label("Binary (pass/fail per criterion)").check()
    # The preview follows the typing (htmx, after a short pause), rendered by the server's sanitising Markdown.
    page.get_by_label("Instructions").fill(INSTRUCTIONS)
    preview = page.locator("#instructions-preview")
    expect(preview.locator("strong")).to_have_text("on its own")
    expect(preview.locator("li")).to_have_count(2)
    expect(preview).to_contain_text("<script>window.__xss=1</script>")  # shown as text, never run
    screenshot(page, "setup-new-project")
    page.get_by_role("button", name="Create project").click()

    project = Project.objects.get(slug="tulu-acceptability")
    expect(page).to_have_url(base + reverse("project_criteria", args=[project.slug]))
    expect(page.locator("ul.messages")).to_contain_text("Project created")
    editor = page.locator("#criteria-editor")
    for n, _ in enumerate(BINARY_SPEC["criteria"], start=1):
        page.get_by_role("button", name="+ Add a criterion").click()
        expect(editor.locator("fieldset.criterion-row")).to_have_count(n)
        expect(editor.locator(f"#form-{n - 1}-name")).to_be_focused()  # the new row is ready for typing
    for i, criterion in enumerate(BINARY_SPEC["criteria"]):
        editor.locator(f"#form-{i}-name").fill(criterion["name"])
        editor.locator(f"#form-{i}-description").fill(criterion["description"])
    page.get_by_role("button", name="Review changes").click()
    expect(editor).to_contain_text("v1 will:")
    expect(editor.locator("li.change-add")).to_have_count(3)
    assert not RubricVersion.objects.filter(project=project).exists()
    page.get_by_role("button", name="Save as v1").click()
    expect(page.locator("ul.messages")).to_contain_text("Saved rubric v1")
    expect(page.get_by_role("heading", name="Criteria rubric v1")).to_be_visible()

    # Edit the second criterion's definition and move the third up: the review names both, as v2.
    editor.locator("#form-1-description").fill("It does exactly what was asked, in the requested format.")
    page.get_by_role("button", name="Move criterion 3 up").click()
    expect(editor.locator("#form-1-name")).to_have_value("Factually correct")
    expect(editor.locator("#up-1")).to_be_focused()  # the focus follows the moved criterion
    page.get_by_role("button", name="Review changes").click()
    expect(editor).to_contain_text("v2 will:")
    expect(editor.locator("li.change")).to_contain_text(
        ["change the definition of “Follows the instruction”", "move “Factually correct” to position 2"]
    )
    screenshot(page, "setup-criteria-review")
    page.get_by_role("button", name="Save as v2").click()
    expect(page.locator("ul.messages")).to_contain_text("Saved rubric v2")
    assert list(selectors.criteria_current(project=project).values_list("key", flat=True)) == [
        "acceptable",
        "factually_correct",
        "follows_the_instruction",  # keys left empty are made from the names
    ]
    screenshot(page, "setup-criteria")

    page.get_by_role("navigation", name="Project setup").get_by_role("link", name="Settings").click()
    page.get_by_role("button", name="Activate").click()
    expect(page.locator("ul.messages")).to_contain_text("The project is now active")
    expect(page.locator("#status-card .badge")).to_have_text("Active")
    screenshot(page, "setup-settings")

    page.get_by_role("navigation", name="Project setup").get_by_role("link", name="Members").click()
    page.get_by_label("Add someone who has an account, by username").fill("ada")
    page.locator("#id_role").select_option("annotator")
    page.get_by_role("button", name="Add", exact=True).click()
    members = page.locator("#members")
    expect(members.get_by_role("status")).to_have_text("Added ada as annotator.")
    expect(members.locator("tbody tr")).to_have_count(2)
    expect(members.locator("tbody")).to_contain_text("Ada Lovelace")
    page.get_by_label("Add someone who has an account, by username").fill("nobody")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(members.get_by_role("alert")).to_contain_text("No user has the username “nobody”")
    page.get_by_label("Add someone who has an account, by username").fill("")
    screenshot(page, "setup-members")

    assert Membership.objects.get(project=project, user__username="ada").role == "annotator"
    project.refresh_from_db()
    assert project.status == "active" and "Judge each criterion" in project.instructions
    assert page.evaluate("window.__xss") is None
    assert csp_problems(page) == [] and console_errors(page) == []
