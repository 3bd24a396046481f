"""A project's own page: the home list, the lead's dashboard (agreement, throughput, judges) or an annotator's
progress, and the project's status."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST, require_safe

from annotate import (
    charts,
    extensions,
    samples,
    selectors,
)
from annotate.forms import ProjectStatusForm
from annotate.http import AuthedRequest, wants_partial
from annotate.models import AgreementReport, Membership, Project
from annotate.services.projects import project_set_status


@require_safe  # GET and HEAD: a HEAD / (a monitor, a proxy's check) answers like a GET
@login_required
def home(request: AuthedRequest) -> HttpResponse:
    rows = selectors.projects_for_user(request.user)
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
def project_detail(request: AuthedRequest, slug: str) -> HttpResponse:
    project, role = selectors.project_for_user(request.user, slug)
    return _render_project(request, project=project, role=role)


@require_POST
@login_required
def project_status(request: AuthedRequest, slug: str) -> HttpResponse:
    project, role = selectors.project_for_user(request.user, slug, role=Membership.Role.LEAD)
    form = ProjectStatusForm(request.POST)
    status_error = ""
    if form.is_valid():
        try:
            project_set_status(project=project, status=form.cleaned_data["status"])
        except ValidationError as exc:
            status_error = " ".join(exc.messages)
    else:
        status_error = "Choose draft, active or archived."
    if wants_partial(request):
        return _render_project(request, project=project, role=role, status_error=status_error, partial="status")
    if status_error:
        messages.error(request, status_error)
    else:
        messages.success(request, f"Project is now {project.get_status_display().lower()}.")
    return redirect("project_detail", slug=project.slug)


def _render_project(
    request: AuthedRequest, *, project: Project, role: str, status_error: str = "", partial: str = ""
) -> HttpResponse:
    """The lead's dashboard, or the annotator's own page: annotators get their progress and none of the lead's
    figures (agreement, adjudication, throughput, judges), which are not even computed for them."""
    is_lead = role == Membership.Role.LEAD
    context: dict[str, object] = {
        "project": project,
        "role": role,
        "is_lead": is_lead,
        "rubric": project.current_rubric,
        "criteria": selectors.criteria_of_version(project.current_rubric_id),
        "status_error": status_error,
        "status_form": ProjectStatusForm(initial={"status": project.status}),
    }
    if partial:
        return render(request, f"annotate/project_detail.html#{partial}", context)
    if is_lead:
        context.update(_dashboard_context(project))
    else:
        context["progress"] = selectors.annotator_progress(project=project, annotator=request.user)
    return render(request, "annotate/project_detail.html", context)


def _dashboard_context(project: Project) -> dict[str, object]:
    """Everything the lead's dashboard shows, from stored reports and indexed counts (see tests/bench: < 300 ms at
    1,000,000 labels)."""
    # Label counts come from the stored report (plus an indexed count of the labels given since): counting a million
    # labels on every load is what the stored report is for.
    stats = selectors.project_stats(project=project, count_labels=False)
    report = AgreementReport.objects.filter(project=project, rubric_version_id=project.current_rubric_id).first()
    criteria = selectors.criteria_of_version(project.current_rubric_id)
    agreement = selectors.agreement_summary(report=report, criteria=criteria)
    flow = selectors.throughput(project=project, days=14)
    judges = extensions.judges().staleness(project)
    return {
        "stats": stats,
        "today_sample": samples.sample_today(project=project),
        "report": report,
        # Labels given under the current rubric since the stored report was computed.
        "report_new_labels": selectors.labels_since(project=project, since=report.computed_at) if report else 0,
        "agreement": agreement,
        # Criteria added or reworded in the current version, waiting for their first labels (annotate.carry).
        "agreement_waiting": [
            c
            for c in criteria
            if c.defined_in_id == project.current_rubric_id
            and not any(a.key == c.key and a.n_labels for a in agreement)
        ]
        if len(criteria) and project.current_rubric and project.current_rubric.number > 1
        else [],
        "agreement_chart": charts.interval_bars(
            [
                charts.Bar(a.name, a.alpha.get("value"), a.alpha.get("ci_low"), a.alpha.get("ci_high"))
                for a in agreement
            ],
            title="Krippendorff's α per criterion, with 95% intervals",
            lo=charts.scale_floor([a.alpha for a in agreement]),
            width=680,
        )
        if agreement
        else None,
        "n_adjudication": sum(a.n_needs_adjudication for a in agreement),
        "throughput": flow,
        "throughput_chart": charts.column_chart(
            [(day.strftime("%d"), float(n)) for day, n in zip(flow.days, flow.per_day, strict=True)],
            title=f"Labels per day, whole team, {flow.days[0]:%b %d} to {flow.days[-1]:%b %d}",
            unit="labels",
        ),
        "annotator_chart": charts.column_chart(
            [(a.username, float(a.last_14)) for a in flow.annotators[:20]],
            title="Labels per annotator, last 14 days",
            unit="labels",
        )
        if flow.annotators
        else None,
        "judges": judges,
        "n_stale_judges": sum(1 for j in judges if j.stale),
        "monitor_panels": extensions.judges().monitor_panels(project),
        "members": project.memberships.select_related("user").order_by("role", "user__username"),
    }
