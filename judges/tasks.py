"""Celery tasks for judges: thin, ids only (JSON), each calls one service and is safe to run twice."""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from celery.contrib.django.task import DjangoTask

from judges import monitor
from judges.services import judge_runs, run_chunks


@shared_task(name="judges.tasks.judge_chunk_run", base=DjangoTask, acks_late=True, reject_on_worker_lost=True)
def judge_chunk_run(chunk_id: int) -> str:
    """Judge one chunk of a run. A redelivered or re-enqueued message finds the chunk claimed and does nothing."""
    return run_chunks.judge_chunk_process(chunk_id=chunk_id)


@shared_task(name="judges.tasks.judge_runs_reconcile")
def judge_runs_reconcile() -> int:
    """Re-enqueue the chunks of runs that stopped progressing (beat runs this every JUDGE_RECONCILE_SECONDS)."""
    return judge_runs.judge_runs_reconcile()


@shared_task(name="judges.tasks.monitor_day_run", acks_late=True)
def monitor_day_run(monitor_id: int, day: str) -> str:
    """Judge one day's production records for one monitor. Running it again reuses the cached answers (cost 0)."""
    try:
        row = monitor.monitor_day_compute(monitor_id=monitor_id, day=dt.date.fromisoformat(day))
    except monitor.DayBusy:
        return "busy: another task is computing this day"
    return "off" if row is None else f"{row.n_sampled} record(s), {row.n_called} call(s)"


@shared_task(name="judges.tasks.monitor_days_due")
def monitor_days_due() -> int:
    """Send the monitor task of every monitor whose yesterday is not computed yet (beat, MONITOR_CHECK_SECONDS)."""
    return monitor.monitors_run_due()


@shared_task(name="judges.tasks.mode_suggestion_run", acks_late=True)
def mode_suggestion_run(suggestion_id: int) -> str:
    """Ask the endpoint for one suggested failure-mode grouping. A redelivered message finds it claimed."""
    from judges import suggest

    return suggest.suggestion_run(suggestion_id=suggestion_id)
