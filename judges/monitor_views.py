"""The daily monitor's pages and reads: the per-criterion panels the dashboard and the API show, and the lead's
settings page of one judge's monitor (p/<slug>/judges/<judge_id>/monitor/)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils.safestring import SafeString
from django.views.decorators.http import require_http_methods

from annotate import selectors as annotate_selectors
from annotate.http import AuthedRequest
from annotate.models import Membership, Project
from judges import monitor as monitor_service
from judges import selectors
from judges.models import Judge, Monitor, MonitorDay
from judges.monitor_chart import DayPoint, monitor_chart

DAYS_SHOWN = 14


@dataclass(frozen=True)
class MonitorPanel:
    monitor: Monitor
    criterion_key: str
    days: list[MonitorDay]  # oldest first
    chart: SafeString
    latest: MonitorDay | None

    @property
    def alert_days(self) -> list[MonitorDay]:
        return [d for d in self.days if d.alert]


def monitor_panels(*, project: Project, days: int = DAYS_SHOWN) -> list[MonitorPanel]:
    """The monitored criteria of the project with their last `days` computed days (two queries)."""
    monitors = list(
        Monitor.objects.filter(judge__project=project)
        .select_related("judge", "version")
        .order_by("judge__criterion_key")
    )
    if not monitors:
        return []
    by_key: dict[str, list[MonitorDay]] = {}
    keys = [m.judge.criterion_key for m in monitors]
    rows = MonitorDay.objects.filter(project=project, criterion_key__in=keys).select_related("version")
    for row in rows.order_by("criterion_key", "-day"):
        group = by_key.setdefault(row.criterion_key, [])
        if len(group) < days:
            group.append(row)
    panels = []
    for m in monitors:
        shown = list(reversed(by_key.get(m.judge.criterion_key, [])))
        points = [
            DayPoint(
                label=d.day.strftime("%b %d"),
                value=d.value,
                lo=d.ci_low,
                hi=d.ci_high,
                alert=d.alert,
                note=f"{d.n_ok} of {d.n_records} records judged",
            )
            for d in shown
        ]
        chart = monitor_chart(
            points,
            title=f"Corrected pass rate per day of {m.judge.criterion_key}, with 95% intervals",
            threshold=m.threshold,
        )
        panels.append(MonitorPanel(m, m.judge.criterion_key, shown, chart, shown[-1] if shown else None))
    return panels


def day_json(row: MonitorDay) -> dict[str, Any]:
    """One computed day as the API shows it."""
    return {
        "day": row.day.isoformat(),
        "version": row.version.number,
        "calibration_run_id": row.calibration_run_id,
        "n_records": row.n_records,
        "n_sampled": row.n_sampled,
        "n_judged": row.n_ok,
        "n_pass": row.n_pass,
        "n_invalid": row.n_invalid,
        "n_errors": row.n_errors,
        "observed_pass_rate": row.observed_pass_rate,
        "corrected_pass_rate": row.value,
        "ci_low": row.ci_low,
        "ci_high": row.ci_high,
        "reason": row.reason,
        "estimator": row.estimator,
        "tpr": row.tpr,
        "tnr": row.tnr,
        "threshold": row.threshold,
        "alert": row.alert,
        "n_called": row.n_called,
        "n_cached": row.n_cached,
        "cost_usd": None if row.cost_usd is None else str(row.cost_usd),
        "total_cost_usd": None if row.total_cost_usd is None else str(row.total_cost_usd),
        "budget_usd": None if row.budget_usd is None else str(row.budget_usd),
        "sample_note": row.sample_note,
        "computed_at": row.computed_at.isoformat(),
    }


def _form(judge: Judge, data: Any = None) -> Any:
    from judges.forms import MonitorForm

    current = Monitor.objects.filter(judge=judge).first()
    initial: dict[str, Any] = {"enabled": True}
    if current is not None:
        initial = {
            "version": current.version_id,
            "daily_budget_usd": current.daily_budget_usd,
            "daily_sample_cap": current.daily_sample_cap,
            "threshold": current.threshold,
            "enabled": current.enabled,
        }
    return MonitorForm(data, judge=judge, initial=initial), current


@require_http_methods(["GET", "POST"])
@login_required
def monitor_settings(request: AuthedRequest, slug: str, judge_id: int) -> HttpResponse:
    """A lead chooses the calibrated version that monitors the criterion, its daily budget and its threshold."""
    project, _role = annotate_selectors.project_for_user(request.user, slug, role=Membership.Role.LEAD)
    judge = selectors.judge_for_project(project=project, judge_id=judge_id)
    refused = monitor_service.project_refusal(project)
    if refused is not None:
        # Said up front: no form that could only be refused.
        context = {"project": project, "judge": judge, "refused": refused}
        return render(request, "judges/monitor.html", context, status=422 if request.method == "POST" else 200)
    form, current = _form(judge, request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            monitor_service.monitor_set(
                judge=judge,
                version=selectors.version_for_project(project=project, version_id=data["version"]),
                daily_budget_usd=data["daily_budget_usd"],
                threshold=data["threshold"],
                daily_sample_cap=data["daily_sample_cap"],
                enabled=data["enabled"],
                actor=request.user,
            )
        except ValidationError as exc:
            for message in exc.messages:
                form.add_error(None, message)
        else:
            messages.success(request, "Monitor saved: it runs on each day's production records.")
            return redirect("judges:monitor_settings", slug=project.slug, judge_id=judge.pk)
    panel = next((p for p in monitor_panels(project=project) if p.monitor.judge_id == judge.pk), None)
    context = {"project": project, "judge": judge, "form": form, "current": current, "panel": panel}
    return render(request, "judges/monitor.html", context, status=422 if form.errors else 200)
