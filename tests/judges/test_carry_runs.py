"""Judges after a rubric edit (issue 15): only the judge of the reworded criterion is stale, a judge of an unchanged
criterion measures the same against the carried labels, and a run on a criterion with no human labels under its
current definition warns before it starts (page and API) and its report says why its figures are empty."""

from __future__ import annotations

import copy

import pytest
from django.urls import reverse

from annotate import tokens
from annotate.services.rubrics import rubric_set_criteria
from judges.models import RunChunk
from judges.services import judge_runs, judge_versions, run_chunks
from judges.staleness import Reason, judge_staleness
from tests.factories import DEFAULT_CRITERIA, label
from tests.judges.conftest import make_item, make_version

pytestmark = pytest.mark.django_db


def _run_here(version, **kwargs):
    run = judge_runs.judge_run_start(version=version, **kwargs)
    for chunk in RunChunk.objects.filter(run=run).order_by("number"):
        run_chunks.judge_chunk_process(chunk_id=chunk.pk)
    run.refresh_from_db()
    return run


@pytest.fixture
def calibrated(project, lead, annotator, other_annotator, standin):
    """Six dev items labeled on every criterion by two annotators, and judges of two criteria run under v1."""
    standin.configure(rule="keyword")
    outputs = ["WRONG total.", "WRONG date.", "Correct.", "Correct too.", "Fine.", "Fine again."]
    items = [make_item(project, n, input=f"Question {n}?", output=text) for n, text in enumerate(outputs)]
    for n, item in enumerate(items):
        for key in ("acceptable", "follows_instructions", "factually_correct"):
            label(item, annotator, key, "fail" if n < 2 else "pass")
            label(item, other_annotator, key, "fail" if n in (0, 3) else "pass")
    versions = {}
    for key in ("acceptable", "factually_correct"):
        judge = judge_versions.judge_create(project=project, criterion_key=key, actor=lead)
        versions[key] = make_version(judge)
    runs = {key: _run_here(version) for key, version in versions.items()}
    criteria = copy.deepcopy(DEFAULT_CRITERIA)
    criteria[2]["description"] = "No factual or arithmetic error, checked against the source."
    rubric_set_criteria(project=project, criteria=criteria, actor=lead)
    project.refresh_from_db()
    return versions, runs


def test_only_the_judge_of_the_reworded_criterion_is_stale(project, calibrated):
    versions, _ = calibrated
    found = judge_staleness(project)
    factual, acceptable = found[versions["factually_correct"].judge_id], found[versions["acceptable"].judge_id]
    assert factual.reason == Reason.CRITERION_CHANGED and factual.stale
    assert acceptable.reason == Reason.RUBRIC_MOVED and not acceptable.stale


def test_a_judge_of_an_unchanged_criterion_measures_the_same_under_the_new_version(project, calibrated):
    versions, runs = calibrated
    again = _run_here(versions["acceptable"])
    assert again.rubric_version.number == 2
    before, after = runs["acceptable"].report, again.report
    assert after["n"] == before["n"] > 0 and after["confusion"] == before["confusion"]
    assert after["figures"]["accuracy"]["value"] == before["figures"]["accuracy"]["value"]
    assert after["criterion_defined_in"] == 1 and "empty_reason" not in after


def test_a_run_on_the_reworded_criterion_warns_before_it_starts_and_says_why_its_figures_are_empty(
    client, project, lead, calibrated
):
    versions, _ = calibrated
    client.force_login(lead)
    factual_page = client.get(
        reverse("judges:version_detail", args=[project.slug, versions["factually_correct"].pk])
    ).content.decode()
    assert "No human labels to compare with:" in factual_page
    assert "has no human labels under its current definition (since rubric v2)" in factual_page
    acceptable_page = client.get(
        reverse("judges:version_detail", args=[project.slug, versions["acceptable"].pk])
    ).content.decode()
    assert "No human labels to compare with:" not in acceptable_page

    _token, raw = tokens.token_create(user=lead, name="ci")
    started = client.post(
        f"/api/v1/projects/{project.slug}/judge-versions/{versions['factually_correct'].pk}/runs",
        {},
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert started.status_code == 201, started.content
    assert "no human labels under its current definition (since rubric v2)" in started.json()["warning"]
    for chunk in RunChunk.objects.filter(run_id=started.json()["id"]):
        run_chunks.judge_chunk_process(chunk_id=chunk.pk)
    run = versions["factually_correct"].runs.order_by("-id").first()
    assert run.report["n"] == 0 and run.report["criterion_defined_in"] == 2
    assert "no human labels under its current definition" in run.report["empty_reason"]
    page = client.get(reverse("judges:run_detail", args=[project.slug, run.pk])).content.decode()
    assert "No figures:" in page and "definition since v2" in page
