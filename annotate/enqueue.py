"""Start a Celery task from a service without importing the task modules.

The task modules import the services they run, so a service that imported its task module to call `.delay` would
close an import cycle. Services send tasks by their registered name instead, through the one helper here, once the
transaction that wrote the task's rows has committed (a worker must find them).
"""

from __future__ import annotations

from typing import Any

from celery.result import AsyncResult
from django.db import transaction

from annotate.celery import app


def send(task_name: str, *args: Any, **options: Any) -> AsyncResult[Any]:
    """Send the task now (outside a transaction, or when the caller has already committed)."""
    return app.send_task(task_name, args=args, **options)


def after_commit(task_name: str, *args: Any, robust: bool = False, **options: Any) -> None:
    """Send the task when the current transaction commits (at once when none is open); nothing is sent on rollback.

    `robust=True` keeps a broker failure from raising into the request after the data has been committed (the
    reconcilers pick the work up later)."""
    transaction.on_commit(lambda: send(task_name, *args, **options), robust=robust)
