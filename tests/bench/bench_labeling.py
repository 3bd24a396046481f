"""The annotator's round trip at scale: 1,000,000 items and 3,000,000 labels in PostgreSQL.

1. One annotator, in process: server time of "submit labels + render the next item" (htmx POST), median and p99,
   and the SQL statements it runs.
2. One annotator over real HTTP against gunicorn, one submit after another (issue 17's figure): the client's p50 and
   p95, and gunicorn's own time for the same requests.
3. 32 annotators over real HTTP against gunicorn for a fixed time: submissions per second, errors, and afterwards
   the labels counted against the successful responses (none lost, none duplicated, no item past its overlap).
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.bench.labeling_http import FORM, GUNICORN_ARGS, PASSWORD, Annotator, access_log, form_fields, gunicorn
from tests.bench.run import Row, _percentile
from tests.bench.seeding import copy_labels

# The scale; BENCH_LABEL_ITEMS makes a smaller run for trying settings quickly (not for the table).
N_ITEMS = int(os.environ.get("BENCH_LABEL_ITEMS", 1_000_000))
N_ANNOTATORS = 32
CONCURRENT_SECONDS = 30
# The single annotator over HTTP: submits measured after the first HTTP_WARMUP (the worker processes warm up).
HTTP_SUBMITS = 520
HTTP_WARMUP = 20


def seed(*, slug: str = "bench-labeling", n_items: int = N_ITEMS, n_annotators: int = N_ANNOTATORS + 1):
    """An active project of n_items items, the first half labeled by two of 20 seeded annotators on three criteria,
    written with COPY; the per-item counts set as the services would have left them. Returns the project and
    `n_annotators` fresh annotators (members, password PASSWORD, nothing labeled yet)."""
    n_complete = n_items // 2
    from django.contrib.auth.hashers import make_password
    from django.db import connection
    from django.utils import timezone

    from annotate import selectors
    from annotate.models import Membership, Project
    from annotate.services.projects import project_set_status
    from annotate.splits import content_hash, order_key, split_for
    from tests.factories import ProjectFactory, UserFactory, membership

    project = ProjectFactory(slug=slug, name=slug.replace("-", " ").capitalize(), overlap=2)
    project_set_status(project=project, status="active")
    project = Project.objects.get(pk=project.pk)
    criteria = list(selectors.criteria_of_version(project.current_rubric_id))
    seeded = [UserFactory(username=f"{slug}-seed-{i}") for i in range(20)]
    hashed = make_password(PASSWORD)
    annotators = [UserFactory(username=f"{slug}-annotator-{i}", password=None) for i in range(n_annotators)]
    for user in annotators:
        user.password = hashed
        user.save(update_fields=["password"])
        membership(user, project, Membership.Role.ANNOTATOR)
    now = timezone.now().isoformat()
    with connection.cursor() as cursor:
        with cursor.copy(
            "COPY annotate_item (project_id, external_id, input, output, output_a, output_b, metadata, source, split, "
            "content_hash, order_key, n_submitted, n_leased, priority, created_at) FROM STDIN"
        ) as copy:
            for i in range(n_items):
                external_id = f"item-{i}"
                text_in, text_out = f"Summarise ticket {i} in one sentence.", f"Ticket {i} asks for a refund."
                copy.write_row(
                    (
                        project.pk,
                        external_id,
                        text_in,
                        text_out,
                        "",
                        "",
                        "{}",
                        "import",
                        split_for(project.slug, external_id),
                        content_hash({"input": text_in, "output": text_out}),
                        order_key(project.slug, external_id),
                        2 if i < n_complete else 0,
                        0,
                        0,
                        now,
                    )
                )
        cursor.execute(
            "SELECT id FROM annotate_item WHERE project_id = %s ORDER BY id LIMIT %s", [project.pk, n_complete]
        )
        complete_ids = [row[0] for row in cursor.fetchall()]
        copy_labels(
            (item_id, c, seeded[(n + k) % len(seeded)].pk, "pass" if (item_id + k + c.position) % 4 else "fail")
            for n, item_id in enumerate(complete_ids)
            for k in range(2)
            for c in criteria
        )
        cursor.execute("ANALYZE")
    return project, annotators


def bench_submit_round_trip() -> list[Row]:
    from django.db import connection, reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from annotate.models import Label

    t0 = time.perf_counter()
    # One annotator for the in-process timing, one for the HTTP round trip, N_ANNOTATORS more for the concurrent run.
    project, annotators = seed(n_annotators=N_ANNOTATORS + 2)
    seed_seconds = time.perf_counter() - t0
    n_labels = Label.objects.filter(item__project=project).count()
    scale = f"{N_ITEMS:,} items, {n_labels:,} labels"

    client = Client()
    client.force_login(annotators[0])
    page = client.get(f"/p/{project.slug}/label/").content.decode()
    forms = re.findall(r'<form class="item-form".*?</form>', page, re.S)
    current, prefetched = form_fields(forms[0]), form_fields(forms[1])
    timings, statements = [], []
    for _ in range(400):
        reset_queries()
        with CaptureQueriesContext(connection) as captured:
            start = time.perf_counter()
            response = client.post(
                f"/p/{project.slug}/label/{current[0]}/",
                {**FORM, "form_key": current[1]},
                headers={"HX-Request": "true"},
            )
            timings.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.content[:300]
        statements.append(
            sum(1 for q in captured.captured_queries if q["sql"].strip().upper() not in {"BEGIN", "COMMIT"})
        )
        current, prefetched = prefetched, form_fields(response.content.decode())
    timings = timings[20:]  # the first requests warm the process caches
    rows = [
        Row(
            "Submit + next item, server time (1 annotator)",
            scale,
            "median ms",
            f"{statistics.median(timings):.1f}",
            "≤ 15",
        ),
        Row(
            "Submit + next item, server time (1 annotator)",
            scale,
            "p99 ms",
            f"{_percentile(timings, 0.99):.1f}",
            "≤ 50",
        ),
        Row("Submit + next item, SQL statements", scale, "statements (+ BEGIN/COMMIT)", str(max(statements)), "≤ 8"),
        Row("Seeding the labeling benchmark (COPY)", scale, "seconds", f"{seed_seconds:.0f}"),
    ]
    rows += _concurrent(project, annotators[2:], annotators[1], scale)
    return rows


def _one_over_http(port: int, username: str, slug: str, log: Path, scale: str) -> list[Row]:
    """One annotator submitting over HTTP, one request at a time, as issue 17 measures the round trip."""
    client = Annotator(port, username, slug)
    current, prefetched = client.start()
    latencies: list[float] = []
    for _ in range(HTTP_SUBMITS):
        assert current is not None, "the queue ran out"
        start = time.perf_counter()
        status, text = client.submit(current, prefetched)
        latencies.append((time.perf_counter() - start) * 1000)
        assert status == 200, (status, text[:200])
        current, prefetched = prefetched, form_fields(text)
    latencies = latencies[HTTP_WARMUP:]
    served = [line.ms for line in access_log(log) if line.method == "POST" and "/label/" in line.path][HTTP_WARMUP:]
    title = "Submit + next item over HTTP (1 annotator, one request at a time)"
    where = (
        f"{scale}; {len(latencies)} submits, gunicorn {' '.join(GUNICORN_ARGS)}; load average {os.getloadavg()[0]:.1f}"
    )
    return [
        Row(title, where, "client p50 ms", f"{statistics.median(latencies):.1f}", "≤ 8"),
        Row(title, where, "client p95 ms", f"{_percentile(latencies, 0.95):.1f}", "≤ 11"),
        Row(title, where, "gunicorn %(D)s p50 ms", f"{statistics.median(served):.1f}"),
    ]


def _concurrent(project, annotators, single, scale: str) -> list[Row]:
    from annotate.models import Item, Label

    log = Path(tempfile.mkdtemp()) / "access.log"
    with gunicorn(access_log=log) as server:
        port = server.port
        single_rows = _one_over_http(port, single.username, project.slug, log, scale)
        clients = [Annotator(port, u.username, project.slug) for u in annotators[:N_ANNOTATORS]]
        states = [c.start() for c in clients]
        ok = [0] * len(clients)
        errors: list[str] = []
        latencies: list[float] = []
        stop = time.monotonic() + CONCURRENT_SECONDS
        barrier = threading.Barrier(len(clients))

        def work(i: int) -> None:
            client, (current, prefetched) = clients[i], states[i]
            barrier.wait()
            while time.monotonic() < stop and current:
                start = time.perf_counter()
                try:
                    status, text = client.submit(current, prefetched)
                except OSError as exc:
                    errors.append(repr(exc))
                    return
                latencies.append((time.perf_counter() - start) * 1000)
                if status != 200:
                    errors.append(f"{status} {text[:120]}")
                    return
                ok[i] += 1
                current, prefetched = prefetched, form_fields(text)

        started = time.perf_counter()
        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(clients))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
    submitted = sum(ok)
    users = [a.pk for a in annotators[:N_ANNOTATORS]]
    stored = Label.objects.filter(item__project=project, annotator_id__in=users).count()
    over = Item.objects.filter(project=project, n_submitted__gt=project.overlap).count()
    per_item = Label.objects.filter(item__project=project).values("item_id", "annotator_id").distinct().count()
    n_bench = f"{len(clients)} annotators, {CONCURRENT_SECONDS} s, gunicorn {' '.join(GUNICORN_ARGS)}"
    return [
        *single_rows,
        Row(
            "Concurrent submissions over HTTP",
            f"{scale}; {n_bench}",
            "submissions/s",
            f"{submitted / elapsed:.0f}",
            "≥ 300",
        ),
        Row("Concurrent submissions over HTTP", n_bench, "p99 client ms", f"{_percentile(latencies, 0.99):.0f}"),
        Row("Concurrent submissions over HTTP", n_bench, "errors", str(len(errors)), "0"),
        Row(
            "Concurrent submissions over HTTP",
            n_bench,
            "keep-alive reconnects (request resent)",
            str(sum(c.reconnects for c in clients)),
        ),
        Row(
            "Concurrent submissions, labels counted after",
            n_bench,
            "stored / 3 × successful submits",
            f"{stored} / {3 * submitted}",
            "equal",
        ),
        Row("Concurrent submissions, items past their overlap", n_bench, "items", str(over), "0"),
        Row(
            "Concurrent submissions, (item, annotator) pairs",
            n_bench,
            "distinct pairs / labels ÷ 3",
            f"{per_item} / {Label.objects.filter(item__project=project).count() // 3}",
            "equal",
        ),
    ]


BENCHMARKS = [bench_submit_round_trip]

if __name__ == "__main__":  # pragma: no cover - run through tests.bench.run
    print("run with: python -m tests.bench.run bench_submit_round_trip", file=sys.stderr)
    Path()
