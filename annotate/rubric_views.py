"""Criteria drift (leads): rubric versions with their agreement, outdated items to re-label, judges calibrated on an
older rubric."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotate import (
    charts,
    drift,
    extensions,
    selectors,
    tasks,
)
from annotate.http import AuthedRequest, wants_partial
from annotate.models import Membership, Project


def _drift_context(request: AuthedRequest, project: Project) -> dict[str, object]:
    counts = drift.outdated_counts(project=project)
    paginator = Paginator(drift.items_outdated(project=project), 25)
    paginator.count = counts.n_outdated  # counted above, with the queued ones, in the same pass
    page = paginator.get_page(request.GET.get("page"))
    with drift.hash_joins():
        items = list(page.object_list)
    return {
        "project": project,
        "page": page,
        "outdated": drift.outdated_page_rows(project=project, items=items),
        "n_relabel_pending": counts.n_queued,
        "relabel": drift.relabel_state(project=project),
    }


def _drift_chart(rows: list[drift.VersionRow]) -> object:
    """Krippendorff's α of each criterion across rubric versions (oldest first); a criterion missing from a version,
    or without a stored report there, is a gap in its line."""
    ordered = rows[::-1]
    keys: dict[str, str] = {}
    for row in ordered:
        for c in row.criteria:
            keys.setdefault(c.key, c.name)
    if not any(a.alpha.get("value") is not None for row in ordered for a in row.agreement):
        return None
    series = []
    for key, name in keys.items():
        points = []
        for row in ordered:
            found = next((a for a in row.agreement if a.key == key), None)
            alpha = found.alpha if found else {}
            points.append(
                charts.Point(
                    f"v{row.version.number}",
                    alpha.get("value"),
                    alpha.get("ci_low"),
                    alpha.get("ci_high"),
                    highlight=row.is_current,
                )
            )
        series.append(charts.Series(name, points))
    return charts.line_chart(
        series,
        title="Human–human agreement (Krippendorff's α) per criterion across rubric versions",
        lo=charts.scale_floor([a.alpha for row in ordered for a in row.agreement]),
        width=1040,
        height=260,
        legend_chars=max(min(max(len(name) for name in keys.values()), 28), 14),
    )


@require_GET
@login_required
def rubric_timeline(request: AuthedRequest, slug: str) -> HttpResponse:
    """Rubric versions with what changed, labels and stored agreement under each; items labeled only under older
    versions, with the action that queues them again; judges calibrated on an older rubric."""
    project, _role = selectors.project_for_user(request.user, slug, role=Membership.Role.LEAD)
    if wants_partial(request):
        return render(request, "annotate/rubric_timeline.html#outdated", _drift_context(request, project))
    rows = drift.rubric_timeline(project=project)
    judges = extensions.judges().staleness(project)
    context = {
        **_drift_context(request, project),
        "rows": rows,
        "chart": _drift_chart(rows),
        "missing_reports": drift.versions_needing_report(rows),
        "judges": judges,
        "n_stale_judges": sum(1 for j in judges if j.stale),
    }
    return render(request, "annotate/rubric_timeline.html", context)


@require_POST
@login_required
def relabel_queue(request: AuthedRequest, slug: str) -> HttpResponse:
    """Ask the worker to queue every item labeled only under an older rubric version for re-labeling under the
    current one; the page shows the request waiting, then its outcome."""
    project, _role = selectors.project_for_user(request.user, slug, role=Membership.Role.LEAD)
    drift.relabel_request(project=project, actor=request.user)
    if wants_partial(request):
        return render(request, "annotate/rubric_timeline.html#outdated", _drift_context(request, project))
    messages.success(request, "Queueing the outdated items for re-labeling: this page shows when it is done.")
    return redirect("rubric_timeline", slug=project.slug)


@require_POST
@login_required
def rubric_reports_compute(request: AuthedRequest, slug: str) -> HttpResponse:
    """Compute the agreement of the rubric versions whose report is missing or older than their labels."""
    project, _role = selectors.project_for_user(request.user, slug, role=Membership.Role.LEAD)
    versions = drift.versions_needing_report(drift.rubric_timeline(project=project))
    ids = [version.pk for version in versions]
    transaction.on_commit(lambda: [tasks.rubric_version_report_compute.delay(pk) for pk in ids])
    messages.info(
        request,
        f"Computing agreement for {len(versions)} rubric version{'s' if len(versions) != 1 else ''}; "
        "reload in a moment."
        if versions
        else "Every rubric version with labels already has its agreement computed.",
    )
    return redirect("rubric_timeline", slug=project.slug)
