"""Import speed: 100,000 pairwise items from JSON Lines through `manage.py import_items`, twice, and the peak memory
of the same command on a file of about 1 GB (measured on the command's own process)."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.bench import peak_rss
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


def _command_rss_mb(slug: str, path: Path) -> tuple[float, float]:
    """Run the import command in a child process; return (seconds, the child's peak RSS in MB)."""
    rss = path.with_name(path.name + ".peak-rss")
    start = time.perf_counter()
    command = [sys.executable, "-m", "tests.bench.peak_rss", str(rss), "manage.py", "import_items", slug]
    proc = subprocess.run(
        [*command, str(path), "--no-progress"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError("the import command failed")
    return elapsed, peak_rss.peak_mb(rss)


def bench_import_items() -> list[Row]:
    from django.core.management import call_command

    from annotate.models import Item
    from tests.factories import ProjectFactory

    n = 100_000
    project = ProjectFactory(slug="bench-import", kind="pairwise")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "items.jsonl"
        size = _write_pairwise(path, n, seed=1)
        scale = f"{n:,} pairwise items, {size / 1e6:,.0f} MB JSONL"
        for attempt in ("first", "second"):
            out = io.StringIO()
            start = time.perf_counter()
            call_command("import_items", project.slug, str(path), "--no-progress", stdout=out)
            elapsed = time.perf_counter() - start
            assert Item.objects.filter(project=project).count() == n, out.getvalue()
            if attempt == "second":
                assert f"0 new items added, {n:,} unchanged" in out.getvalue(), out.getvalue()
            rows.append(
                Row(f"Import items, {attempt} time (command)", scale, "rows/s", f"{n / elapsed:,.0f}", ">= 20,000")
            )

        # Memory: the same command on a file of about 1 GB, in its own process so its peak RSS is its own.
        gb = float(os.environ.get("BENCH_IMPORT_GB", "1"))
        big_n = int(gb * 1e9 / (size / n))
        big = Path(tmp) / "big.jsonl"
        big_size = _write_pairwise(big, big_n, seed=2)
        ProjectFactory(slug="bench-import-big", kind="pairwise")
        path.unlink()
        elapsed, rss = _command_rss_mb("bench-import-big", big)
        big_scale = f"{big_n:,} pairwise items, {big_size / 1e9:.2f} GB JSONL"
        rows.append(
            Row("Import items, large file (command)", big_scale, "rows/s", f"{big_n / elapsed:,.0f}", ">= 20,000")
        )
        rows.append(Row("Import items, large file (command)", big_scale, "peak RSS MB", f"{rss:,.0f}", "< 500"))
    return rows


BENCHMARKS: list[Callable[[], list[Row]]] = [bench_import_items]
