"""Celery tasks for judges: thin, ids only (JSON), each calls one service and is safe to run twice."""

from __future__ import annotations

from celery import shared_task
from celery.contrib.django.task import DjangoTask

from judges import services


@shared_task(name="judges.tasks.judge_chunk_run", base=DjangoTask, acks_late=True, reject_on_worker_lost=True)
def judge_chunk_run(chunk_id: int) -> str:
    """Judge one chunk of a run. A redelivered or re-enqueued message finds the chunk claimed and does nothing."""
    return services.judge_chunk_process(chunk_id=chunk_id)


@shared_task(name="judges.tasks.judge_runs_reconcile")
def judge_runs_reconcile() -> int:
    """Re-enqueue the chunks of runs that stopped progressing (beat runs this every JUDGE_RECONCILE_SECONDS)."""
    return services.judge_runs_reconcile()
