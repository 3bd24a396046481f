"""Pages. Each view: access helper, then form, then service, then render or redirect."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from annotate import selectors, services
from annotate.forms import ProjectStatusForm
from annotate.models import Membership, Project


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    rows = selectors.projects_for_user(request.user)  # type: ignore[arg-type]
    return render(
        request,
        "annotate/home.html",
        {
            "leading": [r for r in rows if r.role == Membership.Role.LEAD],
            "annotating": [r for r in rows if r.role == Membership.Role.ANNOTATOR],
        },
    )


@require_GET
@login_required
def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = selectors.project_for_user(request.user, slug)
    return _render_project(request, project=project, role=role)


@require_POST
@login_required
def project_status(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = selectors.project_for_user(request.user, slug, role=Membership.Role.LEAD)
    form = ProjectStatusForm(request.POST)
    status_error = ""
    if form.is_valid():
        try:
            services.project_set_status(project=project, status=form.cleaned_data["status"])
        except ValidationError as exc:
            status_error = " ".join(exc.messages)
    else:
        status_error = "Choose draft, active or archived."
    if request.htmx:  # type: ignore[attr-defined]
        return _render_project(request, project=project, role=role, status_error=status_error, partial="status")
    if status_error:
        messages.error(request, status_error)
    else:
        messages.success(request, f"Project is now {project.get_status_display().lower()}.")
    return redirect("project_detail", slug=project.slug)


def _render_project(
    request: HttpRequest, *, project: Project, role: str, status_error: str = "", partial: str = ""
) -> HttpResponse:
    is_lead = role == Membership.Role.LEAD
    context = {
        "project": project,
        "role": role,
        "is_lead": is_lead,
        "rubric": selectors.rubric_current(project=project),
        "criteria": list(selectors.criteria_current(project=project)),
        "stats": selectors.project_stats(project=project),
        "status_error": status_error,
        "status_form": ProjectStatusForm(initial={"status": project.status}),
    }
    if is_lead:
        context["rubric_versions"] = project.rubric_versions.order_by("-number").select_related("created_by")
        context["members"] = project.memberships.select_related("user").order_by("role", "user__username")
    template = "annotate/project_detail.html" + (f"#{partial}" if partial else "")
    return render(request, template, context)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and compose: the process answers and the database is reachable."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return JsonResponse({"status": "error", "database": "unreachable"}, status=503)
    return JsonResponse({"status": "ok"})
