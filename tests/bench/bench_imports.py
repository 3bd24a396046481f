"""Import speed: 100,000 pairwise items from JSON Lines through `manage.py import_items` (its own process, start-up
included, bytecode compiled beforehand as in the Docker image), twice; the same rows through the token API in batches
of API_MAX_BATCH; the peak memory of the command on a file of about 1 GB; and, when a Label Studio is at hand, Label
Studio's own import of the same rows."""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.bench import peak_rss
from tests.bench.bench_exports import _bytecode_env
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
    elapsed = cpu = 0.0
    for batch in _batches(path, int(settings.API_MAX_BATCH)):
        body = b'{"items": [' + b",".join(batch) + b"]}"
        start, start_cpu = time.perf_counter(), time.process_time()
        response = client.post(f"/api/v1/projects/{slug}/items", body, content_type="application/json", headers=headers)
        elapsed += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        if response.status_code != 200:
            problem = f"HTTP {response.status_code} for a batch of {len(batch):,} ({len(body) / 1e6:.1f} MB)"
            return elapsed, cpu, problem
    return elapsed, cpu, ""


# --- Label Studio, side by side ---------------------------------------------------------------------------------

_LS_CONFIG = """<View>
  <Text name="input" value="$input"/><Text name="output_a" value="$output_a"/><Text name="output_b" value="$output_b"/>
  <Choices name="better" toName="input"><Choice value="A"/><Choice value="B"/><Choice value="Tie"/></Choices>
</View>"""


def _label_studio() -> tuple[str, str] | None:
    """(base URL, API key) of a running Label Studio (LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY), or None."""
    url, key = os.environ.get("LABEL_STUDIO_URL", ""), os.environ.get("LABEL_STUDIO_API_KEY", "")
    if not url or not key:
        return None
    try:
        urllib.request.urlopen(url.rstrip("/") + "/health", timeout=5).close()
    except (urllib.error.URLError, OSError):
        return None
    return url.rstrip("/"), key


def _ls_call(base: str, key: str, method: str, path: str, body: bytes | None = None) -> dict:
    request = urllib.request.Request(
        base + path,
        data=body,
        method=method,
        headers={"Authorization": f"Token {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read() or b"{}")


def _label_studio_import(base: str, key: str, path: Path, n: int, batch_size: int) -> float:
    """Label Studio's own import API (POST /api/projects/<id>/import), same rows, same batch size, until its
    project counts every task; returns seconds."""
    project = _ls_call(
        base,
        key,
        "POST",
        "/api/projects",
        json.dumps({"title": f"bench-{os.getpid()}", "label_config": _LS_CONFIG}).encode(),
    )
    start = time.perf_counter()
    for batch in _batches(path, batch_size):
        tasks = b"[" + b",".join(b'{"data": ' + line + b"}" for line in batch) + b"]"
        _ls_call(base, key, "POST", f"/api/projects/{project['id']}/import", tasks)
    while _ls_call(base, key, "GET", f"/api/projects/{project['id']}").get("task_number", 0) < n:
        time.sleep(0.2)  # newer versions import in the background
    return time.perf_counter() - start


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

        found = _label_studio()
        ls_name = "Import items, side by side: Label Studio (its import API, same rows)"
        if found is None:
            message = "skipped: Label Studio is not installed here (set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY)"
            print(f"  {message}", flush=True)
            rows.append(Row(ls_name, f"{n:,} pairwise items, batches of {batch:,}", "rows/s", message))
        else:
            ls_seconds = _label_studio_import(*found, path, n, batch)
            rows.append(Row(ls_name, f"{n:,} pairwise items, batches of {batch:,}", "rows/s", f"{n / ls_seconds:,.0f}"))
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
