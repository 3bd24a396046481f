"""Export at scale: JSON Lines with every label, through the command and through the HTTP download, at two sizes.

Sizes: 75,000 items with 250,002 labels and 300,000 items with 1,000,002 labels (3 criteria; one annotator per item,
two on the first ninth), so the issue's 1,000,000 labels on 300,000 items and a quarter of it, to show that memory
does not grow with the size.

- The command runs as a lead would run it, `manage.py export_labels ... --individual -o FILE`, in its own process,
  with its bytecode compiled beforehand as in the Docker image (see `_bytecode_env`); its peak RSS is
  that process's own VmHWM (tests/bench/peak_rss.py; wait4's figure includes the parent's).
- The download is real HTTP against gunicorn (one gthread worker, as in docker/Dockerfile) started for each size,
  as the lead's browser asks for it (session cookie, /p/<slug>/export/download/). The first byte is timed from the
  request to the first byte of the body; the peak RSS is the worker's VmHWM once the download is done.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench import peak_rss
from tests.bench.labeling_http import gunicorn
from tests.bench.run import ROOT, Row
from tests.bench.seeding import copy_labels, spread_value

SIZES = ((75_000, 8_334), (300_000, 33_334))  # (items, items with a second annotator): 3 × (items + second) labels


def _seed(project: Any, n_items: int, n_second: int, annotators: list[Any]) -> int:
    """Items and labels inserted with COPY; returns the number of labels."""
    from django.db import connection

    from annotate import selectors
    from annotate.models import Item
    from annotate.services.items import item_build

    items = (
        item_build(project=project, fields={"input": f"Prompt {i}", "output": f"Response {i}"}) for i in range(n_items)
    )
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) == 10_000:
            Item.objects.bulk_create(batch)
            batch = []
    Item.objects.bulk_create(batch)
    criteria = list(selectors.criteria_current(project=project))
    item_ids = list(Item.objects.filter(project=project).order_by("id").values_list("id", flat=True))
    n = copy_labels(
        (
            item_id,
            criterion,
            annotators[(position + k) % len(annotators)].id,
            spread_value(item_id * 7 + k + criterion.position),
        )
        for position, item_id in enumerate(item_ids)
        for k in range(2 if position < n_second else 1)
        for criterion in criteria
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotate_item")
        cursor.execute("ANALYZE annotate_label")
    return n


def _bytecode_env(cache: str) -> dict[str, str]:
    """The environment with Python's bytecode cached in `cache`, as in the Docker image (which compiles it at build
    time). Where PYTHONDONTWRITEBYTECODE is set, as on the development machines, every process would otherwise
    compile each module it imports again: about 1.5 s of a command's run here, nothing to do with exporting."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": cache}


def _command(slug: str, env: dict[str, str]) -> tuple[float, float, dict[str, Any], float]:
    """Seconds, peak RSS MB and manifest of `manage.py export_labels`, and the file's size in MB."""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "export.jsonl"
        rss = Path(tmp) / "peak-rss"
        command = [sys.executable, "-m", "tests.bench.peak_rss", str(rss), "manage.py", "export_labels", slug]
        start = time.perf_counter()
        process = subprocess.run([*command, "--format", "jsonl", "--individual", "-o", str(target)], cwd=ROOT, env=env)
        elapsed = time.perf_counter() - start
        assert process.returncode == 0
        manifest = json.loads(Path(f"{target}.manifest.json").read_text())
        return elapsed, peak_rss.peak_mb(rss), manifest, target.stat().st_size / 2**20


def _worker_pid(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def _hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _download(slug: str, cookie: str) -> tuple[float, float, float, dict[str, Any], int]:
    """Seconds to the first byte of the body, seconds in all, the worker's peak RSS MB (it builds the export), the
    manifest and bytes."""
    # One gthread worker, so that its peak RSS is the download's, and a timeout longer than the download.
    args = ["--workers", "1", "--worker-class", "gthread", "--threads", "2", "--timeout", "300"]
    with gunicorn(args=args) as server:
        port = server.port
        # Warm the worker (imports, first connection) as a running server is, then measure one download.
        warm = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        warm.request("GET", "/healthz")
        warm.getresponse().read()
        warm.close()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        worker = _worker_pid(server.pid)
        start = time.perf_counter()
        connection.request(
            "GET",
            f"/p/{slug}/export/download/?format=jsonl&individual=on",
            headers={"Cookie": cookie},
        )
        response = connection.getresponse()
        assert response.status == 200, response.status
        first = response.read(1)
        first_byte = time.perf_counter() - start
        size = len(first)
        while block := response.read(1 << 20):
            size += len(block)
        elapsed = time.perf_counter() - start
        manifest = json.loads(response.getheader("X-Export-Manifest") or "{}")
        connection.close()
        peak = _hwm_mb(worker)
    return first_byte, elapsed, peak, manifest, size


def bench_export_labels() -> list[Row]:
    from django.conf import settings
    from django.test import Client

    from annotate.models import Membership
    from annotate.services.projects import project_set_status
    from tests.factories import ProjectFactory, UserFactory, membership

    rows: list[Row] = []
    cache = tempfile.TemporaryDirectory()
    env = _bytecode_env(cache.name)
    # Compiles (once) what the command imports: Django, the apps, the command and annotate.exports.
    subprocess.run(
        [sys.executable, "manage.py", "export_labels", "--help"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    annotators = [UserFactory(username=f"export-annotator-{i}") for i in range(20)]
    lead = UserFactory(username="export-lead")
    for n_items, n_second in SIZES:
        project = ProjectFactory(slug=f"bench-export-{n_items}", overlap=2)
        project_set_status(project=project, status="active")
        membership(lead, project, Membership.Role.LEAD)
        n_labels = _seed(project, n_items, n_second, annotators)
        client = Client()
        client.force_login(lead)
        cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"

        elapsed, peak, manifest, size_mb = _command(project.slug, env)
        assert manifest["counts"]["individual_labels"] == n_labels and manifest["counts"]["rows"] == n_items
        scale = f"{n_items:,} items, {n_labels:,} labels, 3 criteria, JSONL --individual ({size_mb:.0f} MB)"
        name = "Export, manage.py export_labels (whole process, bytecode compiled)"
        rows += [
            Row(name, scale, "labels/s", f"{n_labels / elapsed:,.0f}", "≥ 100,000"),
            Row(name, scale, "peak RSS MB", f"{peak:.0f}", "< 300"),
        ]

        first_byte, elapsed, peak, manifest, size = _download(project.slug, cookie)
        assert manifest["counts"]["individual_labels"] == n_labels, manifest
        name = "Export, HTTP download (gunicorn, 1 gthread worker)"
        scale = f"{n_items:,} items, {n_labels:,} labels, JSONL individual ({size / 2**20:.0f} MB)"
        rows += [
            Row(name, scale, "labels/s", f"{n_labels / elapsed:,.0f}", "≥ 100,000"),
            Row(name, scale, "first byte s", f"{first_byte:.2f}", "≤ 1"),
            Row(name, scale, "peak RSS MB (worker)", f"{peak:.0f}", "< 300"),
        ]
    cache.cleanup()
    return rows


BENCHMARKS = [bench_export_labels]
