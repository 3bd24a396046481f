"""Celery tasks: thin, take ids or nothing, call one service, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from annotate import services


@shared_task(name="annotate.tasks.assignments_expire")
def assignments_expire() -> int:
    """Return expired leases to the queue (beat runs this every ASSIGNMENT_SWEEP_SECONDS)."""
    return services.assignments_expire()
