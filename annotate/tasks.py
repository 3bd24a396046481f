"""Celery tasks: thin, take ids or nothing, call one service, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from annotate import dbstats, samples
from annotate.imports import jobs as import_jobs
from annotate.services import leases


@shared_task(name="annotate.tasks.assignments_expire")
def assignments_expire() -> int:
    """Return expired leases to the queue (beat runs this every ASSIGNMENT_SWEEP_SECONDS)."""
    return leases.assignments_expire()


@shared_task(name="annotate.tasks.statistics_refresh")
def statistics_refresh() -> list[str]:
    """ANALYZE the hot tables whose statistics autovacuum should have refreshed and has not (beat, every minute)."""
    return dbstats.statistics_refresh()


@shared_task(name="annotate.tasks.import_job_preview")
def import_job_preview(job_id: int) -> None:
    """Check an uploaded file against its project, writing nothing (the job's claim makes a redelivery a no-op)."""
    import_jobs.import_job_preview(job_id=job_id)


@shared_task(name="annotate.tasks.import_job_apply")
def import_job_apply(job_id: int) -> None:
    """Import a confirmed file, all or nothing (claimed like the preview; the import itself is idempotent)."""
    import_jobs.import_job_apply(job_id=job_id)


@shared_task(name="annotate.tasks.import_jobs_reconcile")
def import_jobs_reconcile() -> int:
    """Send again the import jobs whose worker died or whose message was lost (beat, every IMPORT_RECONCILE_SECONDS)."""
    return import_jobs.import_jobs_reconcile()


@shared_task(name="annotate.tasks.import_uploads_expire")
def import_uploads_expire() -> int:
    """Delete uploads nobody confirmed in time (beat, hourly)."""
    return import_jobs.import_uploads_expire()


@shared_task(name="annotate.tasks.samples_take_due")
def samples_take_due() -> int:
    """Take today's production sample for each project whose hour has come (beat, every SAMPLE_CHECK_SECONDS)."""
    return samples.samples_take_due()


@shared_task(name="annotate.tasks.agreement_reports_refresh")
def agreement_reports_refresh() -> int:
    """Recompute the stored report of each active project whose labels changed (beat, every minute)."""
    from annotate import reports
    from annotate.models import Project

    n = 0
    for project in Project.objects.filter(status=Project.Status.ACTIVE).select_related("current_rubric"):
        if reports.report_stale(project=project):
            reports.report_refresh(project=project, force=True)
            n += 1
    return n


@shared_task(name="annotate.tasks.agreement_report_compute")
def agreement_report_compute(project_id: int) -> None:
    """Compute one project's report now (a lead's "Compute now"); a no-op when nothing changed since."""
    from annotate import reports
    from annotate.models import Project

    project = Project.objects.select_related("current_rubric").filter(pk=project_id).first()
    if project is not None:
        reports.report_refresh(project=project)


@shared_task(name="annotate.tasks.rubric_version_report_compute")
def rubric_version_report_compute(rubric_version_id: int) -> None:
    """Compute and store one rubric version's agreement report (the drift page's older versions); safe to repeat."""
    from annotate import drift
    from annotate.models import RubricVersion

    version = RubricVersion.objects.select_related("project").filter(pk=rubric_version_id).first()
    if version is not None:
        drift.version_report_store(rubric_version=version)


@shared_task(name="annotate.tasks.throughput_counts_refresh")
def throughput_counts_refresh(project_id: int | None = None) -> int:
    """Add the labels created since the last pass to the stored daily counts of one project, or of every project
    (beat, every THROUGHPUT_REFRESH_SECONDS); a repeated pass adds nothing."""
    from annotate import throughput
    from annotate.models import Project

    if project_id is None:
        return throughput.throughput_counts_refresh()
    project = Project.objects.filter(pk=project_id).first()
    return throughput.throughput_count_pass(project=project) if project is not None else 0


@shared_task(name="annotate.tasks.relabel_request_run")
def relabel_request_run(project_id: int) -> None:
    """Queue a project's outdated items for re-labeling as its lead asked (a no-op when no request is open)."""
    from annotate import drift
    from annotate.models import Project

    project = Project.objects.select_related("current_rubric").filter(pk=project_id).first()
    if project is not None:
        drift.relabel_request_run(project=project)
