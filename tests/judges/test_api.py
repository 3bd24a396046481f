"""The judges part of the token API: create versions, start, read and cancel runs; leads only, 404 for the rest."""

from __future__ import annotations

import pytest

from annotate import tokens
from judges.models import JudgeRun, JudgeVersion, RunChunk
from judges.services import judge_runs, run_chunks
from tests.judges.conftest import MODEL, make_item

pytestmark = pytest.mark.django_db


def _auth(user) -> dict[str, str]:
    _token, raw = tokens.token_create(user=user, name="ci")
    return {"Authorization": f"Bearer {raw}"}


def _version_body(**overrides):
    return {
        "user_template": "<input>{{ input }}</input><output>{{ output }}</output>",
        "endpoint": "standin",
        "model": MODEL,
    } | overrides


def test_a_lead_creates_a_version_starts_a_run_and_reads_its_report(client, lead, project, judge, standin):
    make_item(project, 1)
    headers = _auth(lead)
    base = f"/api/v1/projects/{project.slug}"
    created = client.post(
        f"{base}/judges/{judge.pk}/versions", _version_body(), content_type="application/json", headers=headers
    )
    assert created.status_code == 201, created.content
    version = created.json()
    assert (version["number"], version["model_is_alias"], version["offline_standin"]) == (1, False, True)
    started = client.post(
        f"{base}/judge-versions/{version['id']}/runs", {}, content_type="application/json", headers=headers
    )
    assert started.status_code == 201, started.content
    run = started.json()
    assert (run["status"], run["scope"], run["n_calls"], run["report"]) == ("queued", "dev", 1, None)
    for chunk in RunChunk.objects.filter(run_id=run["id"]):
        run_chunks.judge_chunk_process(chunk_id=chunk.pk)
    read = client.get(f"{base}/judge-runs/{run['id']}", headers=headers).json()
    assert (read["status"], read["n_verdicts"], read["calls_made"], read["report"]["n_items"]) == ("done", 1, 1, 1)


def test_refusals_name_every_problem(client, lead, project, judge, standin):
    make_item(project, 1, split="test")
    headers = _auth(lead)
    base = f"/api/v1/projects/{project.slug}"
    refused = client.post(
        f"{base}/judges/{judge.pk}/versions",
        _version_body(model="gpt-4o", user_template="{{ nope }}"),
        content_type="application/json",
        headers=headers,
    )
    assert refused.status_code == 400
    messages = [e["message"] for e in refused.json()["errors"]]
    assert any("floating alias" in m for m in messages) and any("{{ nope }}" in m for m in messages)
    version = client.post(
        f"{base}/judges/{judge.pk}/versions", _version_body(), content_type="application/json", headers=headers
    ).json()
    url = f"{base}/judge-versions/{version['id']}/runs"
    test_refused = client.post(url, {"scope": "test"}, content_type="application/json", headers=headers)
    assert test_refused.status_code == 400 and "held out" in test_refused.json()["detail"]
    confirmed = client.post(
        url, {"scope": "test", "confirm_test": True}, content_type="application/json", headers=headers
    )
    assert confirmed.json()["test_run_number"] == 1


def test_annotators_and_outsiders_get_404(client, annotator, outsider, project, judge, version, standin):
    make_item(project, 1)
    run = judge_runs.judge_run_start(version=version)
    base = f"/api/v1/projects/{project.slug}"
    for user in (annotator, outsider):
        headers = _auth(user)
        calls = [
            client.post(
                f"{base}/judges/{judge.pk}/versions", _version_body(), content_type="application/json", headers=headers
            ),
            client.post(
                f"{base}/judge-versions/{version.pk}/runs", {}, content_type="application/json", headers=headers
            ),
            client.get(f"{base}/judge-runs/{run.pk}", headers=headers),
            client.post(f"{base}/judge-runs/{run.pk}/cancel", headers=headers),
        ]
        assert [c.status_code for c in calls] == [404, 404, 404, 404], user.username
    assert JudgeVersion.objects.count() == 1 and JudgeRun.objects.get().status == "queued"


def test_without_a_token_the_api_answers_401(client, project, judge):
    response = client.get(f"/api/v1/projects/{project.slug}/judge-runs/1")
    assert response.status_code == 401


def test_a_lead_cancels_a_run(client, lead, project, version, standin):
    make_item(project, 1)
    run = judge_runs.judge_run_start(version=version)
    response = client.post(f"/api/v1/projects/{project.slug}/judge-runs/{run.pk}/cancel", headers=_auth(lead))
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
