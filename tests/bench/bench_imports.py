"""Import speed: 100,000 pairwise items from JSON Lines through `manage.py import_items` (its own process, start-up
included, bytecode compiled beforehand as in the Docker image), twice; the same rows through the token API in batches
of API_MAX_BATCH; the peak memory of the command on a file of about 1 GB; and, when Label Studio is installed (or one
is running: tests/bench/label_studio.py), Label Studio's own import of the same rows."""

from __future__ import annotations

import gc
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.bench import peak_rss
from tests.bench.bench_exports import _bytecode_env
from tests.bench.label_studio import SKIPPED, label_studio
from tests.bench.run import ROOT, Row

_WORDS = (
    "the",
    "model",
    "answer",
    "user",
    "question",
    "because",
    "however",
    "therefore",
    "policy",
    "refund",
    "order",
    "account",
    "shipping",
    "delay",
    "please",
    "thanks",
    "sorry",
    "issue",
    "ticket",
    "agent",
    "customer",
    "product",
    "feature",
    "update",
    "version",
    "error",
    "retry",
)


def _write_pairwise(path: Path, n: int, seed: int) -> int:
    """n distinct pairwise rows of realistic size (input ~300 characters, outputs ~400 each, small metadata)."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            words = rng.choices(_WORDS, k=150)
            row = {
                "external_id": f"conv-{seed}-{i}",
                "input": f"Question {i}: " + " ".join(words[:45]),
                "output_a": f"Answer A to {i}. " + " ".join(words[45:105]),
                "output_b": f"Answer B to {i}. " + " ".join(words[90:150]),
                "metadata": {"model_a": "gpt-small", "model_b": "gpt-large", "trace": i},
            }
            f.write(json.dumps(row) + "\n")
    return path.stat().st_size


def _command(slug: str, path: Path, env: dict[str, str]) -> tuple[float, float, float, str]:
    """Run the import command in its own process; return (seconds, its CPU seconds, its peak RSS in MB, its output).

    The CPU seconds are the command's own (user + system, its COPY thread included), not the database's: on a shared
    machine they vary far less than the wall time."""
    rss = path.with_name(path.name + ".peak-rss")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    command = [sys.executable, "-m", "tests.bench.peak_rss", str(rss), "manage.py", "import_items", slug]
    proc = subprocess.run([*command, str(path), "--no-progress"], cwd=ROOT, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"the import command failed: {proc.stderr[-2000:]}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return elapsed, cpu, peak_rss.peak_mb(rss), proc.stdout


def _batches(path: Path, size: int) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    with path.open("rb") as f:
        for line in f:
            batch.append(line.rstrip(b"\n"))
            if len(batch) == size:
                yield batch
                batch = []
    if batch:
        yield batch


def _api_import(slug: str, path: Path, raw_token: str) -> tuple[float, float, str]:
    """POST the file's rows to the items endpoint in batches of API_MAX_BATCH through Django's whole request stack
    (middleware, body limit, parser, schema, import); return (server seconds, this process's CPU seconds meanwhile,
    what went wrong or "")."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    headers = {"Authorization": f"Bearer {raw_token}"}
    # One request first, untimed: a running server has loaded its URL modules (and what they import) before a
    # pipeline pushes to it; the first request of this process would otherwise count that loading as import time.
    assert client.get(f"/api/v1/projects/{slug}", headers=headers).status_code == 200
    # As annotate/wsgi.py does once the application is loaded: what is loaded by now lives as long as the process,
    # and the server's cyclic collector does not walk it. Unfrozen, each full collection here walked this process's
    # own objects too (the benchmarks' data, the test factories): 150 ms each, 0.3 s of 100,000 rows.
    gc.freeze()
    elapsed = cpu = 0.0
    for batch in _batches(path, int(settings.API_MAX_BATCH)):
        body = b'{"items": [' + b",".join(batch) + b"]}"
        start, start_cpu = time.perf_counter(), time.process_time()
        response = client.post(f"/api/v1/projects/{slug}/items", body, content_type="application/json", headers=headers)
        elapsed += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        if response.status_code != 200:
            problem = f"HTTP {response.status_code} for a batch of {len(batch):,} ({len(body) / 1e6:.1f} MB)"
            gc.unfreeze()
            return elapsed, cpu, problem
    gc.unfreeze()
    return elapsed, cpu, ""


def bench_import_items() -> list[Row]:
    from django.conf import settings

    from annotate import tokens
    from annotate.models import Item
    from tests.factories import ProjectFactory, UserFactory, membership

    n = 100_000
    project = ProjectFactory(slug="bench-import", kind="pairwise")
    rows = []
    cache = tempfile.TemporaryDirectory()
    env = _bytecode_env(cache.name)
    # Compiles (once) what the command imports, as the Docker image does at build time.
    subprocess.run(
        [sys.executable, "manage.py", "import_items", "--help"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "items.jsonl"
        size = _write_pairwise(path, n, seed=1)
        scale = f"{n:,} pairwise items, {size / 1e6:,.0f} MB JSONL, own process (start-up included)"
        for attempt in ("first", "second"):
            elapsed, cpu, _rss, out = _command(project.slug, path, env)
            assert Item.objects.filter(project=project).count() == n, out
            if attempt == "second":
                assert f"0 new items added, {n:,} unchanged" in out, out
            name = f"Import items, {attempt} time (command)"
            rows.append(Row(name, scale, "rows/s", f"{n / elapsed:,.0f}", ">= 30,000"))
            rows.append(Row(name, scale, "rows per CPU second of the command", f"{n / cpu:,.0f}"))

        # The API: the same rows in batches of the documented size, as a pipeline would push them.
        batch = int(settings.API_MAX_BATCH)
        lead = UserFactory(username="bench-import-lead")
        api_project = ProjectFactory(slug="bench-import-api", kind="pairwise")
        membership(lead, api_project, "lead")
        _token_row, raw = tokens.token_create(user=lead, name="bench")
        api_scale = f"{n:,} pairwise items, batches of {batch:,} (API_MAX_BATCH), Django request stack in process"
        for attempt in ("first", "second"):
            elapsed, cpu, problem = _api_import(api_project.slug, path, raw)
            name = f"Import items, {attempt} time (API)"
            rows.append(Row(name, api_scale, "rows/s", problem or f"{n / elapsed:,.0f}", ">= 20,000"))
            if not problem:
                assert Item.objects.filter(project=api_project).count() == n
                rows.append(Row(name, api_scale, "rows per CPU second of the server", f"{n / cpu:,.0f}"))

        ls_name = "Import items, side by side: Label Studio (its import API, same rows)"
        with label_studio() as ls:
            if ls is not None:
                ls_project = ls.create_project(f"bench-import-{os.getpid()}")
                ls_seconds = ls.import_tasks(ls_project, _batches(path, batch), n)
                ls_scale = f"{n:,} pairwise items, batches of {batch:,}; {ls.served_by}"
        if ls is None:
            print(f"  {SKIPPED}", flush=True)
            rows.append(Row(ls_name, f"{n:,} pairwise items, batches of {batch:,}", "rows/s", SKIPPED))
        else:
            rows.append(Row(ls_name, ls_scale, "rows/s", f"{n / ls_seconds:,.0f}"))
            command_rate = float(rows[0].value.replace(",", ""))  # the first-time command's rows/s
            rows.append(
                Row(
                    ls_name,
                    "first-time command rate ÷ Label Studio's",
                    "×",
                    f"{command_rate * ls_seconds / n:.1f}",
                    ">= 10",
                )
            )

        # Memory: the same command on a file of about 1 GB, in its own process so its peak RSS is its own.
        gb = float(os.environ.get("BENCH_IMPORT_GB", "1"))
        big_n = int(gb * 1e9 / (size / n))
        big = Path(tmp) / "big.jsonl"
        path.unlink()
        big_size = _write_pairwise(big, big_n, seed=2)
        ProjectFactory(slug="bench-import-big", kind="pairwise")
        elapsed, _cpu, rss, _out = _command("bench-import-big", big, env)
        big_scale = f"{big_n:,} pairwise items, {big_size / 1e9:.2f} GB JSONL"
        rows.append(
            Row("Import items, large file (command)", big_scale, "rows/s", f"{big_n / elapsed:,.0f}", ">= 30,000")
        )
        rows.append(Row("Import items, large file (command)", big_scale, "peak RSS MB", f"{rss:,.0f}", "< 500"))
    cache.cleanup()
    return rows


BENCHMARKS: list[Callable[[], list[Row]]] = [bench_import_items]
