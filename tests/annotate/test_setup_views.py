"""Setting projects up in the browser: creating a project, its settings and status, its criteria (each saved edit is
exactly one new rubric version, reviewed first), and its members (removal keeps labels, releases leases; a project
always keeps a lead). Services first, then the pages, then who may reach them."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from annotate import selectors
from annotate.models import Assignment, Item, Label, Membership, Project, RubricVersion
from annotate.services.members import member_add
from annotate.services.projects import project_create, project_set_status, project_update
from annotate.services.queue import queue_fill
from annotate.services.rubrics import rubric_diff, rubric_set_criteria
from tests.factories import DEFAULT_CRITERIA, ItemFactory, ProjectFactory, UserFactory, label, membership

pytestmark = pytest.mark.django_db


def _criteria_post(rows, *, action, base):
    data = {"action": action, "base": str(base), "form-TOTAL_FORMS": str(len(rows)), "form-INITIAL_FORMS": "0"}
    for i, row in enumerate(rows):
        for field in ("key", "name", "description"):
            data[f"form-{i}-{field}"] = row.get(field, "")
    return data


def _versions(project):
    return list(RubricVersion.objects.filter(project=project).order_by("number").values_list("number", flat=True))


@pytest.fixture
def creator(db):
    user = UserFactory(username="cora-creator")
    user.user_permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotate"))
    return user


# --- Creating a project ---------------------------------------------------------------------------------------


def test_a_user_with_the_add_project_permission_creates_a_draft_project_and_becomes_its_lead(client, creator):
    client.force_login(creator)
    assert "New project" in client.get(reverse("home")).content.decode()
    page = client.get(reverse("project_new"))
    assert page.status_code == 200 and "Create project" in page.content.decode()
    response = client.post(
        reverse("project_new"),
        {"name": "Refund answers", "kind": "pairwise", "instructions": "Be *kind*.", "overlap": 3, "allow_tie": "on"},
    )
    project = Project.objects.get(slug="refund-answers")
    assert response.status_code == 302 and response.url == reverse("project_criteria", args=[project.slug])
    assert (project.kind, project.overlap, project.allow_tie, project.status) == ("pairwise", 3, True, "draft")
    assert project.instructions == "Be *kind*."
    assert Membership.objects.get(project=project).user == creator
    assert Membership.objects.get(project=project).role == "lead"
    assert project.current_rubric is None  # criteria come next


def test_staff_may_create_projects_and_a_taken_address_is_refused_with_a_clear_error(client, project):
    staff = UserFactory(username="stella-staff", is_staff=True)
    client.force_login(staff)
    response = client.post(
        reverse("project_new"), {"name": "Another", "slug": project.slug, "kind": "binary", "overlap": 2}
    )
    assert response.status_code == 422
    assert f"The address “{project.slug}” is taken" in response.content.decode()
    assert Project.objects.count() == 1


def test_users_without_the_permission_cannot_create_projects_and_see_no_link(client, lead, annotator):
    for user in (lead, annotator):
        client.force_login(user)
        assert "New project" not in client.get(reverse("home")).content.decode()
        assert client.get(reverse("project_new")).status_code == 403
        assert client.post(reverse("project_new"), {"name": "X", "kind": "binary", "overlap": 2}).status_code == 403
    with pytest.raises(ValidationError, match="may not create"):
        project_create(creator=lead, slug="x", name="X", kind="binary")
    assert not Project.objects.filter(slug="x").exists()


def test_the_new_project_preview_button_without_javascript_previews_and_creates_nothing(client, creator):
    client.force_login(creator)
    data = {"name": "Refunds", "kind": "binary", "overlap": 2, "instructions": "## Be brief", "preview": "1"}
    response = client.post(reverse("project_new"), data)
    assert response.status_code == 200 and "<h2>Be brief</h2>" in response.content.decode()
    assert not Project.objects.exists()


def test_an_address_that_cannot_be_made_from_the_name_is_asked_for(client, creator):
    client.force_login(creator)
    response = client.post(reverse("project_new"), {"name": "???", "kind": "binary", "overlap": 2})
    assert response.status_code == 422 and "Choose an address" in response.content.decode()
    assert not Project.objects.exists()


def test_the_new_project_form_reports_bad_fields_without_creating_anything(client, creator):
    client.force_login(creator)
    response = client.post(reverse("project_new"), {"name": "", "kind": "ternary", "overlap": 99})
    page = response.content.decode()
    assert response.status_code == 422 and "This field is required" in page
    assert "Select a valid choice" in page and "less than or equal to 50" in page
    assert not Project.objects.exists()


# --- Settings, preview and status -----------------------------------------------------------------------------


def _settings(project, **changes):
    data = {
        "form": "settings",
        "name": project.name,
        "kind": project.kind,
        "instructions": project.instructions,
        "overlap": project.overlap,
    }
    data.update(changes)
    return data


def test_a_lead_edits_the_settings(client, project, lead):
    client.force_login(lead)
    page = client.get(reverse("project_settings", args=[project.slug])).content.decode()
    assert "Save settings" in page and "Activate" in page
    response = client.post(
        reverse("project_settings", args=[project.slug]),
        _settings(project, name="Support bot v2", instructions="# Rules", overlap=4, kind="pairwise", allow_tie="on"),
    )
    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.name, project.instructions, project.overlap, project.kind) == (
        "Support bot v2",
        "# Rules",
        4,
        "pairwise",
    )
    assert project.allow_tie and not project.require_note_on_fail


def test_a_lead_sets_the_daily_sample_on_the_settings_page(client, project, lead):
    client.force_login(lead)
    url = reverse("project_settings", args=[project.slug])
    page = client.get(url).content.decode()
    assert 'name="sample_size" value="50"' in page and 'name="sample_hour" value="6"' in page
    response = client.post(url, _settings(project, sample_size="120", sample_hour="22"))
    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.sample_size, project.sample_hour) == (120, 22)
    response = client.post(url, _settings(project, sample_size="0", sample_hour="24"))
    assert response.status_code == 422 and "less than or equal to 23" in response.content.decode()
    project.refresh_from_db()
    assert (project.sample_size, project.sample_hour) == (120, 22)


def test_the_kind_is_locked_once_the_project_has_items(client, project, lead):
    ItemFactory(project=project)
    with pytest.raises(ValidationError, match="kind cannot change"):
        project_update(
            project=project,
            name=project.name,
            kind="pairwise",
            instructions="",
            overlap=2,
            allow_tie=True,
            require_note_on_fail=False,
        )
    client.force_login(lead)
    page = client.get(reverse("project_settings", args=[project.slug])).content.decode()
    assert "Fixed: the project has items" in page and "disabled" in page
    # A forged kind in the POST is ignored (the field is disabled); the other changes are saved.
    client.post(reverse("project_settings", args=[project.slug]), _settings(project, kind="pairwise", overlap=5))
    project.refresh_from_db()
    assert (project.kind, project.overlap) == ("binary", 5)


def test_the_instructions_preview_renders_sanitised_markdown_and_saves_nothing(client, project, lead, creator):
    client.force_login(lead)
    url = reverse("project_preview", args=[project.slug])
    response = client.post(url, {"instructions": "**Bold** <script>alert(1)</script> [x](javascript:alert(1))"})
    html = response.content.decode()
    assert response.status_code == 200
    assert "<strong>Bold</strong>" in html and "<script>" not in html and "href" not in html
    assert "&lt;script&gt;" in html
    assert client.get(url).status_code == 405
    project.refresh_from_db()
    assert project.instructions == ""
    # Without JavaScript the Preview button posts the settings form, which shows the preview and saves nothing.
    response = client.post(
        reverse("project_settings", args=[project.slug]), _settings(project, instructions="## Heading", preview="1")
    )
    assert response.status_code == 200 and "<h2>Heading</h2>" in response.content.decode()
    project.refresh_from_db()
    assert project.instructions == ""
    # The new-project page has its own preview endpoint for those who may create projects.
    client.force_login(creator)
    response = client.post(reverse("project_new_preview"), {"instructions": "- one\n- two"})
    assert "<li>one</li>" in response.content.decode()


def test_activation_needs_three_criteria_and_says_so(client, lead):
    project = ProjectFactory(slug="thin", criteria=DEFAULT_CRITERIA[:2])
    membership(lead, project, "lead")
    client.force_login(lead)
    response = client.post(reverse("project_settings", args=[project.slug]), {"form": "status", "status": "active"})
    assert response.status_code == 422
    assert "at least 3 measurable criteria" in response.content.decode()
    project.refresh_from_db()
    assert project.status == "draft"
    rubric_set_criteria(project=project, criteria=DEFAULT_CRITERIA)
    response = client.post(reverse("project_settings", args=[project.slug]), {"form": "status", "status": "active"})
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.status == "active"
    # Pause takes it back to draft.
    client.post(reverse("project_settings", args=[project.slug]), {"form": "status", "status": "draft"})
    project.refresh_from_db()
    assert project.status == "draft"


# --- Criteria -------------------------------------------------------------------------------------------------


def test_rubric_diff_names_each_change_and_only_the_criteria_that_moved():
    a = {"key": "a", "name": "A", "description": "a"}
    b = {"key": "b", "name": "B", "description": "b"}
    c = {"key": "c", "name": "C", "description": "c"}
    d = {"key": "d", "name": "D", "description": "d"}
    assert rubric_diff(old=[a, b, c], new=[a, b, c]) == []
    texts = [ch.text for ch in rubric_diff(old=[a, b, c], new=[c, a, b])]
    assert texts == ["move “C” to position 1"]
    changes = rubric_diff(old=[a, b, c], new=[{**a, "description": "new"}, {**c, "name": "Cee"}, d])
    assert [(ch.action, ch.text) for ch in changes] == [
        ("add", "add “D”"),
        ("remove", "remove “B”"),
        ("define", "change the definition of “A”"),
        ("rename", "rename “C” to “Cee”"),
    ]


def test_saving_an_edit_makes_exactly_one_new_version_after_a_review(client, project, lead):
    client.force_login(lead)
    url = reverse("project_criteria", args=[project.slug])
    page = client.get(url).content.decode()
    assert "Follows the instruction" in page and "rubric v1" in page
    rows = [dict(c) for c in DEFAULT_CRITERIA]
    rows[1]["description"] = "Does exactly what was asked, nothing more."
    rows.append({"key": "", "name": "Polite tone", "description": "No rudeness."})
    rows[0], rows[2] = rows[2], rows[0]

    review = client.post(url, _criteria_post(rows, action="review", base=1))
    html = review.content.decode()
    assert review.status_code == 200
    assert "v2 will:" in html
    assert "add “Polite tone”" in html
    assert "change the definition of “Follows the instruction”" in html
    assert "move “" in html
    assert _versions(project) == [1]  # the review writes nothing

    saved = client.post(url, _criteria_post(rows, action="save", base=1))
    assert saved.status_code == 302
    assert _versions(project) == [1, 2]
    project.refresh_from_db()
    assert project.current_rubric.number == 2
    new = list(selectors.criteria_current(project=project).values_list("key", "description"))
    assert [k for k, _ in new] == ["factually_correct", "follows_instructions", "acceptable", "polite_tone"]
    assert new[1][1] == "Does exactly what was asked, nothing more."
    assert project.current_rubric.created_by == lead

    # The same criteria again: the review says nothing changed, and a forced save makes no version.
    rows = [
        {"key": k, "name": n, "description": d}
        for k, n, d in selectors.criteria_current(project=project).values_list("key", "name", "description")
    ]
    review = client.post(url, _criteria_post(rows, action="review", base=2)).content.decode()
    assert "No changes" in review and "Save as v3" not in review
    client.post(url, _criteria_post(rows, action="save", base=2))
    assert _versions(project) == [1, 2]


def test_the_editor_buttons_add_move_and_remove_rows_without_saving(client, project, lead):
    client.force_login(lead)
    url = reverse("project_criteria", args=[project.slug])
    rows = [dict(c) for c in DEFAULT_CRITERIA]
    html = client.post(url, _criteria_post(rows, action="add", base=1)).content.decode()
    assert 'name="form-3-name"' in html
    html = client.post(url, _criteria_post(rows, action="down-0", base=1)).content.decode()
    assert html.index('value="follows_instructions"') < html.index('value="acceptable"')
    html = client.post(url, _criteria_post(rows, action="remove-2", base=1)).content.decode()
    assert 'value="factually_correct"' not in html
    assert _versions(project) == [1]


def test_a_save_against_a_rubric_that_moved_on_is_refused(client, project, lead):
    client.force_login(lead)
    url = reverse("project_criteria", args=[project.slug])
    rows = [dict(c) for c in DEFAULT_CRITERIA] + [{"key": "extra", "name": "Extra", "description": "More."}]
    rubric_set_criteria(project=project, criteria=[*DEFAULT_CRITERIA, {"key": "x", "name": "X", "description": "x"}])
    response = client.post(url, _criteria_post(rows, action="save", base=1))
    assert response.status_code == 422 and "Someone saved rubric v2" in response.content.decode()
    assert _versions(project) == [1, 2]


def test_a_review_says_when_the_rubric_moved_on_since_the_editor_was_opened(client, project, lead):
    client.force_login(lead)
    url = reverse("project_criteria", args=[project.slug])
    rows = [dict(c) for c in DEFAULT_CRITERIA]
    # The draft was opened on v1 and someone saved v2 meanwhile: the review is against v2 and says so.
    rubric_set_criteria(project=project, criteria=[*DEFAULT_CRITERIA, {"key": "x", "name": "X", "description": "x"}])
    html = client.post(url, _criteria_post(rows, action="add", base=1)).content.decode()
    assert 'name="base" value="1"' in html
    html = client.post(url, _criteria_post(rows, action="review", base=1)).content.decode()
    assert "Rubric v2 was saved by someone else" in html and "remove “X”" in html and "Save as v3" in html
    assert 'name="base" value="2"' in html


def test_an_active_project_keeps_at_least_three_criteria(client, project, lead):
    project_set_status(project=project, status="active")
    client.force_login(lead)
    rows = [dict(c) for c in DEFAULT_CRITERIA[:2]]
    response = client.post(
        reverse("project_criteria", args=[project.slug]), _criteria_post(rows, action="save", base=1)
    )
    assert response.status_code == 422
    assert "An active project needs at least 3 criteria" in response.content.decode()
    assert _versions(project) == [1]


def test_invalid_rows_are_reported_by_number_and_duplicate_keys_refused(client, project, lead):
    client.force_login(lead)
    rows = [
        {"key": "acceptable", "name": "Acceptable", "description": ""},
        {"key": "acceptable", "name": "Again", "description": "Twice."},
    ]
    html = client.post(reverse("project_criteria", args=[project.slug]), _criteria_post(rows, action="review", base=1))
    text = html.content.decode()
    assert html.status_code == 422
    assert "Criterion 1, definition: This field is required." in text
    assert "Two criteria have the key “acceptable”" in text


def test_a_criterion_named_like_a_script_stays_text(client, project, lead):
    client.force_login(lead)
    url = reverse("project_criteria", args=[project.slug])
    rows = [*DEFAULT_CRITERIA, {"key": "", "name": "<script>alert(1)</script>", "description": "<b>x</b>"}]
    client.post(url, _criteria_post(rows, action="save", base=1))
    assert _versions(project) == [1, 2]
    html = client.get(url).content.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>x</b>" not in html
    assert selectors.criteria_current(project=project).last().key == "scriptalert1script"


def test_the_criteria_editor_answers_htmx_with_the_editor_alone(client, project, lead):
    client.force_login(lead)
    url = reverse("project_criteria", args=[project.slug])
    rows = [dict(c) for c in DEFAULT_CRITERIA]
    response = client.post(url, _criteria_post(rows, action="add", base=1), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200 and 'id="criteria-editor"' in html and "<html" not in html
    rows[0]["name"] = "Acceptable as is"
    response = client.post(url, _criteria_post(rows, action="save", base=1), headers={"HX-Request": "true"})
    assert response.status_code == 200 and response.headers["HX-Redirect"] == url
    assert _versions(project) == [1, 2]


def test_a_first_rubric_on_a_new_project_is_v1(client, creator):
    project = project_create(creator=creator, slug="fresh", name="Fresh", kind="binary")
    client.force_login(creator)
    url = reverse("project_criteria", args=[project.slug])
    assert "no rubric yet" in client.get(url).content.decode()
    html = client.post(url, _criteria_post(DEFAULT_CRITERIA, action="review", base=0)).content.decode()
    assert "v1 will:" in html and html.count("change-add") == 3
    client.post(url, _criteria_post(DEFAULT_CRITERIA, action="save", base=0))
    assert _versions(project) == [1]


# --- Members --------------------------------------------------------------------------------------------------


def test_a_lead_adds_members_by_username_and_an_email_address_gets_an_invite(client, project, lead):
    UserFactory(username="nina", email="Nina.Ng@example.org")
    UserFactory(username="sam")
    client.force_login(lead)
    url = reverse("project_members", args=[project.slug])
    assert client.post(url, {"action": "add", "identifier": "sam", "role": "annotator"}).status_code == 302
    # By address: an invite for that address, never the account that has it (tests/annotate/test_people.py).
    response = client.post(url, {"action": "add", "identifier": "nina.ng@EXAMPLE.org", "role": "lead"})
    assert response.status_code == 200 and "/invite/" in response.content.decode()
    assert "nina" not in response.content.decode().lower().replace("nina.ng@example.org", "")
    roles = dict(Membership.objects.filter(project=project).values_list("user__username", "role"))
    assert roles == {"lena-lead": "lead", "sam": "annotator"}
    page = client.get(url).content.decode()
    assert "sam" in page and "nina.ng@example.org" in page.lower()


def test_adding_an_unknown_or_existing_member_is_refused_with_a_clear_error(client, project, lead, annotator):
    client.force_login(lead)
    url = reverse("project_members", args=[project.slug])
    response = client.post(url, {"action": "add", "identifier": "nobody", "role": "annotator"})
    assert response.status_code == 422
    assert "No user has the username “nobody”" in response.content.decode()
    response = client.post(url, {"action": "add", "identifier": annotator.username, "role": "lead"})
    assert "already annotator of this project" in response.content.decode()
    inactive = UserFactory(username="gone", is_active=False)
    with pytest.raises(ValidationError, match="inactive"):
        member_add(project=project, identifier=inactive.username, role="annotator")
    assert Membership.objects.filter(project=project).count() == 2


def test_a_lead_changes_a_role_but_never_demotes_the_last_lead(client, project, lead, annotator):
    client.force_login(lead)
    url = reverse("project_members", args=[project.slug])
    own = Membership.objects.get(project=project, user=lead)
    response = client.post(url, {"action": "role", "membership": own.pk, "role": "annotator"})
    assert response.status_code == 422 and "only lead" in response.content.decode()
    assert Membership.objects.get(pk=own.pk).role == "lead"
    theirs = Membership.objects.get(project=project, user=annotator)
    client.post(url, {"action": "role", "membership": theirs.pk, "role": "lead"})
    assert Membership.objects.get(pk=theirs.pk).role == "lead"
    # With a second lead, the first may step down, and lands on the project page: this one is no longer theirs.
    response = client.post(url, {"action": "role", "membership": own.pk, "role": "annotator"})
    assert response.status_code == 302 and response.url == reverse("project_detail", args=[project.slug])
    assert Membership.objects.get(pk=own.pk).role == "annotator"
    assert client.get(url).status_code == 404


def test_removing_a_member_keeps_their_labels_and_releases_their_leases(client, project, lead, annotator):
    items = [ItemFactory(project=project) for _ in range(4)]
    label(items[0], annotator, "acceptable", "pass")
    queue_fill(project=project, annotator=annotator, rubric_version_id=project.current_rubric_id)
    assert Assignment.objects.filter(annotator=annotator).count() == 2
    assert sum(Item.objects.filter(project=project).values_list("n_leased", flat=True)) == 2
    client.force_login(lead)
    url = reverse("project_members", args=[project.slug])
    theirs = Membership.objects.get(project=project, user=annotator)
    response = client.post(url, {"action": "remove", "membership": theirs.pk}, follow=True)
    assert "Removed ada-annotator. Their 1 label stays in the project." in response.content.decode()
    assert not Membership.objects.filter(pk=theirs.pk).exists()
    assert Label.objects.filter(annotator=annotator).count() == 1
    assert not Assignment.objects.filter(annotator=annotator).exists()
    assert sum(Item.objects.filter(project=project).values_list("n_leased", flat=True)) == 0
    client.force_login(annotator)
    assert client.get(reverse("project_detail", args=[project.slug])).status_code == 404


def test_the_last_lead_cannot_be_removed_but_a_lead_may_leave_when_another_remains(client, project, lead):
    client.force_login(lead)
    url = reverse("project_members", args=[project.slug])
    own = Membership.objects.get(project=project, user=lead)
    response = client.post(url, {"action": "remove", "membership": own.pk})
    assert response.status_code == 422 and "only lead" in response.content.decode()
    assert Membership.objects.filter(pk=own.pk).exists()
    membership(UserFactory(username="second-lead"), project, "lead")
    response = client.post(url, {"action": "remove", "membership": own.pk})
    assert response.status_code == 302 and response.url == reverse("home")
    assert not Membership.objects.filter(pk=own.pk).exists()


def test_the_members_card_answers_htmx_with_the_card_alone(client, project, lead):
    UserFactory(username="sam")
    client.force_login(lead)
    url = reverse("project_members", args=[project.slug])
    response = client.post(
        url, {"action": "add", "identifier": "sam", "role": "annotator"}, headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert response.status_code == 200 and 'id="members"' in html and "<html" not in html
    assert "Added sam as annotator." in html
    # A refusal is swapped in too (htmx swaps only 2xx answers), with the error in the card.
    response = client.post(url, {"action": "add", "identifier": "sam", "role": "lead"}, headers={"HX-Request": "true"})
    assert response.status_code == 200 and 'role="alert"' in response.content.decode()
    assert "sam is already annotator" in response.content.decode()


def test_a_membership_of_another_project_cannot_be_touched_from_this_one(client, project, lead, outsider):
    foreign = Membership.objects.get(user=outsider)
    client.force_login(lead)
    url = reverse("project_members", args=[project.slug])
    response = client.post(url, {"action": "remove", "membership": foreign.pk})
    assert response.status_code == 422
    client.post(url, {"action": "role", "membership": foreign.pk, "role": "annotator"})
    assert Membership.objects.get(pk=foreign.pk).role == "lead"


# --- Access ---------------------------------------------------------------------------------------------------


SETUP_URLS = ("project_settings", "project_preview", "project_criteria", "project_members")


@pytest.mark.parametrize("who", ["annotator", "outsider"])
def test_annotators_and_outsiders_get_404_on_every_setup_page(client, project, lead, annotator, outsider, who):
    client.force_login({"annotator": annotator, "outsider": outsider}[who])
    for name in SETUP_URLS:
        url = reverse(name, args=[project.slug])
        assert client.get(url).status_code in {404, 405}, url
        for data in (
            {"form": "status", "status": "archived"},
            {"form": "settings", "name": "Hijacked", "kind": "binary", "overlap": 1},
            {"action": "add", "identifier": who, "role": "lead"},
            _criteria_post([{"key": "x", "name": "X", "description": "x"}], action="save", base=1),
        ):
            assert client.post(url, data).status_code == 404, url
    project.refresh_from_db()
    assert (project.name, project.status, _versions(project)) == ("Support bot answers", "draft", [1])
    assert Membership.objects.filter(project=project).count() == 2


def test_setup_pages_need_a_login(client, project):
    for url in (
        reverse("project_new"),
        *(reverse(n, args=[project.slug]) for n in SETUP_URLS if n != "project_preview"),
    ):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_setup_posts_are_csrf_protected(project, lead, creator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(lead)
    for name in SETUP_URLS:
        assert (
            client.post(reverse(name, args=[project.slug]), {"form": "status", "status": "archived"}).status_code == 403
        )
    client.force_login(creator)
    assert client.post(reverse("project_new"), {"name": "Forged", "kind": "binary", "overlap": 2}).status_code == 403
    assert client.post(reverse("project_new_preview"), {"instructions": "x"}).status_code == 403
    assert not Project.objects.filter(name="Forged").exists()
    project.refresh_from_db()
    assert project.status == "draft"
    # With the token from the page, the same POST goes through.
    client.force_login(lead)
    page = client.get(reverse("project_settings", args=[project.slug]))
    token = page.cookies["csrftoken"].value
    response = client.post(
        reverse("project_settings", args=[project.slug]),
        {"form": "status", "status": "archived", "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.status == "archived"


def test_the_setup_pages_do_not_query_per_member_or_criterion(client, project, lead, django_assert_max_num_queries):
    for n in range(20):
        membership(UserFactory(username=f"member-{n}"), project, "annotator")
    client.force_login(lead)
    for name in ("project_members", "project_criteria", "project_settings"):
        with django_assert_max_num_queries(10):
            assert client.get(reverse(name, args=[project.slug])).status_code == 200
