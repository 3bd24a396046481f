"""The judges pages: leads only (everyone else gets 404), htmx fragments, the editor, starting, polling, cancelling."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from judges.models import Judge, JudgeRun, JudgeVersion, RunChunk
from judges.services import judge_runs, judge_versions, run_chunks
from tests.judges.conftest import MODEL, make_item

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}
# What htmx 2 sends after a history-cache miss (the Back button): it shows the answer as the whole page.
RESTORE = {**HX, "HX-History-Restore-Request": "true"}


@pytest.fixture
def done_run(project, version, standin) -> JudgeRun:
    for n in range(3):
        make_item(project, n)
    run = judge_runs.judge_run_start(version=version)
    for chunk in RunChunk.objects.filter(run=run):
        run_chunks.judge_chunk_process(chunk_id=chunk.pk)
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
        ("get", reverse("judges:card_key", args=[slug])),
        ("post", reverse("judges:run_start", args=[slug, version.pk])),
        ("get", reverse("judges:run_detail", args=[slug, run.pk])),
        ("post", reverse("judges:run_cancel", args=[slug, run.pk])),
        ("get", reverse("judges:run_production", args=[slug, run.pk])),
        ("post", reverse("judges:judge_target", args=[slug, judge])),
        ("get", reverse("judges:monitor_settings", args=[slug, judge])),
        ("post", reverse("judges:monitor_settings", args=[slug, judge])),
        ("get", reverse("judges:compare", args=[slug]) + f"?a={run.pk}&b={run.pk}"),
        ("get", reverse("judges:mode_suggest", args=[slug])),
        ("post", reverse("judges:mode_suggest", args=[slug])),
        # No suggestion 0 anywhere: a lead gets 404 too (tests/judges/test_suggest.py applies real ones).
        ("post", reverse("judges:mode_suggest_apply", args=[slug, 0, 0])),
    ]


def test_every_judges_url_is_covered_here():
    from judges.urls import urlpatterns

    assert len(urlpatterns) == 17  # _urls lists each, with GET and POST where a view takes both


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
        if url.endswith(("/judges/", "/judges/new/", "/check/", "/card-key/", "/failure-modes/suggest/")):
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
    assert "Edit from here" in page and "test looked at 0×" in page
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
    make_item(project, 4, split="train")
    client.force_login(lead)
    url = reverse("judges:version_detail", args=[project.slug, version.pk])
    page = client.get(url).content.decode()
    assert "<strong>3</strong> calls for 3 items" in page and "characters ÷ 4" in page
    assert "offline stand-in" in page and "test run #1" in page
    fragment = client.get(url + "?scope=all", headers=HX).content.decode()
    # All items but the held-out test split, which a run includes only when confirmed.
    assert "<strong>4</strong> calls for 4 items, the held-out test split left out" in fragment
    assert "<html" not in fragment


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
    assert "test looked at 1×" in judge_page


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
    run = judge_runs.judge_run_start(version=version)
    run_chunks.judge_chunk_process(chunk_id=RunChunk.objects.get(run=run).pk)
    client.force_login(lead)
    page = client.get(reverse("judges:run_detail", args=[project.slug, run.pk]) + "?show=invalid").content.decode()
    assert "Invalid answers</dt><dd>1" in page and "I looked at this carefully" in page


def test_cancel_stops_the_run_and_answers_htmx_with_the_progress_fragment(client, lead, project, version):
    make_item(project, 1)
    run = judge_runs.judge_run_start(version=version)
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


# --- The judge report, targets, disagreements, comparison, model choice ----------------------------------------


def _run_now(version, scope: str = "dev") -> JudgeRun:
    run = judge_runs.judge_run_start(version=version, scope=scope, confirm_test=scope == "test")
    for chunk in RunChunk.objects.filter(run=run):
        run_chunks.judge_chunk_process(chunk_id=chunk.pk)
    run.refresh_from_db()
    return run


@pytest.fixture
def labeled(project, lead, annotator, other_annotator, standin):
    """Six dev items, the stand-in failing outputs that say WRONG. Humans: 0 fail (judge fails), 1 fail (judge
    passes: too lenient), 2 pass (judge fails: too strict), 3 pass (judge passes), 4 split 1–1 (no reference),
    5 pass by both annotators but a lead's gold label says fail (judge fails: agrees with gold)."""
    from annotate.models import GoldLabel
    from tests.factories import label

    standin.configure(rule="keyword")
    outputs = ["WRONG total.", "Fine.", "WRONG but fine.", "Correct.", "Maybe.", "WRONG date."]
    items = [make_item(project, n, output=text) for n, text in enumerate(outputs)]
    votes = {0: "ff", 1: "ff", 2: "pp", 3: "pp", 4: "pf", 5: "pp"}
    for n, pair in votes.items():
        value = {"p": "pass", "f": "fail"}
        label(items[n], annotator, "acceptable", value[pair[0]], note="<b>too vague</b>" if n == 1 else "")
        label(items[n], other_annotator, "acceptable", value[pair[1]])
    criterion = project.current_rubric.criteria.get(key="acceptable")
    GoldLabel.objects.create(item=items[5], criterion=criterion, value="fail", set_by=lead)
    return items


def test_the_report_states_split_reference_figures_charts_and_the_disagreements(
    client, lead, project, version, labeled
):
    run = _run_now(version)
    client.force_login(lead)
    page = client.get(reverse("judges:run_detail", args=[project.slug, run.pk])).content.decode()
    assert "Measured on the <strong>dev split</strong>: 5 items compared" in page
    assert "1 by a lead's <strong>gold</strong> label, 4 by a <strong>majority</strong> of two or more labels" in page
    assert 'class="chart chart-bars"' in page and 'class="chart chart-heatmap"' in page
    assert '<abbr title="True negative rate: of the items the humans failed' in page
    assert "No target set." in page
    # The disagreements are exactly the off-diagonal cells of the stored confusion matrix.
    confusion = run.report["confusion"]
    assert confusion == [[2, 1], [1, 1]]
    assert 'Disagreements <span class="badge">2</span>' in page
    cards = page.split('id="disagreements"')[1].split('aria-labelledby="verdicts-h"')[0]
    assert "<code>item-1</code>" in cards and "<code>item-2</code>" in cards and "<code>item-3</code>" not in cards
    # Each human label with its note, escaped; the judge's verdict and reasoning.
    assert "&lt;b&gt;too vague&lt;/b&gt;" in page and "<b>too vague</b>" not in page
    assert "ada-annotator" in page and "Stand-in rule &#x27;keyword&#x27;" in page


def test_disagreements_filter_by_kind_as_an_htmx_fragment_and_without_js(client, lead, project, version, labeled):
    run = _run_now(version)
    client.force_login(lead)
    url = reverse("judges:run_detail", args=[project.slug, run.pk])
    fragment = client.get(url + "?kind=lenient&part=disagreements", headers=HX).content.decode()
    assert fragment.lstrip().startswith('<div id="disagreements">') and "<html" not in fragment
    assert "<code>item-1</code>" in fragment and "<code>item-2</code>" not in fragment
    page = client.get(url + "?kind=strict").content.decode()
    cards = page.split('id="disagreements"')[1].split('aria-labelledby="verdicts-h"')[0]
    assert "<code>item-2</code>" in cards and "<code>item-1</code>" not in cards and "<html" in page


def test_a_target_gives_the_run_its_verdict_line_and_is_checked_by_the_form_and_postgres(
    client, lead, project, version, labeled
):
    from django.db import IntegrityError, transaction

    run = _run_now(version)
    judge = version.judge
    client.force_login(lead)
    target_url = reverse("judges:judge_target", args=[project.slug, judge.pk])
    refused = client.post(target_url, {"target": "tpr_tnr", "target_tpr": "0.9"}, headers=HX)
    assert refused.status_code == 422 and "This target needs a number here." in refused.content.decode()
    judge.refresh_from_db()
    assert judge.target == ""
    saved = client.post(target_url, {"target": "tpr_tnr", "target_tpr": "0.4", "target_tnr": "0.9"}, headers=HX)
    assert saved.status_code == 200 and "Target saved." in saved.content.decode()
    run_url = reverse("judges:run_detail", args=[project.slug, run.pk])
    page = client.get(run_url).content.decode()
    # TPR = 1/2 (items 2, 3), TNR = 2/3 (items 0, 1, 5).
    assert "<strong>Not yet:</strong> TNR 0.67 &lt; 0.90" in page
    assert "TPR <strong>0.50</strong> ≥ target 0.40" in page and "95% lower bound" in page
    assert "a figure meets its target when its point estimate does" in page
    client.post(target_url, {"target": "tpr_tnr", "target_tpr": "0.4", "target_tnr": "0.6"})
    assert "<strong>Calibrated on dev split</strong>" in client.get(run_url).content.decode()
    with pytest.raises(IntegrityError), transaction.atomic():
        Judge.objects.filter(pk=judge.pk).update(target_tnr=1.5)
    with pytest.raises(IntegrityError), transaction.atomic():
        Judge.objects.filter(pk=judge.pk).update(target="kappa", target_kappa=None)


def test_the_human_kappa_target_reads_the_stored_agreement_report(client, lead, project, version, labeled):
    from annotate import reports

    run = _run_now(version)
    judge_versions.judge_target_set(judge=version.judge, target="kappa_human", numbers={})
    client.force_login(lead)
    url = reverse("judges:run_detail", args=[project.slug, run.pk])
    assert "No human–human κ is stored for this criterion yet." in client.get(url).content.decode()
    stored = reports.report_refresh(project=project, force=True, n_boot=0)
    human = stored.data["criteria"]["acceptable"]["human"]["fleiss_kappa"]["value"]
    page = client.get(url).content.decode()
    assert f"&lt; target {human:.2f}" in page and "The target κ is the humans' own agreement" in page


@pytest.mark.parametrize(
    "page", ["judge_list", "judge_detail", "version_detail", "run", "run_disagreements", "compare", "compare_flips"]
)
def test_a_history_restore_gets_the_whole_page_where_htmx_alone_gets_the_fragment(
    client, lead, project, version, labeled, page
):
    run = _run_now(version)
    client.force_login(lead)
    slug, compare = project.slug, reverse("judges:compare", args=[project.slug]) + f"?a={run.pk}&b={run.pk}"
    url = {
        "judge_list": reverse("judges:judge_list", args=[slug]),
        "judge_detail": reverse("judges:judge_detail", args=[slug, version.judge_id]),
        "version_detail": reverse("judges:version_detail", args=[slug, version.pk]) + "?scope=all",
        "run": reverse("judges:run_detail", args=[slug, run.pk]),
        # The URLs the disagreement and flip filters push into the history, with the part htmx asks for.
        "run_disagreements": reverse("judges:run_detail", args=[slug, run.pk]) + "?kind=lenient&part=disagreements",
        "compare": compare,
        "compare_flips": compare + "&flip=broken&part=flips",
    }[page]
    fragment = client.get(url, headers=HX)
    assert fragment.status_code == 200 and "<html" not in fragment.content.decode()
    restored = client.get(url, headers=RESTORE)
    body = restored.content.decode()
    assert restored.status_code == 200 and "<html" in body and "</html>" in body
    assert _title(body) == _title(client.get(url).content.decode())


def _title(html: str) -> str:
    match = re.search(r"<title>(.*?)</title>", html, re.S)
    assert match, html[:200]
    return match.group(1)


def test_a_child_version_saved_and_run_on_dev_lands_on_the_comparison(client, lead, project, version, labeled):
    _run_now(version)
    client.force_login(lead)
    data = _editor(
        user_template="<input>{{ input }}</input><output>{{ output }} WRONG</output>",
        change_note="Everything fails",
        parent=str(version.pk),
        then="run",
    )
    del data["criterion_key"], data["name"]
    response = client.post(reverse("judges:version_new", args=[project.slug, version.judge_id]), data)
    child = JudgeVersion.objects.get(number=2)
    compare_url = reverse("judges:compare", args=[project.slug]) + f"?va={version.pk}&vb={child.pk}"
    assert response["Location"] == compare_url
    run = JudgeRun.objects.get(version=child)
    assert run.scope == "dev" and run.status == "queued"
    # While it runs, the comparison shows its progress and polls.
    waiting = client.get(compare_url).content.decode()
    assert 'hx-trigger="every 1s"' in waiting and "The comparison appears here when it is done" in waiting
    for chunk in RunChunk.objects.filter(run=run):
        run_chunks.judge_chunk_process(chunk_id=chunk.pk)
    refresh = client.get(compare_url + "&poll=1", headers=HX)
    assert refresh["HX-Refresh"] == "true"
    page = client.get(compare_url).content.decode()
    # Under v2 everything fails: item 1 (humans fail) is fixed, item 3 (humans pass) broken.
    assert '<span class="big">1</span> fixed' in page and '<span class="big">1</span> broken' in page
    assert "<code>item-1</code>" in page and 'class="chart chart-line"' in page
    broken = client.get(compare_url + "&flip=broken&part=flips", headers=HX).content.decode()
    assert (
        broken.lstrip().startswith('<div id="flips">')
        and "<code>item-3</code>" in broken
        and "<code>item-1</code>" not in broken
    )
    assert "v1 · run" in broken and "v2 · run" in broken


def test_compare_refuses_runs_of_different_judges_and_missing_runs(client, lead, project, version, labeled):
    run = _run_now(version)
    other = judge_versions.judge_create(project=project, criterion_key="factually_correct")
    from tests.judges.conftest import make_version

    other_run = _run_now(make_version(other))
    client.force_login(lead)
    url = reverse("judges:compare", args=[project.slug])
    assert client.get(url + f"?a={run.pk}&b={other_run.pk}").status_code == 404
    assert client.get(url).status_code == 404
    child = make_version(version.judge, change_note="x", parent=version)
    page = client.get(url + f"?va={version.pk}&vb={child.pk}").content.decode()
    assert "v2 has no run on the dev split yet." in page


def test_the_judge_page_picks_the_cheapest_model_that_meets_the_target(
    client, lead, project, version, labeled, settings
):
    from tests.judges.conftest import make_version

    settings.JUDGE_PRICES = {**settings.JUDGE_PRICES, "standin-small-2025-01-01": (0.1, 0.4)}
    _run_now(version)
    small = make_version(version.judge, model="standin-small-2025-01-01", change_note="Smaller model", parent=version)
    _run_now(small)
    judge_versions.judge_target_set(
        judge=version.judge, target="tpr_tnr", numbers={"target_tpr": 0.4, "target_tnr": 0.6}
    )
    client.force_login(lead)
    page = client.get(reverse("judges:judge_detail", args=[project.slug, version.judge_id])).content.decode()
    assert "Model choice: the same prompt on several models" in page and 'class="chart chart-scatter"' in page
    best = page.split('<tr class="best">')[1].split("</tr>")[0]
    assert "standin-small-2025-01-01" in best and "cheapest that meets the target" in best
    scatter = page.split('class="chart chart-scatter"')[1].split("</svg>")[0]
    assert "v2 standin-small-2025-01-01" in scatter and "cheapest that meets the target" in scatter
    assert 'class="chart chart-line"' in page  # alignment across versions


def test_every_page_of_a_judge_counts_the_looks_at_test_and_warns_after_the_first(
    client, lead, project, version, labeled
):
    make_item(project, 50, split="test")
    dev_run = _run_now(version)
    _run_now(version, "test")
    client.force_login(lead)
    slug, judge = project.slug, version.judge_id
    pages = [
        reverse("judges:judge_detail", args=[slug, judge]),
        reverse("judges:run_detail", args=[slug, dev_run.pk]),
        reverse("judges:version_new", args=[slug, judge]),
    ]
    for url in pages:
        assert "looked at once" in client.get(url).content.decode(), url
    _run_now(version, "test")
    for url in pages:
        assert "has been looked at 2 times" in client.get(url).content.decode(), url


def test_the_list_shows_each_judges_latest_alignment(client, lead, project, version, labeled):
    run = _run_now(version)
    client.force_login(lead)
    page = client.get(reverse("judges:judge_list", args=[project.slug])).content.decode()
    assert "Latest alignment per criterion" in page and f"v1 · #{run.pk}" in page
    assert "Acceptable: Cohen&#x27;s κ" in page


def test_pairwise_disagreements_include_answers_that_change_with_the_order(client, lead, standin):
    from annotate.models import Membership
    from tests.factories import ProjectFactory, label, membership
    from tests.judges.conftest import make_version

    pairwise = ProjectFactory(slug="duel", kind="pairwise")
    membership(lead, pairwise, Membership.Role.LEAD)
    standin.configure(rule="first")  # always the output shown first: inconsistent on every item
    item = make_item(pairwise, 1, input="Q1", output_a="One answer", output_b="Another answer")
    label(item, lead, "acceptable", "a", shown_order="ab")
    version = make_version(judge_versions.judge_create(project=pairwise, criterion_key="acceptable"))
    run = _run_now(version)
    client.force_login(lead)
    url = reverse("judges:run_detail", args=[pairwise.slug, run.pk])
    fragment = client.get(url + "?kind=order&part=disagreements", headers=HX).content.decode()
    assert "<code>item-1</code>" in fragment and "Inconsistent order" in fragment
    assert "A shown first" in fragment and "B shown first" in fragment
    page = client.get(url).content.decode()
    assert "Position consistency" in page and "Position bias" in page


def test_the_report_and_comparison_pages_stay_within_their_query_budgets(
    client, lead, project, version, labeled, django_assert_max_num_queries
):
    """A page of cards costs the same few queries whatever the number of items, labels or gold labels (labels_load
    counts the labels once to size its columns)."""
    first = _run_now(version)
    from tests.judges.conftest import make_version

    second = _run_now(make_version(version.judge, system_template="Be strict.", change_note="x", parent=version))
    client.force_login(lead)
    # 19 for the report and its cards, 8 for the bias probe (verdicts, reference labels, items: each read once).
    with django_assert_max_num_queries(27):
        client.get(reverse("judges:run_detail", args=[project.slug, first.pk]))
    with django_assert_max_num_queries(17):
        client.get(reverse("judges:compare", args=[project.slug]) + f"?a={first.pk}&b={second.pk}")


def test_a_judge_calibrated_under_an_older_rubric_is_flagged_stale_on_its_pages(client, lead, project, done_run):
    from annotate.services.rubrics import rubric_set_criteria

    judge = done_run.version.judge
    client.force_login(lead)
    page = client.get(reverse("judges:judge_detail", args=[project.slug, judge.pk])).content.decode()
    assert "Stale:" not in page
    assert ", current</span>" in client.get(reverse("judges:judge_list", args=[project.slug])).content.decode()

    criteria = [
        {
            "key": c.key,
            "name": c.name,
            "description": c.description + (" Changed." if c.key == judge.criterion_key else ""),
        }
        for c in project.current_rubric.criteria.order_by("position")
    ]
    rubric_set_criteria(project=project, criteria=criteria)
    page = client.get(reverse("judges:judge_detail", args=[project.slug, judge.pk])).content.decode()
    assert "Stale:" in page and "definition changed" in page
    listing = client.get(reverse("judges:judge_list", args=[project.slug])).content.decode()
    assert 'class="badge stale"' in listing
