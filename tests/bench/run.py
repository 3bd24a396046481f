"""`make bench`: run the benchmarks against a fresh PostgreSQL database and write docs/benchmarks.md.

`make bench` runs them all and rewrites docs/benchmarks.md; `python -m tests.bench.run bench_name ...` runs the named
ones only and replaces just their rows there (the other rows stay from the last full run). A feature area adds
its benchmarks as `BENCHMARKS = [fn, ...]` in a `tests/bench/bench_<area>.py` module; each fn returns `Row`s.

Benchmarks are not tests: they measure, on this machine, the figures the issues name. Each section of the table says
what was measured and at which scale, so a later run can be compared line by line.
"""

from __future__ import annotations

import atexit
import datetime as dt
import importlib
import os
import pkgutil
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench.seeding import copy_labels, spread_value

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Row:
    benchmark: str
    scale: str
    figure: str
    value: str
    target: str = ""


def fresh_database(admin: str, name: str) -> Callable[[], None]:
    """Create the database `name` on the server of the connection URL `admin` (dropping one an earlier run left);
    returns what drops it again."""
    import psycopg
    import psycopg.sql

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name))
            )

    drop()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    return drop


def _bench_database() -> str:
    """A fresh database beside the configured one, so benchmarks never touch real data."""
    base = os.environ["DATABASE_URL"]
    # One database per run, so two runs on one machine never drop each other's data; dropped again at exit.
    name = base.rsplit("/", 1)[1].split("?")[0] + f"_bench_{os.getpid()}"
    atexit.register(fresh_database(base.rsplit("/", 1)[0] + "/postgres", name))
    return base.rsplit("/", 1)[0] + "/" + name


def _setup_django() -> None:
    os.environ["DATABASE_URL"] = _bench_database()
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotate.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- Foundation benchmarks ------------------------------------------------------------------------------------


def bench_split_assignment() -> list[Row]:
    from annotate.splits import split_for

    n = 1_000_000
    start = time.perf_counter()
    for i in range(n):
        split_for("bench-project", f"item-{i}")
    elapsed = time.perf_counter() - start
    return [Row("Split assignment (pure)", f"{n:,} ids", "ids/s", f"{n / elapsed:,.0f}")]


def bench_item_insert() -> list[Row]:
    """Build items through the service (hash + split) and bulk-insert them: the floor under every import."""
    from annotate.models import Item
    from annotate.services.items import item_build
    from tests.factories import ProjectFactory

    project = ProjectFactory(slug="bench-insert", kind="pairwise")

    n = 100_000
    start = time.perf_counter()
    batch: list[Item] = []
    for i in range(n):
        batch.append(
            item_build(
                project=project,
                fields={"input": f"Question {i}?", "output_a": f"Answer A {i}.", "output_b": f"Answer B {i}."},
            )
        )
        if len(batch) == 5000:
            Item.objects.bulk_create(batch)
            batch = []
    Item.objects.bulk_create(batch)
    elapsed = time.perf_counter() - start
    assert Item.objects.filter(project=project).count() == n
    return [Row("Item build + bulk insert (Postgres)", f"{n:,} pairwise items", "rows/s", f"{n / elapsed:,.0f}")]


def _seed_labels(project: Any, n_items: int, annotators: list[Any]) -> None:
    """n_items items, each labeled on every criterion by `overlap` annotators, inserted with COPY."""

    from annotate import selectors
    from annotate.models import Item
    from annotate.services.items import item_build

    items = [
        item_build(project=project, fields={"input": f"Prompt {i}", "output": f"Response {i}"}) for i in range(n_items)
    ]
    Item.objects.bulk_create(items, batch_size=5000)
    criteria = list(selectors.criteria_current(project=project))
    item_ids = list(Item.objects.filter(project=project).values_list("id", flat=True))
    copy_labels(
        (
            item_id,
            criterion,
            annotators[(n + k) % len(annotators)].id,
            spread_value(item_id * 7 + k + criterion.position),
        )
        for n, item_id in enumerate(item_ids)
        for k in range(project.overlap)
        for criterion in criteria
    )


def _seed_recent_labels(project: Any, n_items: int, annotators: list[Any]) -> int:
    """n_items new items, each labeled on every criterion by one annotator "now", with COPY: the labels given since
    the last throughput pass, which the dashboard counts itself. Returns how many labels."""

    from annotate import selectors
    from annotate.models import Item
    from annotate.services.items import item_build

    items = Item.objects.bulk_create(
        [item_build(project=project, fields={"input": f"Recent {i}", "output": f"Answer {i}"}) for i in range(n_items)],
        batch_size=5000,
    )
    criteria = list(selectors.criteria_current(project=project))
    return copy_labels(
        (item.pk, criterion, annotators[n % len(annotators)].id, "pass")
        for n, item in enumerate(items)
        for criterion in criteria
    )


def bench_project_page() -> list[Row]:
    """Server time of the project page as a lead sees it (the dashboard: progress, stored agreement with its chart,
    adjudication queue, throughput, judges with their staleness) on a project with 1,000,000 labels.

    Every label is given "now" by the seed, so the throughput window holds all 1,000,000 of them: the worst case for
    the throughput read. Nothing of the page is cached: throughput reads the per-day counts stored by the beat pass
    (annotate.throughput) plus the labels given since that pass, which the seed adds after it (a few minutes of a
    busy team's labeling), so every load is the cold path. The "cold" row also drops the session's cache entry (the page
    caches nothing else) and the process's criteria memo before each load.
    """
    from django.core.cache import cache
    from django.db import connection, reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from annotate import reports, selectors, throughput
    from annotate.models import Label, Membership, ThroughputWatermark
    from judges import prompts
    from judges.services import judge_versions
    from tests.factories import ProjectFactory, UserFactory, membership

    project = ProjectFactory(slug="bench-page", overlap=3)
    annotators = [UserFactory(username=f"bench-annotator-{i}") for i in range(20)]
    lead = UserFactory(username="bench-lead")
    membership(lead, project, Membership.Role.LEAD)
    n_items = 111_112
    _seed_labels(project, n_items, annotators)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE annotate_label")
        cursor.execute("ANALYZE")
    project.refresh_from_db()
    reports.report_refresh(project=project, force=True)
    for key in ("acceptable", "follows_instructions", "factually_correct"):
        judge = judge_versions.judge_create(project=project, criterion_key=key, actor=lead)
        judge_versions.judge_version_create(
            judge=judge,
            system_template=prompts.DEFAULT_SYSTEM[project.kind],
            user_template=prompts.DEFAULT_USER[project.kind],
            endpoint="standin",
            model="standin-judge-2024-01-01",
        )
    start = time.perf_counter()
    backfilled = throughput.throughput_count_pass(project=project)
    backfill_ms = (time.perf_counter() - start) * 1000
    n_recent = _seed_recent_labels(project, 1_700, annotators)
    counted_through = ThroughputWatermark.objects.get(project=project).counted_through
    assert Label.objects.filter(id__gt=counted_through).count() == n_recent
    client = Client()
    client.force_login(lead)
    url = f"/p/{project.slug}/"
    assert b"Annotators' throughput" in client.get(url).content
    flow = selectors.throughput(project=project)
    assert flow.total_14 == backfilled + n_recent, (flow.total_14, backfilled, n_recent)
    timings = []
    for _ in range(15):
        reset_queries()
        start = time.perf_counter()
        response = client.get(url)
        timings.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200
    cold = []
    for _ in range(5):
        cache.delete(client.session.cache_key)  # type: ignore[attr-defined]  # the cached_db session's entry
        selectors._CRITERIA_CACHE.clear()
        start = time.perf_counter()
        response = client.get(url)
        cold.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    flow_ms = []
    for _ in range(15):
        start = time.perf_counter()
        selectors.throughput(project=project)
        flow_ms.append((time.perf_counter() - start) * 1000)
    start = time.perf_counter()
    assert throughput.throughput_count_pass(project=project) == n_recent
    pass_ms = (time.perf_counter() - start) * 1000
    scale = f"{n_items:,} items, {n_items * 9 + n_recent:,} labels"
    recent = f"{n_recent:,} given since the last throughput pass"
    return [
        Row(
            "Project page (lead dashboard), server time",
            f"{scale}, all in the 14-day window, {recent}",
            "median ms",
            f"{statistics.median(timings):.0f}",
            "< 300",
        ),
        Row("Project page (lead dashboard), server time", scale, "p99 ms", f"{_percentile(timings, 0.99):.0f}"),
        Row(
            "Project page (lead dashboard), cold: session cache entry and criteria memo dropped before each load",
            f"{scale}, {recent}",
            "median ms (5 loads)",
            f"{statistics.median(cold):.0f}",
            "< 300",
        ),
        Row("Project page (lead dashboard), SQL queries", scale, "queries", str(len(queries))),
        Row(
            "Throughput read alone (stored counts + labels since the last pass)",
            f"{scale}, {recent}",
            "median ms",
            f"{statistics.median(flow_ms):.0f}",
        ),
        Row(
            "Throughput counts, first beat pass (counts every label of the project)",
            f"{backfilled:,} labels",
            "ms",
            f"{backfill_ms:.0f}",
        ),
        Row("Throughput counts, a beat pass after a busy spell", f"{n_recent:,} new labels", "ms", f"{pass_ms:.0f}"),
    ]


SUITE = "Whole test suite (pytest)"


def bench_test_suite() -> list[Row]:
    """How long `pytest` takes: the issue asks for a suite that stays under 10 minutes in CI."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "DATABASE_URL": os.environ["ORIGINAL_DATABASE_URL"]},
        check=False,
    )
    elapsed = time.perf_counter() - start
    lines = result.stdout.strip().splitlines()
    summary = (lines or ["(no output)"])[-1].strip("= ")
    # A failure is named in the table (the test ids pytest lists), and the whole output kept beside it.
    failed = [line.split(" - ")[0].removeprefix("FAILED ") for line in lines if line.startswith(("FAILED ", "ERROR "))]
    if failed:
        summary += ": " + ", ".join(failed)
    log = ROOT / "var" / "bench-pytest.log"
    log.parent.mkdir(exist_ok=True)
    log.write_text(result.stdout + result.stderr)
    return [Row(SUITE, summary, "seconds", f"{elapsed:.0f}", "< 600")]


BENCHMARKS: list[Callable[[], list[Row]]] = [
    bench_split_assignment,
    bench_item_insert,
    bench_project_page,
    bench_test_suite,
]


WRITTEN_BY = (
    "Written by `make bench` (tests/bench/run.py); do not edit by hand. Each full run replaces this file; a run of "
    "named benchmarks replaces their rows."
)


def _write_partial(path: Path, rows: list[Row], seconds: float, names: list[str], commit: str) -> Path:
    """A run of some benchmarks only: their rows replace the rows of the same benchmarks in the file (in place, or
    after the others when new) and a line says so; every other row stays as the last full run wrote it."""
    lines = path.read_text().splitlines()
    header_end = next(n for n, line in enumerate(lines) if line.startswith("| --- "))
    head = [line for line in lines[: header_end - 1] if line.strip()]
    table = lines[header_end + 1 :]
    replaced = {r.benchmark for r in rows}
    fresh = [f"| {r.benchmark} | {r.scale} | {r.figure} | {r.value} | {r.target} |" for r in rows]
    kept: list[str] = []
    for line in table:
        if line.startswith("| ") and line.split(" | ")[0].removeprefix("| ") in replaced:
            kept += fresh
            fresh = []
        elif line.strip():
            kept.append(line)
    note = (
        f"- Partial run: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit `{commit or 'uncommitted'}`, "
        f"{seconds:.0f} s: {', '.join(names)} (`python -m tests.bench.run {' '.join(names)}`); their rows replaced"
    )
    same = f": {', '.join(names)} ("
    head = [line for line in head if not (line.startswith("- Partial run:") and same in line)] + [note]
    # Rows new to the file go before the whole test suite's, which runs last.
    last = next((n for n, line in enumerate(kept) if line.startswith(f"| {SUITE} |")), len(kept))
    kept[last:last] = fresh
    out = [head[0], "", WRITTEN_BY, "", *head[2:], "", *lines[header_end - 1 : header_end + 1], *kept]
    path.write_text("\n".join(out) + "\n")
    return path


def _write(rows: list[Row], seconds: float, only: list[str] | None = None) -> Path:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    path = ROOT / "docs" / "benchmarks.md"
    if only and path.exists():
        return _write_partial(path, rows, seconds, only, commit)
    lines = [
        "# Benchmarks",
        "",
        WRITTEN_BY,
        "",
        f"- Run: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit `{commit or 'uncommitted'}`, "
        f"{seconds:.0f} s in all",
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"PostgreSQL and Redis on loopback",
        f"- Peak RSS of the benchmark process: {_peak_rss_mb():.0f} MB",
        "",
        "| Benchmark | Scale | Figure | Value | Target |",
        "| --- | --- | --- | ---: | --- |",
    ]
    lines += [f"| {r.benchmark} | {r.scale} | {r.figure} | {r.value} | {r.target} |" for r in rows]
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _all_benchmarks() -> list[Callable[[], list[Row]]]:
    """This file's benchmarks, then BENCHMARKS from every tests/bench/bench_*.py module (one per feature area)."""
    found = list(BENCHMARKS[:-1])
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
        if info.name.startswith("bench_"):
            found += importlib.import_module(f"tests.bench.{info.name}").BENCHMARKS
    return [*found, BENCHMARKS[-1]]  # the whole test suite runs last


def main() -> int:
    os.environ["ORIGINAL_DATABASE_URL"] = os.environ["DATABASE_URL"]
    _setup_django()
    start = time.perf_counter()
    rows: list[Row] = []
    only = set(sys.argv[1:])
    for bench in _all_benchmarks():
        if only and bench.__name__ not in only:
            continue
        t0 = time.perf_counter()
        print(f"bench: {bench.__name__} ...", flush=True)
        new = bench()
        rows += new
        for row in new:
            print(f"  {row.benchmark} [{row.scale}] {row.figure}: {row.value}", flush=True)
        print(f"  ({time.perf_counter() - t0:.1f} s)", flush=True)
    path = _write(rows, time.perf_counter() - start, sorted(only))
    print(f"bench: wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
