"""The load run of issue 9: 64 annotators labeling for 60 s while a judge run and an export proceed.

Everything is real and shares this machine's cores: PostgreSQL with 1,000,000 items (half of them already labeled by
two annotators on three criteria, written with COPY as bench_labeling does), gunicorn with the production options
(docker/Dockerfile), 64 browser-like sessions over HTTP (each logs in through the login form with its CSRF token,
opens the labeling page, posts the form's fields with its per-form key and takes the next item the answer renders),
a Celery worker and the stand-in model server answering a judge run over HTTP (bench_judges's processes), and a lead
downloading the project's export over HTTP, streamed.

Measured: errors; the submit round trip's server time from gunicorn's access log (%(D)s, microseconds from the parsed
request to the last byte written: Django's time and the socket's, not the wait for a free thread) and its client
time; submissions per second; the judge run's and the export's own times. Afterwards the labels are counted in
PostgreSQL: stored labels = criteria × successful submits, no item past its overlap, no (item, annotator) twice, and
every item's n_submitted equal to the annotators who labeled it.
"""

from __future__ import annotations

import os
import random
import re
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.bench import bench_judges
from tests.bench.bench_labeling import seed
from tests.bench.labeling_http import (
    GUNICORN_ARGS,
    PASSWORD,
    Annotator,
    Session,
    access_log,
    form_fields,
    gunicorn,
)
from tests.bench.run import Row, _percentile

# BENCH_LOAD_ITEMS / BENCH_LOAD_SECONDS make a smaller run for trying settings quickly (not for the table).
N_ITEMS = int(os.environ.get("BENCH_LOAD_ITEMS", 1_000_000))
SECONDS = int(os.environ.get("BENCH_LOAD_SECONDS", 60))
# A pause before each submit, as a person reading the item would take; 0 (the table's run) is a saturation test.
THINK_MS = int(os.environ.get("BENCH_LOAD_THINK_MS", 0))
# BENCH_LOAD_JUDGE=0 / BENCH_LOAD_EXPORT=0 leave out the judge run or the export, to see what each costs (not for the
# table: the run has both).
WITH_JUDGE = os.environ.get("BENCH_LOAD_JUDGE", "1") != "0"
WITH_EXPORT = os.environ.get("BENCH_LOAD_EXPORT", "1") != "0"
N_ANNOTATORS = 64
# The judge run: already-labeled items (what a lead judges to compare with people), with bench_judges's stand-in
# latency and concurrency limit: 6,400 calls × 200 ms / 32 at a time = 40 s at best, so it spans most of the window.
N_JUDGE = 6400
EXPORT_QUERY = "format=jsonl&min_labels=1"
SLUG = "bench-load"


def _judge_version(project: Any) -> Any:
    from judges import prompts
    from judges.services import judge_versions

    judge = judge_versions.judge_create(project=project, criterion_key="acceptable")
    return judge_versions.judge_version_create(
        judge=judge,
        system_template=prompts.DEFAULT_SYSTEM["binary"],
        user_template=prompts.DEFAULT_USER["binary"],
        endpoint="standin",
        model="standin-judge-2025-01-01",
    )


class _Background(threading.Thread):
    """A thread that records how long its job took and what it raised, for the table."""

    def __init__(self, job: Any) -> None:
        super().__init__(daemon=True)
        self.job = job
        self.seconds = 0.0
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        from django.db import connection

        start = time.perf_counter()
        try:
            self.result = self.job()
        except BaseException as exc:  # reported in the table and raised after the run
            self.error = exc
        finally:
            self.seconds = time.perf_counter() - start
            connection.close()


def _judge_job(version: Any, item_ids: list[int]) -> Any:
    """Start the run and wait for it to end; the reconciler runs alongside, as beat would."""
    from judges.models import JudgeRun
    from judges.services import judge_runs

    def job() -> Any:
        # The chosen items may include test ones (confirmed): a benchmark measures speed, not the judge.
        run = judge_runs.judge_run_start(
            version=version, scope=JudgeRun.Scope.ITEMS, item_ids=item_ids, confirm_test=True
        )
        last_reconcile = time.monotonic()
        while JudgeRun.objects.filter(pk=run.pk, status__in=JudgeRun.ACTIVE).exists():
            if time.monotonic() - last_reconcile > 5:
                judge_runs.judge_runs_reconcile(stale_seconds=10)
                last_reconcile = time.monotonic()
            time.sleep(0.25)
        run.refresh_from_db()
        return run

    return job


def _export_job(session: Session, slug: str) -> Any:
    """Download the export as a browser does, reading the stream as it comes; returns (status, bytes, lines)."""

    def job() -> tuple[int, int, int]:
        response = session.open("GET", f"/p/{slug}/export/download/?{EXPORT_QUERY}")
        size = lines = 0
        while block := response.read(65_536):
            size += len(block)
            lines += block.count(b"\n")
        return response.status, size, lines

    return job


def _p99(times: list[float]) -> str:
    return f"{_percentile(times, 0.99):.0f}" if times else "-"


def bench_load() -> list[Row]:
    from django.conf import settings
    from django.db import connection

    from annotate.celery import app
    from annotate.models import Item, Label, Membership
    from judges import selectors as judge_selectors
    from judges.models import Verdict
    from tests.factories import UserFactory, membership

    project, annotators = seed(slug=SLUG, n_items=N_ITEMS, n_annotators=N_ANNOTATORS)
    lead = UserFactory(username=f"{SLUG}-lead", password=PASSWORD)
    membership(lead, project, Membership.Role.LEAD)
    n_criteria = len(project.current_rubric.criteria.all())
    n_labels_before = Label.objects.filter(item__project=project).count()
    labeled_before = Item.objects.filter(project=project, n_submitted__gt=0).count()
    judged_ids = list(
        Item.objects.filter(project=project, n_submitted__gt=0).order_by("id").values_list("id", flat=True)[:N_JUDGE]
    )
    version = _judge_version(project)
    with connection.cursor() as cursor:
        # The state a long-running database is in, not the one a bulk COPY leaves: autovacuum has visited the tables
        # (hint bits, visibility map) and the seed's WAL is checkpointed, so neither lands inside the timed window.
        cursor.execute("VACUUM (ANALYZE) annotate_item, annotate_label")
        cursor.execute("CHECKPOINT")

    judge_port = bench_judges._free_port()
    settings.JUDGE_STANDIN_PORT = judge_port
    settings.JUDGE_STANDIN_CONCURRENCY = bench_judges.LIMIT
    settings.JUDGE_CHUNK_SIZE = 100
    app.control.purge()

    ok = [0] * N_ANNOTATORS
    errors: list[str] = []
    latencies: list[float] = []
    reconnects = 0
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "access.log"
        with bench_judges._processes(judge_port), gunicorn(access_log=log_path) as server:
            port = server.port
            clients = [Annotator(port, u.username, project.slug) for u in annotators]
            exporter = Session(port, lead.username, timeout=600)
            # Log in and open the labeling page, four at a time (each login checks a deliberately slow password
            # hash, and 64 at once would time out); not timed.
            states: list[Any] = [None] * N_ANNOTATORS
            gate = threading.Semaphore(4)

            def begin(i: int) -> None:
                with gate:
                    states[i] = clients[i].start()

            starters = [threading.Thread(target=begin, args=(i,)) for i in range(N_ANNOTATORS)]
            for t in starters:
                t.start()
            for t in starters:
                t.join()
            assert all(s and s[0] and s[1] for s in states), "an annotator found no items"
            for client in clients:
                # Idle while the others logged in, past gunicorn's keep-alive: open afresh, as a browser would.
                client.conn.close()
            exporter.login()

            barrier = threading.Barrier(N_ANNOTATORS + 1)
            stop = 0.0

            def work(i: int) -> None:
                client, (current, _prefetched) = clients[i], states[i]
                prefetched = _prefetched
                barrier.wait()
                while time.monotonic() < stop and current:
                    if THINK_MS:
                        time.sleep(random.uniform(0.5, 1.5) * THINK_MS / 1000)
                    start = time.perf_counter()
                    try:
                        status, text = client.submit(current, prefetched)
                    except OSError as exc:
                        errors.append(f"{client.username}: {exc!r}")
                        return
                    latencies.append((time.perf_counter() - start) * 1000)
                    if status != 200:
                        errors.append(f"{client.username}: {status} {text[:200]}")
                        return
                    ok[i] += 1
                    current, prefetched = prefetched, form_fields(text)
                if current is None:
                    errors.append(f"{client.username}: the queue gave no item")

            threads = [threading.Thread(target=work, args=(i,)) for i in range(N_ANNOTATORS)]
            for t in threads:
                t.start()
            judge = _Background(_judge_job(version, judged_ids))
            export = _Background(_export_job(exporter, project.slug))
            load_before = os.getloadavg()
            stop = time.monotonic() + SECONDS
            started = time.perf_counter()
            barrier.wait()
            if WITH_JUDGE:
                judge.start()
            if WITH_EXPORT:
                export.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - started
            load_after = os.getloadavg()
            for background in (judge, export):
                if background.ident is not None:
                    background.join(900)
            reconnects = sum(c.reconnects for c in clients)
        logged = access_log(log_path)

    for background in (judge, export):
        if background.is_alive():
            raise RuntimeError(f"{background.job} did not finish in 15 minutes")
        if background.error is not None:
            raise background.error

    submit_path = re.compile(rf"/p/{project.slug}/label/\d+/")
    submits = [line for line in logged if line.method == "POST" and submit_path.fullmatch(line.path)]
    server_ms = [line.ms for line in submits]
    # The export's line is written when its stream ends, in the process that streamed it: the submits logged before
    # it ran alongside the export, in that process or in the other.
    export_at = next((n for n, line in enumerate(logged) if "/export/download/" in line.path), len(logged))
    export_pid = logged[export_at].pid if export_at < len(logged) else None
    alongside = [line for line in logged[:export_at] if line.method == "POST" and submit_path.fullmatch(line.path)]
    same_process = [line.ms for line in alongside if line.pid == export_pid]
    other_process = [line.ms for line in alongside if line.pid != export_pid]
    after_export = [
        line.ms for line in logged[export_at:] if line.method == "POST" and submit_path.fullmatch(line.path)
    ]

    submitted = sum(ok)
    users = [a.pk for a in annotators]
    stored = Label.objects.filter(item__project=project, annotator_id__in=users).count()
    n_labels = Label.objects.filter(item__project=project).count()
    over = Item.objects.filter(project=project, n_submitted__gt=project.overlap).count()
    pairs = Label.objects.filter(item__project=project).values("item_id", "annotator_id").distinct().count()
    with connection.cursor() as cursor:
        # Every item's count against the labels themselves: a lost or doubled label shows here as a mismatch.
        cursor.execute(
            """
            SELECT count(*) FROM annotate_item i
            LEFT JOIN (
                SELECT item_id, count(DISTINCT annotator_id) AS n FROM annotate_label
                WHERE item_id IN (SELECT id FROM annotate_item WHERE project_id = %s) GROUP BY item_id
            ) l ON l.item_id = i.id
            WHERE i.project_id = %s AND i.n_submitted <> coalesce(l.n, 0)
            """,
            [project.pk, project.pk],
        )
        miscounted = cursor.fetchone()[0]
    run = judge.result
    if run is not None:
        totals = judge_selectors.run_totals(run=run)
        verdicts = Verdict.objects.filter(run=run)
        judged_items = verdicts.values("item_id").distinct().count()
    status, size, rows = export.result or (0, 0, 0)
    labeled_after = Item.objects.filter(project=project, n_submitted__gt=0).count()

    first_error = f" ({errors[0][:120]})".replace("|", "/").replace("\n", " ") if errors else ""
    scale = f"{N_ITEMS:,} items, {n_labels_before:,} labels"
    think = f" (think time {THINK_MS} ms)" if THINK_MS else ""
    setup = (
        f"{N_ANNOTATORS} annotators{think}, {SECONDS} s, gunicorn {' '.join(GUNICORN_ARGS)}; "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    title = "Load: submissions during a judge run and an export"
    judge_scale = (
        f"{N_JUDGE:,} calls, {bench_judges.LATENCY_MS} ms each, limit {bench_judges.LIMIT}, "
        f"{bench_judges.WORKER_PROCESSES} worker processes, during the load"
    )
    export_scale = (
        f"GET /p/{SLUG}/export/download/?{EXPORT_QUERY}, {rows:,} rows, {size / 2**20:.0f} MB, during the load"
    )
    alongside_rows = [
        Row(title, f"{scale}; {setup}", "submissions/s", f"{submitted / elapsed:.0f}"),
        Row(
            title,
            f"{submitted:,} submits",
            "errors seen by clients / non-200 submits in the access log",
            f"{len(errors)} / {sum(1 for line in submits if line.status != 200)}" + first_error,
            "0 / 0",
        ),
        Row(
            title,
            f"{len(server_ms):,} submits (gunicorn %(D)s)",
            "server median ms",
            f"{statistics.median(server_ms):.0f}",
        ),
        Row(
            title,
            f"{len(server_ms):,} submits (gunicorn %(D)s)",
            "server p99 ms",
            f"{_percentile(server_ms, 0.99):.0f}",
            "< 100",
        ),
        *[
            Row(title, f"{len(times):,} submits {where} (gunicorn %(D)s)", "server p99 ms", _p99(times))
            for where, times in (
                ("in the process streaming the export, while it streamed", same_process),
                ("in the other process(es), while the export streamed", other_process),
                ("after the export ended", after_export),
            )
        ],
        Row(
            title,
            f"{len(latencies):,} submits, as the client saw them",
            "client median ms",
            f"{statistics.median(latencies):.0f}",
        ),
        Row(
            title,
            f"{len(latencies):,} submits, as the client saw them",
            "client p99 ms",
            f"{_percentile(latencies, 0.99):.0f}",
        ),
        Row(title, "kept-alive connections the server closed", "requests resent (same form key)", str(reconnects)),
        Row(
            "Load: labels counted after",
            f"{n_criteria} criteria",
            "stored / criteria × successful submits",
            f"{stored:,} / {n_criteria * submitted:,}",
            "equal",
        ),
        Row("Load: labels counted after", "all items", "items past their overlap", str(over), "0"),
        Row(
            "Load: labels counted after",
            "all labels",
            "distinct (item, annotator) / labels ÷ criteria",
            f"{pairs:,} / {n_labels // n_criteria:,}",
            "equal",
        ),
        Row(
            "Load: labels counted after",
            "all items",
            "items whose n_submitted ≠ their annotators",
            str(miscounted),
            "0",
        ),
    ]
    judge_rows = (
        [
            Row(
                "Load: judge run alongside",
                judge_scale,
                "seconds",
                f"{judge.seconds:.1f}",
                f"ideal {N_JUDGE * bench_judges.LATENCY_MS / 1000 / bench_judges.LIMIT:.1f}",
            ),
            Row(
                "Load: judge run alongside",
                judge_scale,
                "verdicts ok / items judged / verdicts",
                f"{totals.n_ok:,} / {judged_items:,} / {verdicts.count():,} ({run.status})",
                f"{N_JUDGE:,} each, done",
            ),
        ]
        if run is not None
        else []
    )
    export_rows = (
        [
            Row("Load: export alongside", export_scale, "seconds", f"{export.seconds:.1f}"),
            Row("Load: export alongside", export_scale, "rows/s", f"{rows / export.seconds:,.0f}"),
            Row(
                "Load: export alongside",
                export_scale,
                "HTTP status; rows within labeled items before / after",
                f"{status}; {labeled_before:,} ≤ {rows:,} ≤ {labeled_after:,}",
                "200; yes",
            ),
        ]
        if WITH_EXPORT
        else []
    )
    return alongside_rows + judge_rows + export_rows


BENCHMARKS = [bench_load]
