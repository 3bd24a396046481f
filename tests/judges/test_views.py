"""The judges pages: leads only (everyone else gets 404), htmx fragments, the editor, starting, polling, cancelling."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from judges import services
from judges.models import Judge, JudgeRun, JudgeVersion, RunChunk
from tests.judges.conftest import MODEL, make_item

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


@pytest.fixture
def done_run(project, version, standin) -> JudgeRun:
    for n in range(3):
        make_item(project, n)
    run = services.judge_run_start(version=version)
    for chunk in RunChunk.objects.filter(run=run):
        services.judge_chunk_process(chunk_id=chunk.pk)
    run.refresh_from_db()
    return run


def _urls(project, version, run) -> list[tuple[str, str]]:
    slug, judge = project.slug, version.judge_id
    return [
        ("get", reverse("judges:judge_list", args=[slug])),
        ("get", reverse("judges:judge_new", args=[slug])),
        ("post", reverse("judges:judge_new", args=[slug])),
        ("post", reverse("judges:template_check", args=[slug])),
        ("get", reverse("judges:judge_detail", args=[slug, judge])),
        ("get", reverse("judges:version_new", args=[slug, judge])),
        ("post", reverse("judges:version_new", args=[slug, judge])),
        ("get", reverse("judges:version_detail", args=[slug, version.pk])),
        ("get", reverse("judges:version_card", args=[slug, version.pk])),
        ("post", reverse("judges:run_start", args=[slug, version.pk])),
        ("get", reverse("judges:run_detail", args=[slug, run.pk])),
        ("post", reverse("judges:run_cancel", args=[slug, run.pk])),
    ]


def test_every_judges_url_is_covered_here():
    from judges.urls import urlpatterns

    assert len(urlpatterns) == 10  # _urls lists each, with GET and POST where a view takes both


def test_outsiders_and_annotators_get_404_on_every_judges_page(client, project, version, done_run, outsider, annotator):
    for user in (outsider, annotator):
        client.force_login(user)
        for method, url in _urls(project, version, done_run):
            for headers in ({}, HX):
                response = getattr(client, method)(url, headers=headers)
                assert response.status_code == 404, (user.username, method, url)
    assert JudgeRun.objects.count() == 1 and JudgeVersion.objects.count() == 1


def test_ids_from_another_project_are_404_even_for_its_lead(client, project, version, done_run, outsider):
    from annotate.models import Project

    client.force_login(outsider)
    other = Project.objects.get(slug="other-team")
    for method, url in _urls(project, version, done_run):
        if url.endswith(("/judges/", "/judges/new/", "/check/")):
            continue  # project-level pages: the outsider's own project has them
        response = getattr(client, method)(url.replace(f"/p/{project.slug}/", f"/p/{other.slug}/"))
        assert response.status_code == 404, url


def test_anonymous_users_are_sent_to_log_in(client, project):
    response = client.get(reverse("judges:judge_list", args=[project.slug]))
    assert response.status_code == 302 and "/login/" in response["Location"]


# --- The list and the editor ----------------------------------------------------------------------------------


def test_the_list_shows_each_criterion_with_its_judge_and_test_runs(client, lead, project, version, standin):
    client.force_login(lead)
    page = client.get(reverse("judges:judge_list", args=[project.slug])).content.decode()
    assert "Acceptable" in page and f"v{version.number}" in page and "offline stand-in" in page
    assert "Write a judge for this criterion" in page  # the two criteria without a judge
    fragment = client.get(reverse("judges:judge_list", args=[project.slug]), headers=HX).content.decode()
    assert fragment.lstrip().startswith('<table class="grid" id="judges">') and "<html" not in fragment


def test_the_judge_page_lists_versions_and_its_runs_fragment_alone(client, lead, project, version, done_run):
    client.force_login(lead)
    url = reverse("judges:judge_detail", args=[project.slug, version.judge_id])
    page = client.get(url).content.decode()
    assert "Edit from here" in page and "0 runs on the test split" in page
    fragment = client.get(url, headers=HX).content.decode()
    assert fragment.lstrip().startswith('<div id="runs">') and f"#{done_run.pk}" in fragment
    assert "<html" not in fragment and "Edit from here" not in fragment


def test_the_project_page_links_leads_to_the_judges(client, lead, annotator, project):
    client.force_login(lead)
    url = reverse("judges:judge_list", args=[project.slug])
    assert url in client.get(reverse("project_detail", args=[project.slug])).content.decode()
    client.force_login(annotator)
    assert url not in client.get(reverse("project_detail", args=[project.slug])).content.decode()


def _editor(**overrides: str) -> dict[str, str]:
    return {
        "criterion_key": "factually_correct",
        "name": "",
        "system_template": "Judge {{ criterion.name }}.",
        "user_template": "<input>{{ input }}</input><output>{{ output }}</output>",
        "endpoint": "standin",
        "model": MODEL,
        "temperature": "0",
        "max_tokens": "200",
        "examples": "",
    } | overrides


def test_a_lead_writes_a_judge_and_its_first_version(client, lead, project, standin):
    client.force_login(lead)
    response = client.post(reverse("judges:judge_new", args=[project.slug]), _editor())
    judge = Judge.objects.get(criterion_key="factually_correct")
    version = judge.versions.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("judges:version_detail", args=[project.slug, version.pk])
    assert (judge.name, version.number, version.created_by) == ("Factually correct", 1, lead)


def test_the_editor_names_an_unknown_placeholder_and_saves_nothing(client, lead, project, standin):
    client.force_login(lead)
    url = reverse("judges:judge_new", args=[project.slug])
    response = client.post(url, _editor(user_template="{{ input }} {{ verdict_hint }}"), headers=HX)
    body = response.content.decode()
    assert response.status_code == 422
    assert "Unknown placeholder {{ verdict_hint }}" in body
    assert 'id="editor"' in body and "<html" not in body
    assert not Judge.objects.exists()


def test_a_floating_alias_needs_the_override_and_then_warns_on_every_page(client, lead, project, standin):
    client.force_login(lead)
    url = reverse("judges:judge_new", args=[project.slug])
    refused = client.post(url, _editor(model="gpt-4o"))
    assert refused.status_code == 422 and "&#x27;gpt-4o&#x27; is a floating alias" in refused.content.decode()
    client.post(url, _editor(model="gpt-4o", allow_alias="on"))
    version = JudgeVersion.objects.get()
    assert version.model_is_alias
    for page in (
        reverse("judges:judge_list", args=[project.slug]),
        reverse("judges:judge_detail", args=[project.slug, version.judge_id]),
        reverse("judges:version_detail", args=[project.slug, version.pk]),
    ):
        assert "floating alias" in client.get(page).content.decode().lower(), page


def test_the_form_refuses_few_shot_examples_outside_train(client, lead, project, standin):
    make_item(project, 1, split="dev")
    client.force_login(lead)
    response = client.post(
        reverse("judges:judge_new", args=[project.slug]),
        _editor(user_template="{{ examples }}{{ input }}{{ output }}", examples="item-1 pass"),
    )
    assert response.status_code == 422
    assert "is in the dev split: few-shot examples may only come from train" in response.content.decode()
    assert not Judge.objects.exists()


def test_editing_a_version_makes_the_next_one_with_its_parent(client, lead, project, judge, version, standin):
    client.force_login(lead)
    url = reverse("judges:version_new", args=[project.slug, judge.pk]) + f"?from={version.pk}"
    form = client.get(url).content.decode()
    assert "saving makes version 2" in form and "You are a careful evaluator" in form
    data = _editor(system_template="Be strict.", change_note="Stricter.", parent=str(version.pk))
    del data["criterion_key"], data["name"]
    response = client.post(url, data, headers=HX)
    new = JudgeVersion.objects.get(number=2)
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("judges:version_detail", args=[project.slug, new.pk])
    assert (new.parent, new.change_note, new.system_template) == (version, "Stricter.", "Be strict.")


def test_a_new_version_without_a_change_note_is_refused(client, lead, project, judge, version, standin):
    client.force_login(lead)
    data = _editor()
    del data["criterion_key"], data["name"]
    response = client.post(reverse("judges:version_new", args=[project.slug, judge.pk]), data)
    assert response.status_code == 422 and JudgeVersion.objects.count() == 1


def test_the_template_check_shows_problems_and_the_literal_prompt(client, lead, project, standin):
    make_item(project, 1, input="{{ ''.__class__ }} {% debug %}")
    client.force_login(lead)
    data = {"system_template": "{{ nope }}", "user_template": "<input>{{ input }}</input> {{ ''.__class__ }}"}
    url = reverse("judges:template_check", args=[project.slug])
    fragment = client.post(url, data, headers=HX).content.decode()
    assert "Unknown placeholder {{ nope }}" in fragment and "<html" not in fragment
    assert (
        "&lt;input&gt;{{ &#x27;&#x27;.__class__ }} {% debug %}&lt;/input&gt; {{ &#x27;&#x27;.__class__ }}" in fragment
    )
    page = client.post(url, data).content.decode()
    assert "<html" in page and "Nothing was saved" in page


# --- Versions, runs, polling, cancel --------------------------------------------------------------------------


def test_the_version_page_shows_the_estimate_and_its_fragment_follows_the_scope(client, lead, project, version):
    for n in range(4):
        make_item(project, n, split="dev" if n < 3 else "test")
    client.force_login(lead)
    url = reverse("judges:version_detail", args=[project.slug, version.pk])
    page = client.get(url).content.decode()
    assert "<strong>3</strong> calls for 3 items" in page and "characters ÷ 4" in page
    assert "offline stand-in" in page and "test run #1" in page
    fragment = client.get(url + "?scope=all", headers=HX).content.decode()
    assert "<strong>4</strong> calls for 4 items" in fragment and "<html" not in fragment


def test_starting_a_run_redirects_to_its_page(client, lead, project, version):
    make_item(project, 1)
    client.force_login(lead)
    url = reverse("judges:run_start", args=[project.slug, version.pk])
    response = client.post(url, {"scope": "dev"})
    run = JudgeRun.objects.get()
    assert response["Location"] == reverse("judges:run_detail", args=[project.slug, run.pk])
    assert run.started_by == lead and run.scope == "dev"
    response = client.post(url, {"scope": "dev"}, headers=HX)
    assert response["HX-Redirect"].startswith(f"/p/{project.slug}/judges/runs/")


def test_a_run_on_test_without_the_confirmation_is_refused_and_with_it_counted(client, lead, project, version):
    make_item(project, 1, split="test")
    client.force_login(lead)
    url = reverse("judges:run_start", args=[project.slug, version.pk])
    refused = client.post(url, {"scope": "test"}, headers=HX)
    assert refused.status_code == 422 and "held out" in refused.content.decode()
    assert 'id="start"' in refused.content.decode() and not JudgeRun.objects.exists()
    client.post(url, {"scope": "test", "confirm_test": "on"})
    run = JudgeRun.objects.get()
    assert run.test_run_number == 1
    page = client.get(reverse("judges:run_detail", args=[project.slug, run.pk])).content.decode()
    assert "test run #1 of this judge" in page
    judge_page = client.get(reverse("judges:judge_detail", args=[project.slug, version.judge_id])).content.decode()
    assert "1 run on the test split" in judge_page


def test_the_run_page_polls_while_running_and_stops_when_done(client, lead, project, version, done_run):
    client.force_login(lead)
    url = reverse("judges:run_detail", args=[project.slug, done_run.pk])
    page = client.get(url).content.decode()
    assert "Judge vs humans" in page and "3 of 3 verdicts stored" in page
    assert "Calls made (cache misses)</dt><dd>3" in page and "Cache hits (free)</dt><dd>0" in page
    assert 'hx-trigger="every 1s"' not in page
    JudgeRun.objects.filter(pk=done_run.pk).update(status="running")
    fragment = client.get(url, headers=HX).content.decode()
    assert fragment.lstrip().startswith('<section class="card" id="progress"')
    assert 'hx-trigger="every 1s"' in fragment and "Cancel run" in fragment


def test_the_run_fragment_stays_within_its_query_budget(
    client, lead, project, version, done_run, django_assert_max_num_queries
):
    client.force_login(lead)
    url = reverse("judges:run_detail", args=[project.slug, done_run.pk])
    with django_assert_max_num_queries(8):
        client.get(url, headers=HX)


def test_invalid_answers_are_listed_with_their_raw_text(client, lead, project, version, standin):
    standin.configure(rate_garbage=1.0)
    make_item(project, 1)
    run = services.judge_run_start(version=version)
    services.judge_chunk_process(chunk_id=RunChunk.objects.get(run=run).pk)
    client.force_login(lead)
    page = client.get(reverse("judges:run_detail", args=[project.slug, run.pk]) + "?show=invalid").content.decode()
    assert "Invalid answers</dt><dd>1" in page and "I looked at this carefully" in page


def test_cancel_stops_the_run_and_answers_htmx_with_the_progress_fragment(client, lead, project, version):
    make_item(project, 1)
    run = services.judge_run_start(version=version)
    client.force_login(lead)
    url = reverse("judges:run_cancel", args=[project.slug, run.pk])
    fragment = client.post(url, headers=HX).content.decode()
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert 'id="progress"' in fragment and "Cancelled" in fragment and 'hx-trigger="every 1s"' not in fragment
    response = client.post(url)
    assert response.status_code == 302


def test_no_page_carries_inline_script_or_style(client, lead, project, version, done_run):
    client.force_login(lead)
    for method, url in _urls(project, version, done_run):
        if method == "get":
            page = client.get(url).content.decode()
            assert not re.search(r"<script(?![^>]*\bsrc=)", page), url
            assert " style=" not in page and "<style" not in page, url
            assert not re.search(r"\son[a-z]+\s*=", page), url
