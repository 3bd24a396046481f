"""Walk every URL pattern the app serves and ask for it as an outsider: each answers 404 (or, for the pages that are
not about a project, what a stranger may see). A new URL pattern that this test does not know makes it fail, so no
page or endpoint ships without an access decision."""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from annotate.models import ApiToken, FailureMode, GoldLabel, ImportJob, Label, Membership, Project, ReviewNote
from annotate.review import services as review_services
from annotate.services.projects import project_set_status
from judges import prompts
from judges.models import JudgeRun, ModeSuggestion
from judges.services import judge_versions
from tests.factories import ItemFactory, UserFactory, label, membership

pytestmark = pytest.mark.django_db

# Pages that belong to no project: what an outsider (a logged-in stranger) gets there is decided here, on purpose.
NOT_PROJECT_PAGES = {
    "": {200},  # their own home page, listing only their own projects
    "login/": {200, 302},
    "logout/": {405},  # GET is refused; logout is a POST
    "healthz": {200},
    "favicon.ico": {200},  # the site's icon, the same for everyone
    "settings/tokens/": {200},  # their own tokens only (test below)
    "settings/tokens/<int:token_id>/revoke/": {405},  # a POST only; the POST on someone else's token is a 404
    # Creating projects is for staff and holders of annotate.add_project; anyone else is refused (test below).
    "projects/new/": {403},
    "projects/new/preview/": {405},  # a POST only; the POST is refused with 403 too
    # An unusable invite link (here: unknown) gets one 404 page, whatever the reason (tests/annotate/test_people.py).
    "invite/<str:secret>/": {404},
    "people/": {403},  # accounts are for staff only (tests/annotate/test_people.py)
    # A set-password link: an invalid one says so and changes nothing; a valid one is a one-time secret.
    "reset/<uidb64>/<token>/": {200},
    "reset/done/": {200},  # says "password set", nothing more
}


def _patterns(patterns, prefix=""):
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _patterns(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern)


@pytest.fixture
def victim(project, lead, annotator):
    """The `project` of the personas, with one of each object its URLs can name."""
    project_set_status(project=project, status="active")
    project.refresh_from_db()
    item = ItemFactory(project=project)
    label(item, annotator, "acceptable", "pass")
    criterion = project.current_rubric.criteria.get(key="acceptable")
    GoldLabel.objects.create(item=item, criterion=criterion, value="pass", set_by=lead)
    job = ImportJob.objects.create(
        project=project, created_by=lead, kind="items", filename="x.jsonl", file_format="jsonl"
    )
    judge = judge_versions.judge_create(project=project, criterion_key="acceptable", actor=lead)
    version = judge_versions.judge_version_create(
        judge=judge,
        system_template=prompts.DEFAULT_SYSTEM[project.kind],
        user_template=prompts.DEFAULT_USER[project.kind],
        endpoint="standin",
        model="standin-judge-2024-01-01",
    )
    run = JudgeRun.objects.create(project=project, version=version, rubric_version=project.current_rubric)
    token = ApiToken.objects.create(user=lead, name="lead's", prefix="victimtok", secret_hash="0" * 64)
    # Error analysis (annotate.review): a failing review in a failure mode, and a finished suggestion naming it.
    note = review_services.review_submit(
        project=project, reviewer=annotator, item_id=item.pk, verdict="fail", note="Support bot answers wrongly"
    )
    mode = review_services.mode_create(project=project, name="Wrong answers", actor=lead)
    review_services.note_assign(project=project, note_id=note.pk, mode_id=mode.pk)
    suggestion = ModeSuggestion.objects.create(
        project=project,
        endpoint="standin",
        model="standin-judge-2024-01-01",
        status=ModeSuggestion.Status.DONE,
        note_ids=[note.pk],
        groups=[{"name": "Theirs", "definition": "", "note_ids": [note.pk], "applied_mode_id": None}],
        finished_at=timezone.now(),
    )
    return {
        "slug": project.slug,
        "item_id": item.pk,
        "criterion_key": "acceptable",
        "job_id": job.pk,
        "judge_id": judge.pk,
        "version_id": version.pk,
        "run_id": run.pk,
        "token_id": token.pk,
        "secret": "not-an-invite",
        "uidb64": "MQ",
        "token": "not-a-token",
        "note_id": note.pk,
        "mode_id": mode.pk,
        "suggestion_id": suggestion.pk,
        "index": 0,
    }


def _url(pattern: str, values: dict[str, object]) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(2)
        assert name in values, f"the URL pattern {pattern!r} names <{name}>, which this access test does not know"
        return str(values[name])

    return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", fill, pattern)


def test_an_outsider_gets_404_on_every_project_url_and_changes_nothing(client, victim, outsider):
    client.force_login(outsider)
    before = (Label.objects.count(), GoldLabel.objects.count(), JudgeRun.objects.count(), Project.objects.count())
    grouping = _grouping()
    checked = 0
    for pattern in _patterns(get_resolver().url_patterns):
        if pattern.startswith(("admin/", "api/v1/")):
            # The admin is staff-only (a test below); the API's token scoping is tested in tests/annotate/test_api.py.
            continue
        url = _url(pattern, victim)
        if pattern in NOT_PROJECT_PAGES:
            assert client.get(url).status_code in NOT_PROJECT_PAGES[pattern], pattern
            if "<int:token_id>" in pattern:
                assert client.post(url).status_code == 404, url
            continue
        assert pattern.startswith("p/<slug:slug>/"), f"{pattern!r} is neither a project page nor listed above"
        for method in (client.get, client.post):
            response = method(url, {"status": "archived", "item": victim["item_id"], "value": "fail"})
            assert response.status_code in {404, 405}, f"{method.__name__.upper()} {url}: {response.status_code}"
            if response.status_code == 405:
                continue
            assert "Support bot answers" not in response.content.decode(), url
        checked += 1
    assert checked >= 25
    after = (Label.objects.count(), GoldLabel.objects.count(), JudgeRun.objects.count(), Project.objects.count())
    assert before == after
    assert _grouping() == grouping
    assert Project.objects.get(slug=victim["slug"]).status == "active"


def _grouping():
    """The error-analysis state a stranger must not change: notes, their modes, mode names, suggestions."""
    return (
        sorted(ReviewNote.objects.values_list("pk", "verdict", "note", "failure_mode_id")),
        sorted(FailureMode.objects.values_list("pk", "name", "promoted_key")),
        sorted((s.pk, s.status, str(s.groups)) for s in ModeSuggestion.objects.all()),
    )


def test_an_annotator_gets_404_on_every_lead_page(client, victim, annotator):
    client.force_login(annotator)
    lead_only = (
        "status/",
        "agreement/",
        "adjudicate/",
        "import/",
        "judges/",
        "export/",
        "settings/",
        "criteria/",
        "members/",
        "rubric/",
        "failure-modes/",
    )
    for pattern in _patterns(get_resolver().url_patterns):
        if pattern.startswith("p/<slug:slug>/") and pattern.removeprefix("p/<slug:slug>/").startswith(lead_only):
            url = _url(pattern, victim)
            assert client.get(url).status_code in {404, 405}, url
            assert client.post(url, {"status": "archived"}).status_code in {404, 405}, url


def test_only_staff_and_project_creators_may_create_projects(client, outsider, lead, annotator):
    for user in (outsider, lead, annotator):
        client.force_login(user)
        before = Project.objects.count()
        assert client.get("/projects/new/").status_code == 403
        assert client.post("/projects/new/", {"name": "Mine", "kind": "binary", "overlap": 2}).status_code == 403
        assert client.post("/projects/new/preview/", {"instructions": "# hi"}).status_code == 403
        assert Project.objects.count() == before


def test_the_admin_is_closed_to_non_staff(client, outsider, lead):
    for user in (outsider, lead):
        client.force_login(user)
        response = client.get("/admin/")
        assert response.status_code == 302 and "/admin/login/" in response.url


def test_the_token_page_shows_only_ones_own_tokens(client, victim, outsider):
    client.force_login(outsider)
    page = client.get("/settings/tokens/").content.decode()
    assert "victimtok" not in page
    assert ApiToken.objects.get(pk=victim["token_id"]).revoked_at is None


def test_a_lead_of_another_project_is_still_an_outsider_here(client, victim):
    from tests.factories import ProjectFactory

    stranger = UserFactory(username="lead-elsewhere")
    membership(stranger, ProjectFactory(slug="elsewhere"), Membership.Role.LEAD)
    client.force_login(stranger)
    assert client.get(f"/p/{victim['slug']}/").status_code == 404
    assert client.get(f"/p/{victim['slug']}/agreement/").status_code == 404


def test_a_history_row_opens_and_saves_for_its_own_annotator_only(client, victim, annotator, other_annotator, lead):
    """The in-place history edit names an item: anyone but the annotator who labeled it gets a 404, a lead too."""
    for user in (other_annotator, lead):
        client.force_login(user)
        for name in ("history_row", "history_row_edit"):
            url = f"/p/{victim['slug']}/history/{victim['item_id']}/" + ("edit/" if name.endswith("edit") else "")
            assert client.get(url, headers={"HX-Request": "true"}).status_code == 404, (user, url)
            response = client.post(url, {"c-acceptable": "fail", "rev-acceptable": "1"}, headers={"HX-Request": "true"})
            assert response.status_code in {404, 405}, (user, url)
    assert list(Label.objects.values_list("value", flat=True)) == ["pass"]
    client.force_login(annotator)
    assert (
        client.get(f"/p/{victim['slug']}/history/{victim['item_id']}/edit/", headers={"HX-Request": "true"}).status_code
        == 200
    )


def test_the_monitor_apis_answer_404_to_outsiders_and_annotators_and_401_without_a_token(
    client, victim, annotator, outsider
):
    from annotate import tokens
    from judges.models import Monitor

    body = {"criteria": [{"criterion_key": "acceptable", "version_id": 1, "threshold": 0.5}]}
    for url in (f"/api/v1/projects/{victim['slug']}/monitor", f"/api/v1/projects/{victim['slug']}/monitor/settings"):
        assert client.get(url).status_code == 401
        for user in (outsider, annotator):
            _row, raw = tokens.token_create(user=user, name="probe")
            response = client.get(url, headers={"Authorization": f"Bearer {raw}"})
            assert response.status_code == 404, (user.username, url)
            if url.endswith("/settings"):
                headers = {"Authorization": f"Bearer {raw}"}
                response = client.put(url, body, content_type="application/json", headers=headers)
                assert response.status_code == 404, (user.username, url)
    assert not Monitor.objects.exists()
