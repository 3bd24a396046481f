"""A real browser: a lead invites an annotator by link; the invitee signs up, labels blind (no item id, no model
names), and the used link no longer works. Then the lead deactivates them. All under the enforced CSP."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from playwright.sync_api import Page, expect

from annotate.models import Label, Membership, Project
from annotate.services.items import item_build
from annotate.services.projects import project_set_status
from tests.browser.conftest import console_errors, screenshot, wait_for_labels
from tests.browser.test_login_and_project import csp_problems, log_in_by_keyboard
from tests.factories import ProjectFactory, UserFactory, membership

pytestmark = pytest.mark.usefixtures("transactional_db")
NEW_PASSWORD = "plum orchard 1987 lantern"


def _pairwise_project() -> Project:
    project = ProjectFactory(slug="tulu-preference", name="Tülu 1: which response is better?", kind="pairwise")
    project_set_status(project=project, status="active")
    for n in range(3):
        item_build(
            project=project,
            fields={
                "input": f"Write a haiku about autumn, number {n}.",
                "output_a": f"Leaves fall, version {n}",
                "output_b": f"Red maple, version {n}",
            },
            external_id=f"open-ended-{n}/chatgpt-vs-tulu_65B",
            metadata={"model_a": "chatgpt", "model_b": "tulu_65B", "dataset": "tulu1-human-eval"},
        ).save()
    return project


def test_a_lead_invites_an_annotator_who_signs_up_and_labels_blind(page: Page, live_server):
    base = live_server.url
    project = _pairwise_project()
    lead = UserFactory(username="lena-lead")
    membership(lead, project, Membership.Role.LEAD)
    log_in_by_keyboard(page, base, lead.username)

    page.goto(base + reverse("project_members", args=[project.slug]))
    page.get_by_label("Invite a person").fill("nora@example.org")
    page.locator("#invite-role").select_option("annotator")
    page.get_by_role("button", name="Create invite link").click()
    members = page.locator("#members")
    expect(members.get_by_role("status")).to_contain_text("Invite link for nora@example.org as annotator created")
    link = members.locator("#new-link").input_value()
    assert link.startswith(base + "/invite/")
    expect(members.get_by_role("cell", name="nora@example.org")).to_be_visible()  # the open invites list
    screenshot(page, "people-invite-link")

    # The invitee: logged out, opens the link, signs up with a password of their own.
    page.get_by_role("button", name="Log out").click()
    page.goto(link)
    expect(page.get_by_role("heading", name=f"Join {project.name}")).to_be_visible()
    expect(page.get_by_label("E-mail")).to_have_value("nora@example.org")
    page.get_by_label("Username").fill("nora")
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_label("Password again").fill("short")
    page.get_by_role("button", name="Create account and join").click()
    expect(page.locator("#password2-err")).to_contain_text("too short")  # refused, nothing lost but the password
    expect(page.get_by_label("Username")).to_have_value("nora")
    page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Password again").fill(NEW_PASSWORD)
    screenshot(page, "people-invite-signup")
    page.get_by_role("button", name="Create account and join").click()
    expect(page.locator("ul.messages")).to_contain_text("Welcome, nora: you joined")
    nora = get_user_model().objects.get(username="nora")
    assert Membership.objects.get(project=project, user=nora).role == "annotator"

    # Labeling: the item text and both outputs, but no id and no model names.
    page.goto(base + reverse("label_queue", args=[project.slug]))
    expect(page.get_by_role("radio", name="Left is better").first).to_be_visible()
    html = page.content()
    for hidden in ("chatgpt", "tulu_65B", "-vs-", "open-ended-"):
        assert hidden not in html, hidden
    screenshot(page, "people-invitee-labels-blind")
    for _ in range(3):
        page.keyboard.press("1")
    page.keyboard.press("Enter")
    wait_for_labels(page, project, 3)
    assert Label.objects.filter(annotator=nora).count() == 3

    # The link worked once.
    page.goto(link)
    expect(page.get_by_role("alert")).to_contain_text("This invite link cannot be used")
    # The refused signup (422) and the used link (404) answer with those statuses on purpose.
    assert csp_problems(page) == [] and [e for e in console_errors(page) if not ("422" in e or "404" in e)] == []

    # The lead deactivates nora: her labels stay, she can no longer label here.
    page.get_by_role("button", name="Log out").click()
    log_in_by_keyboard(page, base, lead.username)
    page.goto(base + reverse("project_members", args=[project.slug]))
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Deactivate nora").click()
    expect(members.get_by_role("status")).to_contain_text("Deactivated nora. Their 3 labels stay in the project.")
    expect(members.locator("tbody tr", has_text="nora")).to_contain_text("deactivated")
    screenshot(page, "people-members-deactivated")
    assert Membership.objects.get(project=project, user=nora).deactivated_at is not None
    assert Label.objects.filter(annotator=nora).count() == 3
    assert csp_problems(page) == []
