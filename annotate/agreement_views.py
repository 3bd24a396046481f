"""The human–human agreement report of a project (leads): the stored report, and asking for it to be computed."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotate import (
    reports,
    selectors,
    tasks,
)
from annotate.http import AuthedRequest, wants_partial
from annotate.models import AgreementReport, Membership


@require_GET
@login_required
def agreement_page(request: AuthedRequest, slug: str) -> HttpResponse:
    """The stored human–human report with its definitions, per criterion and per annotator. Never computed here."""
    project, _role = selectors.project_for_user(request.user, slug, role=Membership.Role.LEAD)
    stored = AgreementReport.objects.filter(project=project, rubric_version_id=project.current_rubric_id).first()
    data = reports.report_with_judges(stored) if stored else None
    context = {
        "project": project,
        "report": stored,
        "data": data,
        "stale": stored is not None and reports.report_stale(project=project),
        "definitions": reports.DEFINITIONS,
    }
    if wants_partial(request):
        return render(request, "annotate/agreement.html#report", context)
    return render(request, "annotate/agreement.html", context)


@require_POST
@login_required
def agreement_compute(request: AuthedRequest, slug: str) -> HttpResponse:
    """Queue a recomputation now instead of waiting for the next beat."""
    project, _role = selectors.project_for_user(request.user, slug, role=Membership.Role.LEAD)
    transaction.on_commit(lambda: tasks.agreement_report_compute.delay(project.pk))
    messages.info(request, "The report is being computed; this page shows it when it is ready.")
    return redirect("agreement_page", slug=project.slug)
