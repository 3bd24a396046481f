"""A real Celery worker process SIGKILLed in the middle of an import and of an agreement report: after a new worker
starts, each completes, nothing duplicated, nothing lost (rows counted). The judge-run case is in
tests/judges/test_runs.py (test_a_worker_killed_mid_run_is_replaced_without_lost_or_duplicate_verdicts).

Redis redelivers an unacknowledged task only after the visibility timeout (an hour by default); recovery does not
wait for it: beat's reconcilers (import_jobs_reconcile, agreement_reports_refresh) find the work no live worker is on.
Here the test calls them the way beat would.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal

import psycopg
import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from annotate import enqueue, reports, selectors, tasks
from annotate.celery import app
from annotate.imports.jobs import (
    _JOB_LOCK_NAMESPACE,
    import_job_apply,
    import_job_confirm,
    import_job_create,
    import_job_path,
    import_job_preview,
    import_job_progress,
    import_jobs_reconcile,
)
from annotate.models import AgreementReport, ImportJob, Item, Label
from annotate.services.projects import project_set_status
from tests.factories import ItemFactory, UserFactory, membership
from tests.faults.harness import database_url, start_worker, stop_process, wait_for

N_ROWS = 150_000


@pytest.fixture
def worker_env(transactional_db, settings) -> dict[str, str]:
    app.control.purge()
    return {**os.environ, "DATABASE_URL": database_url(), "CELERY_VISIBILITY_TIMEOUT": "60", "LOG_LEVEL": "INFO"}


def _ready(log, n: int) -> None:
    wait_for(lambda: log.exists() and log.read_text().count("ready.") >= n, timeout=90, what="the worker to start")


def test_an_import_whose_worker_is_killed_mid_write_completes_once_on_a_new_worker(worker_env, project, lead, tmp_path):
    lines = (
        json.dumps({"external_id": f"row-{n}", "input": f"Question {n}?", "output": f"Answer {n}."})
        for n in range(N_ROWS)
    )
    body = ("\n".join(lines) + "\n").encode()
    job = import_job_create(project=project, actor=lead, kind="items", upload=SimpleUploadedFile("items.jsonl", body))
    import_job_preview(job_id=job.pk)  # checked here; the import itself goes to the worker
    job.refresh_from_db()
    assert job.status == "previewed" and job.report["n_new"] == N_ROWS
    log = tmp_path / "worker.log"
    worker = start_worker(worker_env, log, f"faults-import-1-{os.getpid()}")
    try:
        _ready(log, 1)
        assert import_job_confirm(job=job, update=False)  # sent to the worker on commit

        def writing() -> bool:
            return 5 <= import_job_progress(job)["percent"] <= 60

        wait_for(writing, timeout=120, every=0.05, what="the import to be under way")
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        job.refresh_from_db()
        # Killed mid-write: the job says importing, and its transaction rolled back: not one item half-imported.
        assert job.status == "applying"
        assert not Item.objects.filter(project=project).exists()
        assert import_job_path(job).exists()
        worker = start_worker(worker_env, log, f"faults-import-2-{os.getpid()}")
        _ready(log, 2)

        # What beat does every IMPORT_RECONCILE_SECONDS: the job's lock died with its worker, so it is sent again.
        # Unless the broker got there first: the killed worker's unacknowledged message can be handed to the new
        # worker as it starts (seen in CI), which then holds the job's lock (the reconciler rightly sends nothing)
        # and finishes it.
        def resumed() -> bool:
            finished = ImportJob.objects.get(pk=job.pk).status not in ImportJob.RUNNING
            return finished or import_jobs_reconcile() == 1

        wait_for(resumed, timeout=90, every=0.5, what="the reconciler or the broker to resume the import")
        wait_for(
            lambda: ImportJob.objects.get(pk=job.pk).status not in ImportJob.RUNNING,
            timeout=180,
            every=0.5,
            what="the import to finish",
        )
    finally:
        stop_process(worker)
    job.refresh_from_db()
    assert job.status == "done", job.message
    assert job.report["n_new"] == N_ROWS
    ids = list(Item.objects.filter(project=project).values_list("external_id", flat=True))
    assert len(ids) == len(set(ids)) == N_ROWS
    assert set(ids) == {f"row-{n}" for n in range(N_ROWS)}
    # Running it again, or reconciling again, changes nothing.
    assert import_jobs_reconcile() == 0
    import_job_apply(job_id=job.pk)
    assert Item.objects.filter(project=project).count() == N_ROWS


def _labels(project, annotators, items) -> None:
    rng = random.Random(9)
    criteria = list(selectors.criteria_current(project=project))
    Label.objects.bulk_create(
        Label(
            item=item,
            criterion=c,
            rubric_version_id=c.rubric_version_id,
            annotator=user,
            value=rng.choice(["pass", "fail"]),
            created_at=timezone.now(),
        )
        for item in items
        for c in criteria
        for user in annotators
    )


def test_a_report_whose_worker_is_killed_mid_refresh_is_stored_once_by_the_next_worker(
    worker_env, project, lead, tmp_path
):
    project_set_status(project=project, status="active")
    annotators = [UserFactory(username=f"rater-{n}") for n in range(3)]
    for user in annotators:
        membership(user, project, "annotator")
    items = [ItemFactory(project=project) for _ in range(60)]
    _labels(project, annotators, items[:30])
    old = reports.report_refresh(project=project)
    assert old is not None and old.n_labels == 30 * 3 * 3
    _labels(project, annotators, items[30:])  # the stored report is now stale
    assert reports.report_stale(project=project)
    log = tmp_path / "worker.log"
    worker = start_worker(worker_env, log, f"faults-report-1-{os.getpid()}")
    # Another session holds the report row: the worker computes the new report, then waits to store it. Killed
    # there, it dies between computing and writing: the middle of a refresh, every time.
    with psycopg.connect(database_url().replace("postgres://", "postgresql://"), autocommit=False) as blocker:
        blocker.execute("SELECT id FROM annotate_agreementreport WHERE id = %s FOR UPDATE", [old.pk])
        try:
            _ready(log, 1)
            tasks.agreement_report_compute.delay(project.pk)  # a lead's "Compute now"

            def waiting_to_store() -> bool:
                with psycopg.connect(database_url().replace("postgres://", "postgresql://")) as probe:
                    row = probe.execute(
                        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                        "WHERE NOT l.granted AND a.datname = current_database() AND a.query ILIKE %s",
                        ["%annotate_agreementreport%"],
                    ).fetchone()
                return bool(row and row[0])

            wait_for(waiting_to_store, timeout=60, every=0.1, what="the worker to reach the write")
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
        finally:
            blocker.rollback()
    try:
        assert AgreementReport.objects.get().n_labels == 30 * 3 * 3  # the old report, untouched
        worker = start_worker(worker_env, log, f"faults-report-2-{os.getpid()}")
        _ready(log, 2)
        tasks.agreement_reports_refresh.delay()  # what beat sends every AGREEMENT_REFRESH_SECONDS
        wait_for(
            lambda: AgreementReport.objects.get().n_labels == 60 * 3 * 3,
            timeout=60,
            every=0.2,
            what="the report to be refreshed",
        )
    finally:
        stop_process(worker)
    stored = AgreementReport.objects.get()  # one row, not two
    assert stored.n_labels == Label.objects.filter(item__project=project).count() == 60 * 3 * 3
    assert not reports.report_stale(project=project)


@pytest.mark.django_db(transaction=True)
def test_the_import_reconciler_sends_orphaned_and_lost_jobs_once_and_leaves_live_ones_alone(
    project, lead, monkeypatch, settings
):
    settings.IMPORT_RECONCILE_SECONDS = 60
    sent: list[tuple[str, int]] = []
    names = {"annotate.tasks.import_job_preview": "preview", "annotate.tasks.import_job_apply": "apply"}
    monkeypatch.setattr(enqueue, "send", lambda name, pk: sent.append((names[name], pk)))
    now = timezone.now()

    def job(status: str, *, age_seconds: int = 0) -> ImportJob:
        created = ImportJob.objects.create(
            project=project, kind="items", filename="f.jsonl", file_format="jsonl", status=status
        )
        ImportJob.objects.filter(pk=created.pk).update(created_at=now - dt.timedelta(seconds=age_seconds))
        return created

    orphaned = job("applying")  # its worker died: nobody holds its lock
    live = job("previewing")  # a worker holds its lock (another session, as a worker would)
    lost = job("queued", age_seconds=600)  # confirmed while the broker was down
    fresh = job("pending")  # just uploaded: its message is on its way
    job("done", age_seconds=600)
    with psycopg.connect(database_url().replace("postgres://", "postgresql://")) as worker:
        worker.execute("SELECT pg_advisory_lock(%s, %s)", [_JOB_LOCK_NAMESPACE, live.pk])
        assert import_jobs_reconcile(now=now) == 2
        assert sorted(sent) == sorted([("apply", orphaned.pk), ("apply", lost.pk)])
        # Within the same period nothing is sent twice, however often beat asks.
        assert import_jobs_reconcile(now=now) == 0
    assert fresh.pk not in [pk for _, pk in sent]
    # The worker died with its lock: the job it held is now sent too.
    assert import_jobs_reconcile(now=now) == 1
    assert sent[-1] == ("preview", live.pk)
    for key in (orphaned, live, lost):
        cache.delete(f"import-job-resent:{key.pk}")
