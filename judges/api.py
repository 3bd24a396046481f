"""The judges part of the token API: create versions, start runs, read and cancel them.

Mounted on the project's NinjaAPI in annotate/api.py (`api.add_router("/", "judges.api.router")`), whose TokenAuth
and per-token throttle apply; errors have its shape, {"detail": ..., "errors": [{"field", "message"}]}. This module
imports nothing from annotate.api, so either can be imported first. Every endpoint goes through
`annotate.selectors.project_for_user(..., role="lead")`, so annotators and outsiders get the same 404 as on the pages.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction
from django.http import HttpRequest
from ninja import Router, Schema, Status

from annotate import carry
from annotate import selectors as annotate_selectors
from annotate.models import Membership, Project
from judges import card, monitor, selectors
from judges.models import JudgeRun, JudgeVersion, Monitor
from judges.services import judge_runs, judge_versions

router = Router(tags=["judges"])


def _user(request: HttpRequest) -> User | AnonymousUser:
    """The caller: the user the API's TokenAuth returned (request.auth), else the request's user."""
    auth, user = getattr(request, "auth", None), request.user
    if isinstance(auth, User):
        return auth
    return user if isinstance(user, User) else AnonymousUser()


def _project(request: HttpRequest, slug: str) -> Project:
    project, _role = annotate_selectors.project_for_user(_user(request), slug, role=Membership.Role.LEAD)
    return project


class ExampleIn(Schema):
    external_id: str
    verdict: str
    reasoning: str = ""


class VersionIn(Schema):
    user_template: str
    system_template: str = ""
    endpoint: str
    model: str
    temperature: float = 0.0
    max_tokens: int = 400
    examples: list[ExampleIn] = []
    allow_alias: bool = False
    parent_id: int | None = None
    change_note: str = ""


class VersionOut(Schema):
    id: int
    judge_id: int
    number: int
    parent_id: int | None
    endpoint: str
    model: str
    model_is_alias: bool
    offline_standin: bool
    temperature: float
    max_tokens: int
    created_at: dt.datetime


class RunIn(Schema):
    scope: str = JudgeRun.Scope.DEV
    # The held-out test split's confirmation: needed for `test`, and for `all` or `items` to include test items (`all`
    # leaves them out without it; `items` naming any is refused with 400). Every run with test items is counted.
    confirm_test: bool = False
    item_ids: list[int] | None = None


class RunOut(Schema):
    id: int
    version_id: int
    status: str
    scope: str
    test_run_number: int | None
    n_test_items: int
    n_items: int
    n_calls: int
    n_verdicts: int
    calls_made: int
    cache_hits: int
    n_invalid: int
    n_errors: int
    tokens_in: int
    tokens_out: int
    estimate: dict[str, Any]
    cost_actual_usd: str | None
    model_is_alias: bool
    offline_standin: bool
    error: str
    report: dict[str, Any] | None
    # Why the run's judge–human figures will be (or are) empty: no human labels on its criterion under the
    # definition it was run on (annotate.carry.no_labels_warning); "" otherwise.
    warning: str = ""


class FieldErrorOut(Schema):
    field: str
    message: str


class ErrorOut(Schema):
    detail: str
    errors: list[FieldErrorOut] = []


def _refused(exc: ValidationError) -> Status:
    """A service's refusal as a 400 naming every problem (the API's shape for requests that cannot be done)."""
    problems = list(exc.messages)
    return Status(
        400,
        ErrorOut(
            detail=problems[0] if len(problems) == 1 else f"{len(problems)} problems; nothing was written.",
            errors=[FieldErrorOut(field="", message=m) for m in problems],
        ),
    )


def _version_out(version: JudgeVersion) -> VersionOut:
    return VersionOut(
        id=version.pk,
        judge_id=version.judge_id,
        number=version.number,
        parent_id=version.parent_id,
        endpoint=version.endpoint,
        model=version.model,
        model_is_alias=version.model_is_alias,
        offline_standin=version.uses_standin,
        temperature=version.temperature,
        max_tokens=version.max_tokens,
        created_at=version.created_at,
    )


def _run_out(run: JudgeRun) -> RunOut:
    totals = selectors.run_totals(run=run)
    return RunOut(
        id=run.pk,
        version_id=run.version_id,
        status=run.status,
        scope=run.scope,
        test_run_number=run.test_run_number,
        n_test_items=run.n_test_items,
        n_items=run.n_items,
        n_calls=run.n_calls,
        n_verdicts=totals.n_verdicts,
        calls_made=totals.calls_made,
        cache_hits=totals.cache_hits,
        n_invalid=totals.n_invalid,
        n_errors=totals.n_errors,
        tokens_in=totals.tokens_in,
        tokens_out=totals.tokens_out,
        estimate=run.estimate,
        cost_actual_usd=None if totals.cost is None else f"{totals.cost:.6f}",
        model_is_alias=run.version.model_is_alias,
        offline_standin=run.version.uses_standin,
        error=run.error,
        report=run.report,
        warning=carry.no_labels_warning(rubric_version=run.rubric_version, key=run.version.judge.criterion_key),
    )


@router.post("/projects/{slug}/judges/{judge_id}/versions", response={201: VersionOut, 400: ErrorOut, 404: ErrorOut})
def version_create(request: HttpRequest, slug: str, judge_id: int, data: VersionIn) -> Status:
    """A new version of a judge (versions are immutable; `parent_id` names the version it was edited from)."""
    project = _project(request, slug)
    judge = selectors.judge_for_project(project=project, judge_id=judge_id)
    parent = None
    if data.parent_id is not None:
        parent = selectors.version_for_project(project=project, version_id=data.parent_id)
    try:
        version = judge_versions.judge_version_create(
            judge=judge,
            user_template=data.user_template,
            system_template=data.system_template,
            endpoint=data.endpoint,
            model=data.model,
            temperature=data.temperature,
            max_tokens=data.max_tokens,
            examples=[judge_versions.ExampleData(e.external_id, e.verdict, e.reasoning) for e in data.examples],
            allow_alias=data.allow_alias,
            parent=parent,
            change_note=data.change_note,
            actor=_user(request),
        )
    except ValidationError as exc:
        return _refused(exc)
    return Status(201, _version_out(version))


@router.post("/projects/{slug}/judge-versions/{version_id}/runs", response={201: RunOut, 400: ErrorOut, 404: ErrorOut})
def run_start(request: HttpRequest, slug: str, version_id: int, data: RunIn) -> Status:
    """Start a run: dev by default; `all`; `items` with `item_ids`; `test` only with `confirm_test`. The test split
    stays held out: `all` leaves its items out and `items` naming any is refused (400) unless `confirm_test`; a run
    with test items counts as a look at test (`test_run_number`, `n_test_items`)."""
    project = _project(request, slug)
    version = selectors.version_for_project(project=project, version_id=version_id)
    try:
        run = judge_runs.judge_run_start(
            version=version,
            scope=data.scope,
            item_ids=data.item_ids,
            confirm_test=data.confirm_test,
            actor=_user(request),
        )
    except ValidationError as exc:
        return _refused(exc)
    return Status(201, _run_out(run))


@router.get("/projects/{slug}/judge-runs/{run_id}", response={200: RunOut, 404: ErrorOut})
def run_read(request: HttpRequest, slug: str, run_id: int) -> RunOut:
    """A run's status, progress, cache hits, tokens, cost, and its judge–human report once done."""
    project = _project(request, slug)
    return _run_out(selectors.run_for_project(project=project, run_id=run_id))


@router.post("/projects/{slug}/judge-runs/{run_id}/cancel", response={200: RunOut, 404: ErrorOut})
def run_cancel(request: HttpRequest, slug: str, run_id: int) -> RunOut:
    project = _project(request, slug)
    run = selectors.run_for_project(project=project, run_id=run_id)
    judge_runs.judge_run_cancel(run=run)
    return _run_out(run)


@router.get(
    "/projects/{slug}/judge-versions/{version_id}/card", response={200: dict[str, Any], 404: ErrorOut, 409: ErrorOut}
)
def version_card(request: HttpRequest, slug: str, version_id: int) -> Status:
    """The version's judge card (see judges/card.py): run it with `python -m judges.card CARD.json ITEMS.jsonl`."""
    project = _project(request, slug)
    version = selectors.version_for_project(project=project, version_id=version_id)
    try:
        return Status(200, card.card_build(version=version))
    except card.CardError as exc:
        return Status(409, ErrorOut(detail=str(exc)))


class CardKeyOut(Schema):
    key: str
    env: str


@router.get("/projects/{slug}/judge-card-key", response={200: CardKeyOut, 404: ErrorOut})
def judge_card_key(request: HttpRequest, slug: str) -> Status:
    """The project's card key: the secret `python -m judges.card` checks the project's cards with (leads only)."""
    project = _project(request, slug)
    return Status(200, CardKeyOut(key=card.card_key(project.slug), env=card.KEY_ENV))


class MonitorCriterionOut(Schema):
    criterion_key: str
    version: int
    enabled: bool
    threshold: float | None
    daily_budget_usd: str | None
    daily_sample_cap: int | None
    alert: bool
    alert_days: list[str]
    latest: dict[str, Any] | None
    days: list[dict[str, Any]]


class MonitorOut(Schema):
    alert: bool
    criteria: list[MonitorCriterionOut]


@router.get("/projects/{slug}/monitor", response={200: MonitorOut, 404: ErrorOut})
def monitor_read(request: HttpRequest, slug: str) -> dict[str, Any]:
    """The daily monitor: per monitored criterion, the corrected pass rate of each of the last 14 computed days with
    its 95% interval. `alert` is true when a day's interval lies wholly below the lead's threshold (`alert_days`)."""
    from judges.monitor_views import day_json, monitor_panels

    panels = monitor_panels(project=_project(request, slug))
    criteria = [
        {
            "criterion_key": p.criterion_key,
            "version": p.monitor.version.number,
            "enabled": p.monitor.enabled,
            "threshold": p.monitor.threshold,
            "daily_budget_usd": None if p.monitor.daily_budget_usd is None else str(p.monitor.daily_budget_usd),
            "daily_sample_cap": p.monitor.daily_sample_cap,
            "alert": bool(p.alert_days),
            "alert_days": [d.day.isoformat() for d in p.alert_days],
            "latest": day_json(p.latest) if p.latest else None,
            "days": [day_json(d) for d in p.days],
        }
        for p in panels
    ]
    return {"alert": any(c["alert"] for c in criteria), "criteria": criteria}


class MonitorSettingIn(Schema):
    criterion_key: str
    version_id: int
    daily_budget_usd: Decimal | None = None
    threshold: float | None = None
    daily_sample_cap: int | None = None
    enabled: bool = True


class MonitorSettingsIn(Schema):
    criteria: list[MonitorSettingIn]


class MonitorSettingOut(Schema):
    criterion_key: str
    judge_id: int
    version_id: int
    version: int
    daily_budget_usd: str | None
    threshold: float | None
    daily_sample_cap: int | None
    enabled: bool
    updated_at: dt.datetime


class MonitorSettingsOut(Schema):
    criteria: list[MonitorSettingOut]


def _monitor_settings_out(project: Project) -> MonitorSettingsOut:
    monitors = Monitor.objects.filter(judge__project=project).select_related("judge", "version")
    return MonitorSettingsOut(
        criteria=[
            MonitorSettingOut(
                criterion_key=m.judge.criterion_key,
                judge_id=m.judge_id,
                version_id=m.version_id,
                version=m.version.number,
                daily_budget_usd=None if m.daily_budget_usd is None else str(m.daily_budget_usd),
                threshold=m.threshold,
                daily_sample_cap=m.daily_sample_cap,
                enabled=m.enabled,
                updated_at=m.updated_at,
            )
            for m in monitors.order_by("judge__criterion_key", "judge_id")
        ]
    )


@router.get("/projects/{slug}/monitor/settings", response={200: MonitorSettingsOut, 404: ErrorOut})
def monitor_settings_read(request: HttpRequest, slug: str) -> MonitorSettingsOut:
    """The daily monitor's settings, per monitored criterion: the judge version, daily budget (USD, empty: every
    record), daily sample cap (records, empty: none of its own), threshold (empty: no alert) and whether it runs."""
    return _monitor_settings_out(_project(request, slug))


@router.put("/projects/{slug}/monitor/settings", response={200: MonitorSettingsOut, 400: ErrorOut, 404: ErrorOut})
def monitor_settings_update(request: HttpRequest, slug: str, payload: MonitorSettingsIn) -> Status:
    """Set the daily monitor of each criterion listed (`version_id` names a calibrated version of a judge of that
    criterion), as the monitor page does and checked by the same service. All or nothing: any problem answers 400
    naming every one (`criteria.<i>.<field>`) and nothing is written. Criteria not listed keep their settings (turn
    one off with `"enabled": false`)."""
    project = _project(request, slug)
    errors: list[FieldErrorOut] = []
    chosen: list[tuple[MonitorSettingIn, JudgeVersion]] = []
    seen: set[str] = set()
    for i, entry in enumerate(payload.criteria):
        where = f"criteria.{i}"
        if entry.criterion_key in seen:
            errors.append(FieldErrorOut(field=f"{where}.criterion_key", message="This criterion is listed twice."))
            continue
        seen.add(entry.criterion_key)
        version = (
            JudgeVersion.objects.filter(judge__project=project, pk=entry.version_id).select_related("judge").first()
        )
        if version is None:
            errors.append(
                FieldErrorOut(field=f"{where}.version_id", message=f"No judge version {entry.version_id} here.")
            )
            continue
        if version.judge.criterion_key != entry.criterion_key:
            message = f"Version {entry.version_id} judges {version.judge.criterion_key!r}, not {entry.criterion_key!r}."
            errors.append(FieldErrorOut(field=f"{where}.version_id", message=message))
            continue
        try:
            monitor.monitor_check(
                judge=version.judge,
                version=version,
                daily_budget_usd=entry.daily_budget_usd,
                threshold=entry.threshold,
                daily_sample_cap=entry.daily_sample_cap,
            )
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                name = (
                    where if field == NON_FIELD_ERRORS else f"{where}.{'version_id' if field == 'version' else field}"
                )
                errors.extend(FieldErrorOut(field=name, message=m) for m in messages)
            continue
        chosen.append((entry, version))
    if errors:
        detail = errors[0].message if len(errors) == 1 else f"{len(errors)} problems; nothing was written."
        return Status(400, ErrorOut(detail=detail, errors=errors))
    user = _user(request)
    try:
        with transaction.atomic():
            for entry, version in chosen:
                monitor.monitor_set(
                    judge=version.judge,
                    version=version,
                    daily_budget_usd=entry.daily_budget_usd,
                    threshold=entry.threshold,
                    daily_sample_cap=entry.daily_sample_cap,
                    enabled=entry.enabled,
                    actor=user if isinstance(user, User) else None,
                )
    except ValidationError as exc:  # a version's calibration changed since the check: still all or nothing
        return _refused(exc)
    return Status(200, _monitor_settings_out(project))
