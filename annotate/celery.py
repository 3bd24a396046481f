"""The Celery app. Broker and options come from Django settings (CELERY_* names)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import celeryd_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotate.settings")

app = Celery("annotate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@celeryd_init.connect
def lower_priority(**kwargs: Any) -> None:
    """`celery worker` runs at a lower CPU priority (settings.WORKER_NICE), so that on a machine the web processes
    share, a judge run or an import takes the CPU the annotators' requests leave. Sent only by the `celery worker`
    command, before it starts its pool (whose processes inherit the priority): not in the test suite's in-process
    worker, nor in beat."""
    from django.conf import settings

    nice = settings.WORKER_NICE
    if nice <= 0:
        return
    os.nice(nice)
    # A host without containers runs processes in the root CPU cgroup, where Linux shares the CPU between sessions
    # (autogroup) before it applies nice: a worker that leads its own session (a service, a `setsid`) would keep a
    # full session's share. Lower the session's share too. Inside a container the container's cgroup applies instead
    # (compose gives the worker fewer CPU shares), and this changes nothing.
    if os.getsid(0) == os.getpid():
        with contextlib.suppress(OSError):
            Path("/proc/self/autogroup").write_text(f"{nice}\n")
