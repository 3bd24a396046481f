"""The embedded default that `make run` uses (SQLite, file-system cache and Celery broker) serves every page of the
loop: the rest of the suite runs on Postgres, so SQL that only Postgres understands would otherwise reach the demo
unnoticed (DISTINCT ON did once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_every_page_of_the_loop_answers_on_the_embedded_default(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env |= {"DEBUG": "true", "VAR_DIR": str(tmp_path), "HTTPS": "false"}
    done = subprocess.run(
        [sys.executable, "-m", "tests.sqlite.walk"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
    pages = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(pages) == 60  # 20 pages of each of the three demo projects
    failed = [p for p in pages if p["status"] != 200]
    assert not failed, failed
    assert all(p["bytes"] > 200 for p in pages)
