"""Judge runs against the stand-in model server: throughput at a concurrency limit, the cached re-run, and 429s.

Everything is real but the model: the stand-in (`python -m judges.standin`) answers over HTTP on loopback after a
fixed latency, a Celery worker subprocess (`python -m celery -A annotate worker`) consumes the run's chunks from
Redis and calls the stand-in through the OpenAI client with the shared Redis limiter, and verdicts go to PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.bench.run import ROOT, Row

N_CALLS = 2000
LATENCY_MS = 200
LIMIT = 32
IDEAL = N_CALLS * LATENCY_MS / 1000 / LIMIT  # 12.5 s
WORKER_PROCESSES = 2
# Nice steps below normal CPU priority for the worker, as docker/compose.yaml and Procfile.dev start it.
WORKER_NICE = 10


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _standin(port: int, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method="POST" if data else "GET")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@contextmanager
def _processes(port: int) -> Iterator[None]:
    """The stand-in and a Celery worker, as subprocesses; the worker's log goes to a temporary file."""
    env = {
        **os.environ,
        "JUDGE_STANDIN_PORT": str(port),
        "JUDGE_STANDIN_CONCURRENCY": str(LIMIT),
        "JUDGE_CHUNK_SIZE": "100",
    }
    standin = subprocess.Popen(
        [sys.executable, "-m", "judges.standin", "--port", str(port), "--latency-ms", str(LATENCY_MS)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    log = tempfile.NamedTemporaryFile("w+", prefix="bench-worker-", suffix=".log", delete=False)  # noqa: SIM115
    worker = subprocess.Popen(
        [
            # A lower CPU priority, as the worker's command has in production (docker/compose.yaml, Procfile.dev).
            "nice",
            "-n",
            str(WORKER_NICE),
            sys.executable,
            "-m",
            "celery",
            "-A",
            "annotate",
            "worker",
            f"--concurrency={WORKER_PROCESSES}",
            "--pool=prefork",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            f"--hostname=bench-judges-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        # A process group of its own, to stop it with its pool processes, in this session: where Linux shares the CPU
        # between sessions first (autogroup), nice orders the worker below gunicorn only within one session, as
        # compose's CPU shares do between the worker's and web's containers.
        process_group=0,
    )
    try:
        deadline = time.monotonic() + 60
        while "ready." not in Path(log.name).read_text():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the Celery worker did not start:\n" + Path(log.name).read_text()[-3000:])
            time.sleep(0.2)
        while True:
            try:
                _standin(port, "/_stats")
                break
            except OSError:
                time.sleep(0.1)
        yield
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        standin.terminate()
        for process in (worker, standin):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        Path(log.name).unlink(missing_ok=True)


def _run(version: Any, scope: str = "all") -> tuple[float, Any]:
    """Start a run and wait until it ends; the reconciler runs alongside, as beat would."""
    from judges.models import JudgeRun
    from judges.services import judge_runs

    start = time.perf_counter()
    # Every item, the held-out test split included (confirmed): a benchmark measures speed, not the judge.
    run = judge_runs.judge_run_start(version=version, scope=scope, confirm_test=True)
    last_reconcile = time.monotonic()
    while True:
        status = JudgeRun.objects.filter(pk=run.pk).values_list("status", flat=True).get()
        if status not in JudgeRun.ACTIVE:
            break
        if time.monotonic() - last_reconcile > 5:
            judge_runs.judge_runs_reconcile(stale_seconds=10)
            last_reconcile = time.monotonic()
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    run.refresh_from_db()
    return elapsed, run


def bench_judge_run() -> list[Row]:
    from django.conf import settings

    from annotate.celery import app
    from annotate.models import Item
    from annotate.services.items import item_build
    from judges import prompts, selectors
    from judges.models import Verdict
    from judges.services import judge_versions
    from tests.factories import ProjectFactory

    port = _free_port()
    settings.JUDGE_STANDIN_PORT = port
    settings.JUDGE_STANDIN_CONCURRENCY = LIMIT
    settings.JUDGE_CHUNK_SIZE = 100
    app.control.purge()

    project = ProjectFactory(slug="bench-judges")
    Item.objects.bulk_create(
        item_build(project=project, fields={"input": f"Question {i}?", "output": f"Answer {i}."})
        for i in range(N_CALLS)
    )
    judge = judge_versions.judge_create(project=project, criterion_key="acceptable")
    model = "standin-judge-2025-01-01"
    first = judge_versions.judge_version_create(
        judge=judge,
        system_template=prompts.DEFAULT_SYSTEM["binary"],
        user_template=prompts.DEFAULT_USER["binary"],
        endpoint="standin",
        model=model,
    )
    scale = f"{N_CALLS:,} calls, {LATENCY_MS} ms each, limit {LIMIT}, {WORKER_PROCESSES} worker processes"
    rows: list[Row] = []
    with _processes(port):
        seconds, run = _run(first)
        calls = _standin(port, "/_stats")["requests"]
        totals = selectors.run_totals(run=run)
        assert run.status == "done" and totals.n_ok == N_CALLS, (run.status, totals)
        rows += [
            Row("Judge run, cold cache", scale, "seconds", f"{seconds:.1f}", f"≤ {1.3 * IDEAL:.2f} (1.3 × ideal)"),
            Row("Judge run, cold cache", scale, "× ideal (12.5 s)", f"{seconds / IDEAL:.2f}", "≤ 1.30"),
            Row("Judge run, cold cache", scale, "calls to the model", f"{calls:,}", f"{N_CALLS:,}"),
        ]

        before = _standin(port, "/_stats")["requests"]
        seconds, run = _run(first)
        calls = _standin(port, "/_stats")["requests"] - before
        totals = selectors.run_totals(run=run)
        assert run.status == "done" and totals.cache_hits == N_CALLS, (run.status, totals)
        cached = "Judge run, same version again (cache)"
        rows += [
            Row(cached, f"{N_CALLS:,} verdicts", "seconds", f"{seconds:.2f}", "< 3"),
            Row(cached, f"{N_CALLS:,} verdicts", "calls to the model", str(calls), "0"),
        ]

        _standin(port, "/_control", {"rate_429": 0.1, "retry_after": 1})
        _standin(port, "/_reset", {})
        second = judge_versions.judge_version_create(
            judge=judge,
            system_template=prompts.DEFAULT_SYSTEM["binary"] + "\nBe strict.",
            user_template=prompts.DEFAULT_USER["binary"],
            endpoint="standin",
            model=model,
            parent=first,
            change_note="stricter",
        )
        seconds, run = _run(second)
        stats = _standin(port, "/_stats")
        stored = Verdict.objects.filter(run=run, status=Verdict.Status.OK).count()
        scale_429 = f"{N_CALLS:,} calls, 10% answered 429 (Retry-After: 1)"
        rows += [
            Row("Judge run with 429s", scale_429, "429s answered", f"{stats['outcomes'].get('429', 0):,}"),
            Row("Judge run with 429s", scale_429, "seconds", f"{seconds:.1f}"),
            Row("Judge run with 429s", scale_429, "verdicts stored", f"{stored:,} ({run.status})", f"{N_CALLS:,}"),
        ]
    return rows


DUPLICATE_ITEMS = 999


def bench_judge_duplicates() -> list[Row]:
    """A pairwise run over items whose prompts repeat in chunks that run at the same time: how many calls are paid.

    Item i shows the same question and answers as item i − 100 whenever i // 100 is odd, so chunk 1 (items 100–199)
    repeats chunk 0, chunk 3 repeats chunk 2, and so on; the two worker processes take chunks 0 and 1 together, then 2
    and 3, ... Every item is judged in both orders. Before single-flight (judges/single_flight.py) a prompt in flight
    in one chunk was paid again by the other."""
    from django.conf import settings

    from annotate.celery import app
    from annotate.models import Item
    from annotate.services.items import item_build
    from judges import prompts, selectors
    from judges.services import judge_versions
    from tests.factories import ProjectFactory

    port = _free_port()
    settings.JUDGE_STANDIN_PORT = port
    settings.JUDGE_STANDIN_CONCURRENCY = LIMIT
    settings.JUDGE_CHUNK_SIZE = 100
    app.control.purge()

    project = ProjectFactory(slug="bench-judges-duplicates", kind="pairwise")
    source = [i - 100 if (i // 100) % 2 else i for i in range(DUPLICATE_ITEMS)]
    Item.objects.bulk_create(
        item_build(
            project=project,
            fields={"input": f"Question {n}?", "output_a": f"Answer A {n}.", "output_b": f"Answer B {n}."},
            external_id=f"item-{i}",  # the same content twice: two items, told apart by their ids
        )
        for i, n in enumerate(source)
    )
    distinct_prompts = 2 * len(set(source))  # both orders of each distinct item
    judge = judge_versions.judge_create(project=project, criterion_key="acceptable")
    version = judge_versions.judge_version_create(
        judge=judge,
        system_template=prompts.DEFAULT_SYSTEM["pairwise"],
        user_template=prompts.DEFAULT_USER["pairwise"],
        endpoint="standin",
        model="standin-judge-2025-01-01",
    )
    scale = (
        f"{DUPLICATE_ITEMS} pairwise items × 2 orders, {distinct_prompts:,} distinct prompts, chunks of 100 repeating "
        f"the one before, {LATENCY_MS} ms a call, limit {LIMIT}, {WORKER_PROCESSES} worker processes"
    )
    with _processes(port):
        seconds, run = _run(version)
        stats = _standin(port, "/_stats")
    totals = selectors.run_totals(run=run)
    assert run.status == "done" and totals.n_ok == 2 * DUPLICATE_ITEMS, (run.status, totals)
    assert stats["distinct_answered"] == distinct_prompts, stats
    name = "Judge run over items with duplicate prompts (single-flight)"
    return [
        Row(name, scale, "calls to the model", f"{stats['requests']:,}", f"{distinct_prompts:,} (one per prompt)"),
        Row(name, scale, "prompts paid more than once", f"{stats['answered_more_than_once']:,}", "0"),
        Row(name, scale, "seconds", f"{seconds:.1f}"),
    ]


BENCHMARKS = [bench_judge_run, bench_judge_duplicates]
