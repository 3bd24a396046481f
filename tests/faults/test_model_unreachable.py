"""A model endpoint that answers slowly, not at all, or refuses connections: the run still finishes, with one
recorded outcome per item (a verdict, or a failed call with its short category), and nothing left hanging.
Single calls (429, 500, timeouts and connection errors retried) are tested in tests/judges/test_llm.py; here whole
runs go through, over real HTTP.
"""

from __future__ import annotations

import time

import pytest

from judges import selectors
from judges.models import JudgeRun, RunChunk, Verdict
from judges.services import judge_runs, run_chunks
from tests.faults.harness import free_port
from tests.judges.conftest import make_item, make_version

pytestmark = pytest.mark.django_db


def _run(version) -> JudgeRun:
    run = judge_runs.judge_run_start(version=version, scope="all")
    for chunk in RunChunk.objects.filter(run=run):
        run_chunks.judge_chunk_process(chunk_id=chunk.pk)
    run.refresh_from_db()
    return run


def _outcomes(run) -> dict[int, tuple[str, str]]:
    return {
        item: (status, error)
        for item, status, error in Verdict.objects.filter(run=run).values_list("item_id", "status", "error")
    }


def test_a_model_that_never_answers_in_time_gives_a_finished_run_with_every_call_recorded_as_timed_out(
    project, judge, standin, settings
):
    settings.JUDGE_STANDIN_TIMEOUT_SECONDS = 1
    settings.JUDGE_MAX_ATTEMPTS = 2
    standin.configure(rate_timeout=1.0, hang_ms=4000)
    items = [make_item(project, n) for n in range(4)]
    version = make_version(judge)
    started = time.monotonic()
    run = _run(version)
    took = time.monotonic() - started
    assert run.status == "done"
    assert _outcomes(run) == {item.pk: ("error", "timeout") for item in items}
    assert run.report["n_errors"] == 4 and run.report["n"] == 0
    assert selectors.run_totals(run=run).n_ok == 0
    assert took < 15  # two attempts of one second each, calls in parallel: the run did not wait for the hang


def test_a_slow_model_within_the_timeout_and_one_that_answers_only_some_calls_in_time_are_both_recorded(
    project, judge, standin, settings
):
    settings.JUDGE_STANDIN_TIMEOUT_SECONDS = 2
    settings.JUDGE_MAX_ATTEMPTS = 1
    standin.configure(latency_ms=600, rate_timeout=0.5, hang_ms=4000)
    items = [make_item(project, n) for n in range(12)]
    run = _run(make_version(judge))
    outcomes = _outcomes(run)
    assert run.status == "done" and set(outcomes) == {item.pk for item in items}
    kinds = set(outcomes.values())
    assert kinds == {("ok", ""), ("error", "timeout")}  # some of each: the hash of each message decides
    stats = standin.stats()
    assert sum(1 for o in outcomes.values() if o[0] == "ok") == stats["outcomes"]["ok"]
    assert sum(1 for o in outcomes.values() if o[0] == "error") == stats["outcomes"]["timeout"]


def test_a_model_endpoint_that_refuses_connections_gives_a_finished_run_with_every_call_recorded(
    project, judge, settings
):
    closed = free_port()  # nothing listens there
    settings.JUDGE_ENDPOINTS = [
        {"name": "down", "base_url": f"http://127.0.0.1:{closed}/v1", "max_concurrency": 4, "timeout": 2}
    ]
    settings.JUDGE_MAX_ATTEMPTS = 2
    settings.JUDGE_BACKOFF_BASE_MS = 5
    settings.JUDGE_BACKOFF_MAX_MS = 20
    items = [make_item(project, n) for n in range(5)]
    run = _run(make_version(judge, endpoint="down"))
    assert run.status == "done"
    assert _outcomes(run) == {item.pk: ("error", "connection error") for item in items}
    assert set(Verdict.objects.filter(run=run).values_list("attempts", flat=True)) == {2}
    assert run.report["n_errors"] == 5
