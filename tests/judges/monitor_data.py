"""A calibrated judge and a week of production records for the daily monitor's tests (job, API, browser).

The stand-in's keyword rule fails an output containing WRONG. The dev items' human labels agree with it on 48 of 50
items (TPR = TNR = 24/25). The production records of each day are 10% WRONG, except on the regression day: 60%."""

from __future__ import annotations

import datetime as dt
import time

from django.utils import timezone

from annotate import samples
from annotate.models import Project
from judges.models import JudgeRun, JudgeVersion, RunChunk
from judges.services import judge_runs, judge_versions, run_chunks
from tests.factories import UserFactory, label, membership
from tests.judges.conftest import make_item, make_version

N_PER_DAY = 40


def calibrated_version(project: Project) -> JudgeVersion:
    """A judge of `acceptable` whose version 1 has a finished dev run against human labels."""
    labeler = UserFactory(username="cal-labeler")
    membership(labeler, project, "annotator")
    outputs = [(f"WRONG answer {n}.", "fail") for n in range(24)]
    outputs += [(f"Right answer {n}.", "pass") for n in range(24)]
    outputs += [("WRONG but humans liked it.", "pass"), ("Right but humans disliked it.", "fail")]
    for n, (text, value) in enumerate(outputs):
        label(
            make_item(project, 1000 + n, input=f"Calibration question {n}?", output=text), labeler, "acceptable", value
        )
    judge = judge_versions.judge_create(project=project, criterion_key="acceptable")
    version = make_version(judge)
    run = judge_runs.judge_run_start(version=version)
    for chunk in RunChunk.objects.filter(run=run).order_by("number"):
        run_chunks.judge_chunk_process(chunk_id=chunk.pk)
    # With a Celery worker running, it may hold a chunk of this run: wait for the run to close.
    deadline = time.monotonic() + 30
    while run.status != JudgeRun.Status.DONE and time.monotonic() < deadline:
        time.sleep(0.05)
        run.refresh_from_db()
    assert run.status == JudgeRun.Status.DONE, run.error
    return version


def seed_day(project: Project, day: dt.date, *, wrong_share: float, n: int = N_PER_DAY) -> None:
    """n production records received on `day`, the first `wrong_share` of them saying WRONG."""
    n_wrong = round(n * wrong_share)
    rows = [
        {
            "input": f"Customer question {i} of {day}?",
            "output": ("WRONG reply" if i < n_wrong else "Good reply") + f" {i}.",
        }
        for i in range(n)
    ]
    samples.records_receive(project=project, rows=enumerate(rows, start=1))
    project.production_records.filter(received_on=timezone.localdate(), input__endswith=f"of {day}?").update(
        received_on=day
    )


def seed_week(project: Project, last_day: dt.date, *, regression: dt.date) -> list[dt.date]:
    days = [last_day - dt.timedelta(days=k) for k in range(6, -1, -1)]
    for day in days:
        seed_day(project, day, wrong_share=0.6 if day == regression else 0.1)
    return days
