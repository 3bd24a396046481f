"""Import jobs, the browser's path: upload, a worker's preview, confirm, apply, progress; reconciling and expiring."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.files.uploadedfile import UploadedFile
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from annotate import enqueue
from annotate.imports.files import file_import
from annotate.imports.parsing import SNIFF_BYTES, content_problem, format_detect
from annotate.imports.report import ImportInvalid, ImportRefused
from annotate.models import ImportJob, Project

log = logging.getLogger(__name__)
# First key of the per-job advisory lock a worker holds (session-level) while it checks or applies a job: a job marked
# running whose lock nobody holds lost its worker (the lock dies with the worker's connection, SIGKILL included).
_JOB_LOCK_NAMESPACE = 0x696D70  # "imp"
# Without PostgreSQL's advisory locks (the embedded SQLite demo), a running claim may be retaken after this long.
_STALE_AFTER = dt.timedelta(minutes=30)


# --- Import jobs (the browser's upload, preview and confirm) ---------------------------------------------------


# A full disk, a full quota, a file larger than the process may write.
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _upload_dir() -> Path:
    path = Path(settings.IMPORT_UPLOAD_DIR)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def import_job_path(job: ImportJob) -> Path:
    return _upload_dir() / job.stored_name


def import_job_create(*, project: Project, actor: Any, kind: str, upload: UploadedFile, fmt: str = "") -> ImportJob:
    """Store an uploaded file under a random name (never served) and open a job for it. Raises ImportRefused."""
    limit = int(settings.IMPORT_MAX_FILE_BYTES)
    size = upload.size or 0
    if size > limit:
        raise ImportRefused(f"The file is too large: {size:,} bytes (at most {limit:,}).", status=413)
    if not size:
        raise ImportRefused("The file is empty.")
    if kind not in ImportJob.Kind.values:
        raise ImportRefused(f"Unknown import kind {kind!r}.")
    head = next(upload.chunks(SNIFF_BYTES), b"")
    if problem := content_problem(head):
        raise ImportRefused(problem, status=415)
    fmt = fmt or format_detect(upload.name or "", head)
    stored_name = f"{secrets.token_hex(16)}.{fmt}"
    path = _upload_dir() / stored_name
    try:
        with path.open("xb") as out:
            path.chmod(0o600)
            for chunk in upload.chunks():
                out.write(chunk)
        return ImportJob.objects.create(
            project=project,
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
            kind=kind,
            filename=Path(upload.name or "upload").name[:255],
            stored_name=stored_name,
            size_bytes=size,
            file_format=fmt,
        )
    except BaseException as exc:
        # Nothing refers to a file without its job (the expiry sweep goes by jobs): never leave a partial one.
        path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
            log.error("import upload refused: %s has no room (%s)", path.parent, exc)
            raise ImportRefused(
                "The server has no room to store this file right now; nothing was stored. Try again later, or ask "
                "an administrator to free space in the upload folder.",
                status=507,
            ) from None
        raise


def import_job_runs_inline(job: ImportJob) -> bool:
    """Small files are checked and imported within the request; larger ones by the worker, with a progress bar."""
    return job.size_bytes <= int(settings.IMPORT_SYNC_MAX_BYTES)


def import_job_start_preview(*, job: ImportJob) -> None:
    if import_job_runs_inline(job):
        import_job_preview(job_id=job.pk)
    else:
        # robust: with the broker down the job stays pending and import_jobs_reconcile sends it when it is back.
        enqueue.after_commit("annotate.tasks.import_job_preview", job.pk, robust=True)


def import_job_confirm(*, job: ImportJob, update: bool) -> bool:
    """The lead confirms a checked file. False when the job is not waiting for confirmation (double submit)."""
    claimed = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.PREVIEWED).update(
        status=ImportJob.Status.QUEUED, update_conflicts=update
    )
    if not claimed:
        return False
    if import_job_runs_inline(job):
        import_job_apply(job_id=job.pk)
    else:
        # robust: with the broker down the job stays queued and import_jobs_reconcile sends it when it is back.
        enqueue.after_commit("annotate.tasks.import_job_apply", job.pk, robust=True)
    return True


def _progress_key(job_id: int) -> str:
    return f"import-job-progress:{job_id}"


def import_job_progress(job: ImportJob) -> dict[str, Any]:
    """How far a running job is: {"percent": 0-100, "rows": n}. Kept in the cache, since the run's own writes are
    invisible to the page until its transaction commits. Without the cache (Redis down) the page shows 0%."""
    try:
        return cache.get(_progress_key(job.pk)) or {"percent": 0, "rows": 0}
    except Exception:
        log.warning("import job %s: the cache is unavailable, progress not shown", job.pk, exc_info=True)
        return {"percent": 0, "rows": 0}


@contextlib.contextmanager
def _job_lock(job_id: int) -> Iterator[bool]:
    """Hold the job's advisory lock while working on it; yields False when another live session holds it."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_JOB_LOCK_NAMESPACE, job_id])
        held = bool(cursor.fetchone()[0])
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_JOB_LOCK_NAMESPACE, job_id])


def _claim(job_id: int, waiting: str, running: str) -> ImportJob | None:
    """Claim a job for this worker. Call holding _job_lock: then a job still marked running has no live worker (its
    worker died with the lock), and is taken over."""
    now = timezone.now()
    if connection.vendor == "postgresql":
        orphaned = Q(status=running)
    else:
        orphaned = Q(status=running, started_at__lt=now - _STALE_AFTER)
    claimed = ImportJob.objects.filter(Q(status=waiting) | orphaned, pk=job_id).update(status=running, started_at=now)
    return ImportJob.objects.select_related("project").get(pk=job_id) if claimed else None


def _cache_quietly(action: Callable[[], object]) -> None:
    # Progress in the cache is a convenience: a cache outage must not fail the import itself.
    try:
        action()
    except Exception:
        log.warning("import progress not written: the cache is unavailable", exc_info=True)


def _job_run(job: ImportJob, *, apply: bool) -> None:
    def progress(fraction: float, rows: int) -> None:
        value = {"percent": round(100 * fraction), "rows": rows}
        _cache_quietly(lambda: cache.set(_progress_key(job.pk), value, 3600))

    done = ImportJob.Status.DONE if apply else ImportJob.Status.PREVIEWED
    fields: dict[str, Any] = {}
    try:
        report = file_import(
            project=job.project,
            kind=job.kind,
            path=import_job_path(job),
            fmt=job.file_format,
            update=job.update_conflicts,
            apply=apply,
            progress=progress,
        )
    except ImportInvalid as exc:
        fields.update(status=ImportJob.Status.INVALID, n_errors=exc.n_errors, errors=[asdict(e) for e in exc.errors])
    except ImportRefused as exc:
        fields.update(status=ImportJob.Status.FAILED, message=exc.message)
    except Exception:
        log.exception("import job %s failed", job.pk)
        fields.update(status=ImportJob.Status.FAILED, message="An unexpected error stopped the import.")
    else:
        fields.update(status=done, report=report.as_dict())
    fields["finished_at"] = timezone.now()  # when the work ended, not when it began (started_at says that)
    ImportJob.objects.filter(pk=job.pk).update(**fields)
    if fields["status"] != ImportJob.Status.PREVIEWED:
        import_job_path(job).unlink(missing_ok=True)
    _cache_quietly(lambda: cache.delete(_progress_key(job.pk)))


def import_job_preview(*, job_id: int) -> None:
    """Check the file and compare it with the project, writing nothing. Safe to run twice (claims the job)."""
    with _job_lock(job_id) as held:
        job = _claim(job_id, ImportJob.Status.PENDING, ImportJob.Status.PREVIEWING) if held else None
        if job is not None:
            _job_run(job, apply=False)


def import_job_apply(*, job_id: int) -> None:
    """Import the confirmed file, all or nothing. Safe to run twice (claims the job; the import is idempotent)."""
    with _job_lock(job_id) as held:
        job = _claim(job_id, ImportJob.Status.QUEUED, ImportJob.Status.APPLYING) if held else None
        if job is not None:
            _job_run(job, apply=True)


def import_jobs_reconcile(*, now: dt.datetime | None = None, wait_seconds: int | None = None) -> int:
    """Send again each job that no worker is on (beat runs this every IMPORT_RECONCILE_SECONDS); return how many.

    A job marked checking or importing whose advisory lock is free lost its worker (killed mid-run: its transaction
    rolled back, nothing was written). A job waiting longer than `wait_seconds` for a worker may have lost its message
    (the broker was down when it was sent). A message too many is harmless: the task claims the job or does nothing.
    """
    now = now or timezone.now()
    wait = dt.timedelta(seconds=int(settings.IMPORT_RECONCILE_SECONDS if wait_seconds is None else wait_seconds))
    sent = 0
    running = {
        str(ImportJob.Status.PREVIEWING): "annotate.tasks.import_job_preview",
        str(ImportJob.Status.APPLYING): "annotate.tasks.import_job_apply",
    }
    waiting = {
        str(ImportJob.Status.PENDING): "annotate.tasks.import_job_preview",
        str(ImportJob.Status.QUEUED): "annotate.tasks.import_job_apply",
    }
    jobs = ImportJob.objects.filter(status__in=[*running, *waiting]).values_list("pk", "status", "created_at")
    for job_id, status, created_at in jobs:
        if status in running:
            if connection.vendor != "postgresql":
                continue  # the claim's own staleness rule (_STALE_AFTER) applies
            with _job_lock(job_id) as free:
                if not free:
                    continue  # a live worker holds it
        elif created_at >= now - wait:
            continue  # its message is most likely still on its way
        # At most one message per job per period, however long the workers take to get to it.
        if not cache.add(f"import-job-resent:{job_id}", 1, max(1, int(wait.total_seconds()))):
            continue
        enqueue.send((running | waiting)[status], job_id)
        log.warning("import job %s (%s) had no worker: sent again", job_id, status)
        sent += 1
    return sent


def import_uploads_expire(*, now: dt.datetime | None = None) -> int:
    """Delete uploads nobody confirmed (or no worker picked up) within IMPORT_UPLOAD_TTL_SECONDS."""
    cutoff = (now or timezone.now()) - dt.timedelta(seconds=int(settings.IMPORT_UPLOAD_TTL_SECONDS))
    waiting = [ImportJob.Status.PREVIEWED, ImportJob.Status.PENDING]
    jobs = list(ImportJob.objects.filter(status__in=waiting, created_at__lt=cutoff))
    expired = 0
    for job in jobs:
        if ImportJob.objects.filter(pk=job.pk, status=job.status).update(status=ImportJob.Status.EXPIRED):
            import_job_path(job).unlink(missing_ok=True)
            expired += 1
    return expired
