"""Run by tests/sqlite/test_rundemo.py beside a running `rundemo`, with its environment (same VAR_DIR, so the same
SQLite file and file-system broker): start a judge run on ten items of the demo's binary project, wait for the
demo's own worker to finish it against the demo's stand-in, and print the run's status and verdicts as JSON."""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotate.settings")
django.setup()

from annotate.models import Item, Project  # noqa: E402
from judges import prompts  # noqa: E402
from judges.models import JudgeRun, Verdict  # noqa: E402
from judges.services import judge_runs, judge_versions  # noqa: E402

TIMEOUT_SECONDS = 120


def main() -> None:
    project = Project.objects.get(slug="tulu-acceptability")
    judge = judge_versions.judge_create(project=project, criterion_key=project.current_rubric.criteria.first().key)
    version = judge_versions.judge_version_create(
        judge=judge,
        system_template=prompts.DEFAULT_SYSTEM[project.kind],
        user_template=prompts.DEFAULT_USER[project.kind],
        endpoint="standin",
        model="standin-judge-2025-01-01",
    )
    items = list(Item.objects.filter(project=project, split="dev").order_by("pk").values_list("pk", flat=True)[:10])
    run = judge_runs.judge_run_start(version=version, scope=JudgeRun.Scope.ITEMS, item_ids=items)
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while run.status in JudgeRun.ACTIVE and time.monotonic() < deadline:
        time.sleep(0.5)
        run.refresh_from_db()
    statuses = Counter(Verdict.objects.filter(run=run).values_list("status", flat=True))
    print(json.dumps({"status": run.status, "error": run.error, "verdicts": dict(statuses)}), flush=True)


if __name__ == "__main__":
    main()
    sys.exit(0)
