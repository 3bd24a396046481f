"""Getting data in from the browser: upload an item or label file, watch its check, confirm it."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import push_url, reswap, retarget, trigger_client_event

from annotate import (
    ratelimit,
    selectors,
)
from annotate.forms import ImportConfirmForm, ImportUploadForm
from annotate.http import AuthedRequest, partial_target, wants_partial
from annotate.imports.jobs import import_job_confirm, import_job_create, import_job_progress, import_job_start_preview
from annotate.imports.report import ImportRefused, ImportReport
from annotate.models import ImportJob, Membership, Project


def _import_page(
    request: AuthedRequest, project: Project, form: ImportUploadForm, *, status: int = 200, error: str = ""
) -> HttpResponse:
    jobs = list(project.import_jobs.select_related("created_by")[:10])
    context = {
        "project": project,
        "form": form,
        "error": error,
        "jobs": [(job, import_job_progress(job) if job.is_running else None) for job in jobs],
        "jobs_running": any(job.is_running for job in jobs),
        "max_bytes": settings.IMPORT_MAX_FILE_BYTES,
        "max_chars": f"{settings.IMPORT_MAX_FIELD_CHARS:,}",
    }
    if request.method == "GET" and partial_target(request) == "import-jobs":
        return render(request, "annotate/import.html#jobs", context)  # the Recent imports card polling itself
    if wants_partial(request) and status != 200:
        # htmx swaps only 2xx answers: show the refusal in place of the form.
        return reswap(retarget(render(request, "annotate/import.html#form", context), "#import-form-card"), "outerHTML")
    template = "annotate/import.html" + ("#form" if wants_partial(request) else "")
    return render(request, template, context, status=status)


@require_http_methods(["GET", "POST"])
@login_required
def import_start(request: AuthedRequest, slug: str) -> HttpResponse:
    """Upload an item or label file. It is checked and previewed; nothing is written until the lead confirms."""
    project, _role = selectors.project_for_user(request.user, slug, role=Membership.Role.LEAD)
    if request.method == "GET":
        return _import_page(request, project, ImportUploadForm(initial={"kind": request.GET.get("kind", "items")}))
    # Refused before the body is read: the upload would be stored only to be thrown away.
    if int(request.META.get("CONTENT_LENGTH") or 0) > settings.IMPORT_MAX_FILE_BYTES + 65_536:
        message = f"The file is too large: at most {settings.IMPORT_MAX_FILE_BYTES:,} bytes."
        return _import_page(request, project, ImportUploadForm(), status=413, error=message)
    if ratelimit.hit(f"import:{request.user.pk}", limit=settings.IMPORT_UPLOADS_PER_HOUR, per_seconds=3600):
        message = f"You have started {settings.IMPORT_UPLOADS_PER_HOUR} imports in the last hour; wait a little."
        return _import_page(request, project, ImportUploadForm(), status=429, error=message)
    form = ImportUploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return _import_page(request, project, form, status=400)
    try:
        job = import_job_create(
            project=project,
            actor=request.user,
            kind=form.cleaned_data["kind"],
            upload=form.cleaned_data["file"],
            fmt=form.cleaned_data["file_format"],
        )
    except ImportRefused as exc:
        return _import_page(request, project, form, status=exc.status, error=exc.message)
    import_job_start_preview(job=job)
    url = reverse("import_job", args=[project.slug, job.pk])
    if wants_partial(request):
        job.refresh_from_db()
        # The page's Recent imports card reloads itself on this event, so it lists the new job at once.
        return trigger_client_event(push_url(_render_job(request, project, job, partial="job"), url), "importsChanged")
    return redirect(url)


def _render_job(request: AuthedRequest, project: Project, job: ImportJob, *, partial: str = "") -> HttpResponse:
    context = {
        "project": project,
        "job": job,
        "report": ImportReport.from_dict(job.report) if job.report else None,
        "progress": import_job_progress(job) if job.is_running else None,
        "confirm_form": ImportConfirmForm(),
    }
    return render(request, "annotate/import_job.html" + (f"#{partial}" if partial else ""), context)


@require_GET
@login_required
def import_job(request: AuthedRequest, slug: str, job_id: int) -> HttpResponse:
    """One import: its progress while running (htmx polls this), then the preview, the bad rows, or the result."""
    project, _role = selectors.project_for_user(request.user, slug, role=Membership.Role.LEAD)
    job = get_object_or_404(ImportJob, project=project, pk=job_id)
    return _render_job(request, project, job, partial="job" if wants_partial(request) else "")


@require_POST
@login_required
def import_confirm(request: AuthedRequest, slug: str, job_id: int) -> HttpResponse:
    """The lead confirms a checked file. A second submit of the same form finds the job already claimed."""
    project, _role = selectors.project_for_user(request.user, slug, role=Membership.Role.LEAD)
    job = get_object_or_404(ImportJob, project=project, pk=job_id)
    form = ImportConfirmForm(request.POST)
    import_job_confirm(job=job, update=form.is_valid() and form.cleaned_data["update"])
    if wants_partial(request):
        job.refresh_from_db()
        return trigger_client_event(_render_job(request, project, job, partial="job"), "importsChanged")
    return redirect("import_job", slug=project.slug, job_id=job.pk)
