"""Pages. Each view: access helper, then form, then service, then render or redirect."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import connection, transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST, require_safe
from django_htmx.http import push_url, reswap, retarget, trigger_client_event

from annotate import (
    carry,
    charts,
    drift,
    export_formats,
    exports,
    history,
    imports,
    ratelimit,
    reports,
    samples,
    selectors,
    services,
    skips,
    tasks,
    tokens,
)
from annotate.cache import redis_health
from annotate.forms import ExportForm, ImportConfirmForm, ImportUploadForm, ProjectStatusForm, TokenCreateForm
from annotate.http import partial_target, wants_partial
from annotate.keymap import keymap
from annotate.models import AgreementReport, Criterion, ImportJob, Item, Membership, Project
from annotate.splits import shown_order
from annotate.visibility import ItemShown, item_shown
from judges import monitor_views, staleness


@require_safe  # GET and HEAD: a HEAD / (a monitor, a proxy's check) answers like a GET
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
    if wants_partial(request):
        return _render_project(request, project=project, role=role, status_error=status_error, partial="status")
    if status_error:
        messages.error(request, status_error)
    else:
        messages.success(request, f"Project is now {project.get_status_display().lower()}.")
    return redirect("project_detail", slug=project.slug)


def _render_project(
    request: HttpRequest, *, project: Project, role: str, status_error: str = "", partial: str = ""
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
        context["progress"] = selectors.annotator_progress(project=project, annotator=request.user)  # type: ignore[arg-type]
    return render(request, "annotate/project_detail.html", context)


def _scale_floor(figures: list[dict[str, Any]]) -> float:
    """Where a chart of agreement figures starts: 0, or below it when a figure or its interval is negative, at a
    value that keeps the ticks round (the scale ends at 1)."""
    lows = [f["ci_low"] if f.get("ci_low") is not None else f["value"] for f in figures if f.get("value") is not None]
    low = min(lows, default=0.0)
    return 0.0 if low >= 0 else (-0.6 if low >= -0.6 else -1.0)


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
    judges = list(staleness.judge_staleness(project).values())
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
            lo=_scale_floor([a.alpha for a in agreement]),
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
        "monitor_panels": monitor_views.monitor_panels(project=project),
        "members": project.memberships.select_related("user").order_by("role", "user__username"),
    }


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and compose: the process answers and the database is reachable (else 503). Redis
    is reported (PING latency, circuit breaker) but does not fail the check: the app works on without it."""
    redis = redis_health()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return JsonResponse({"status": "error", "database": "unreachable", "redis": redis}, status=503)
    return JsonResponse({"status": "ok", "database": "ok", "redis": redis})


# --- Labeling -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemCard:
    """What the labeling form shows for one item: pairwise outputs already in the annotator's left/right order."""

    item: Item
    form_key: str
    shown_order: str | None
    left: str
    right: str
    # The external id and metadata the project lets labelers see (annotate.visibility): templates read these,
    # never item.external_id or item.metadata.
    shown: ItemShown
    # The criteria this annotator still owes on the item: all of them, or (labels carried over a rubric change) only
    # the added or redefined ones. `carried` says the others are kept from an earlier rubric version.
    criteria: tuple[Criterion, ...] = ()
    carried: bool = False


def _card(
    project: Project,
    item: Item | None,
    user_id: int | None,
    criteria: tuple[Criterion, ...] = (),
    carried: bool = False,
) -> ItemCard | None:
    if item is None:
        return None
    shown = shown_order(user_id, item.pk) if item.output_a or item.output_b else None
    left, right = (item.output_a, item.output_b) if shown != "ba" else (item.output_b, item.output_a)
    return ItemCard(
        item=item,
        form_key=uuid.uuid4().hex,
        shown_order=shown,
        left=left,
        right=right,
        shown=item_shown(project, item),
        criteria=criteria,
        carried=carried,
    )


def _cards(request: HttpRequest, project: Project, items: list[Item]) -> list[ItemCard]:
    """The labeling forms of `items`, each asking only for the criteria this annotator still owes on it."""
    criteria = selectors.criteria_of_version(project.current_rubric_id)
    missing = carry.criteria_missing(criteria=criteria, annotator=request.user, item_ids=[i.pk for i in items])  # type: ignore[arg-type]
    cards = []
    for item in items:
        owed = missing.get(item.pk, criteria) or criteria
        card = _card(project, item, request.user.pk, owed, len(owed) < len(criteria))
        if card is not None:
            cards.append(card)
    return cards


def _keys(project: Project, page: str) -> dict[str, object]:
    """The page's keyboard map: the `?` overlay is rendered from `keymap`, label.js reads `keymap_data`."""
    bindings = keymap(page=page, kind=project.kind, allow_tie=project.allow_tie)
    return {"keymap": bindings, "keymap_data": [binding.as_data() for binding in bindings]}


def _label_context(request: HttpRequest, project: Project, items: list[Item], **extra: object) -> dict[str, object]:
    """The labeling screen: the first item is shown, the others wait hidden (prefetched), in order."""
    criteria = selectors.criteria_of_version(project.current_rubric_id)
    cards = _cards(request, project, items)
    return {
        "project": project,
        "criteria": criteria,
        "current": cards[0] if cards else None,
        "upcoming": cards[1:],
        "values": {},
        "note": "",
        "error": "",
        **extra,
    }


def _page_items(request: HttpRequest) -> set[int] | None:
    """The items the labeling page says it holds (shown, prefetched, being submitted): its `page_items` fields.

    None when it does not say (a page from before it did, a scripted client): it is then taken to hold every lease.
    """
    if "page_items" not in request.POST:
        return None
    held = set()
    for raw in request.POST.getlist("page_items")[:100]:
        try:
            held.add(int(raw))
        except ValueError:
            continue
    return held


def _next_for_page(request: HttpRequest, project: Project) -> HttpResponse:
    """The htmx answer to a submit, a skip or a refill: the page's next item, to wait hidden until it is shown.

    It is an item leased to this annotator that the page does not hold yet, or a fresh claim only when there is
    none, so answers that cross on a slow link never leave an item leased to someone whose page does not have it.
    """
    item = services.queue_next(
        project=project,
        annotator=request.user,  # type: ignore[arg-type]
        rubric_version_id=project.current_rubric_id,  # type: ignore[arg-type]
        holding=_page_items(request),
    )
    upcoming = _cards(request, project, [item]) if item else []
    context = _label_context(request, project, [], upcoming=upcoming)
    if item is None:
        context["skips"] = skips.skip_summary(project=project, annotator=request.user)  # type: ignore[arg-type]
    return render(request, "annotate/label.html#prefetched", context)


@require_GET
@login_required
def label_queue(request: HttpRequest, slug: str) -> HttpResponse:
    """The labeling screen: the current item, with the next one already claimed and rendered (hidden)."""
    project, _role = selectors.project_for_user(request.user, slug)
    if project.status != Project.Status.ACTIVE or project.current_rubric_id is None:
        return render(request, "annotate/label.html", {"project": project, "inactive": True})
    items = services.queue_fill(project=project, annotator=request.user, rubric_version_id=project.current_rubric_id)  # type: ignore[arg-type]
    # ?item=ID (a reopened skip, annotate.skip_views): that lease is shown first, the others wait behind it.
    first = request.GET.get("item", "")
    items.sort(key=lambda item: str(item.pk) != first)
    context = _label_context(request, project, items, **_keys(project, "queue"))
    if not items:
        context["skips"] = skips.skip_summary(project=project, annotator=request.user)  # type: ignore[arg-type]
    return render(request, "annotate/label.html", context)


@require_POST
@login_required
def label_submit(request: HttpRequest, slug: str, item_id: int) -> HttpResponse:
    """Save every criterion of one item. htmx gets the page's next item back; a plain POST is redirected."""
    project, _role = selectors.project_for_user(request.user, slug)
    criteria = selectors.criteria_of_version(project.current_rubric_id)
    if project.status != Project.Status.ACTIVE or not criteria:
        return _label_refused(request, project, item_id, "This project is not open for labeling right now.", 409)
    # Only the criteria the annotator still owes on the item (all of them when nothing was carried over); when they
    # owe none, the service recognises a repeated submit or says the item is already labeled.
    owed = carry.criteria_missing(criteria=criteria, annotator=request.user, item_ids=[item_id])[item_id]  # type: ignore[arg-type]
    criteria = owed or tuple(c for c in criteria if f"c-{c.key}" in request.POST) or criteria
    shown = shown_order(request.user.pk, item_id) if project.is_pairwise else None
    values, problems = services.label_values_from_form(
        project=project, criteria=criteria, data=request.POST, shown=shown
    )
    note = request.POST.get("note", "")
    try:
        if problems:
            raise services.QueueError(" ".join(problems))
        services.label_submit(
            project=project,
            annotator=request.user,  # type: ignore[arg-type]
            item_id=item_id,
            criteria=criteria,
            values=values,
            note=note,
            time_spent_ms=_time_spent(request.POST.get("time_spent_ms")),
            submission_key=request.POST.get("form_key", ""),
        )
    except services.ItemNotNeeded as exc:
        if not wants_partial(request):
            messages.warning(request, exc.message)
            return redirect("label_queue", slug=project.slug)
        return _label_refused(request, project, item_id, exc.message, exc.status)
    except services.QueueError as exc:
        return _label_refused(request, project, item_id, exc.message, exc.status, values=request.POST, note=note)
    if not wants_partial(request):
        return redirect("label_queue", slug=project.slug)
    return _next_for_page(request, project)


@require_POST
@login_required
def label_next(request: HttpRequest, slug: str) -> HttpResponse:
    """The page has no item waiting and nothing on its way: send it the next one (htmx). Without htmx: the queue."""
    project, _role = selectors.project_for_user(request.user, slug)
    if not wants_partial(request):
        return redirect("label_queue", slug=project.slug)
    if project.status != Project.Status.ACTIVE or project.current_rubric_id is None:
        return _label_refused(request, project, 0, "This project is not open for labeling right now.", 409)
    return _next_for_page(request, project)


def _label_refused(
    request: HttpRequest,
    project: Project,
    item_id: int,
    message: str,
    status: int,
    *,
    values: object = None,
    note: str = "",
) -> HttpResponse:
    """The reason, for the annotator. htmx: a short message in the `label-refused` event (HX-Trigger), which the
    page shows next to the form it keeps; it never reads the body. Without JavaScript: the form again, filled in."""
    if wants_partial(request):
        response = render(request, "annotate/label.html#error", {"error": message}, status=status)
        return trigger_client_event(response, "label-refused", {"message": message[:300]})
    item = Item.objects.filter(project=project, pk=item_id).first()
    context = _label_context(request, project, [item] if item else [], error=message, note=note)
    context.update(_keys(project, "queue"))
    if item is None:
        context["skips"] = skips.skip_summary(project=project, annotator=request.user)  # type: ignore[arg-type]
    context["values"] = _display_values(project, values, shown_order(request.user.pk, item_id))
    return render(request, "annotate/label.html", context, status=status)


def _display_values(project: Project, data: object, shown: str) -> dict[str, str]:
    if not hasattr(data, "items"):
        return {}
    return {key[2:]: str(value) for key, value in data.items() if key.startswith("c-")}  # type: ignore[attr-defined]


def _time_spent(raw: str | None) -> int | None:
    try:
        value = int(raw or "")
    except ValueError:
        return None
    return value if 0 <= value <= 24 * 3600 * 1000 else None


@require_POST
@login_required
def label_skip(request: HttpRequest, slug: str, item_id: int) -> HttpResponse:
    project, _role = selectors.project_for_user(request.user, slug)
    try:
        services.queue_skip(project=project, annotator=request.user, item_id=item_id)  # type: ignore[arg-type]
    except services.QueueError as exc:
        return _label_refused(request, project, item_id, exc.message, exc.status)
    if not wants_partial(request):
        return redirect("label_queue", slug=project.slug)
    return _next_for_page(request, project)


@require_POST
@login_required
def label_heartbeat(request: HttpRequest, slug: str) -> HttpResponse:
    """Keeps this annotator's leases alive while the labeling page is open."""
    project, _role = selectors.project_for_user(request.user, slug)
    services.queue_renew(project=project, annotator=request.user)  # type: ignore[arg-type]
    return HttpResponse(status=204)


@require_GET
@login_required
def label_undo(request: HttpRequest, slug: str) -> HttpResponse:
    """Reopen the annotator's most recently submitted item in this project for correction."""
    project, _role = selectors.project_for_user(request.user, slug)
    last = selectors.labels_last_item(project=project, annotator=request.user)  # type: ignore[arg-type]
    if last is None:
        messages.info(request, "Nothing to undo yet: you have not submitted an item in this project.")
        return redirect("label_queue", slug=project.slug)
    return redirect("label_edit", slug=project.slug, item_id=last)


@require_http_methods(["GET", "POST"])
@login_required
def label_edit(request: HttpRequest, slug: str, item_id: int) -> HttpResponse:
    """Change one's own labels on an item (Undo and history). Never shows anyone else's labels."""
    project, _role = selectors.project_for_user(request.user, slug)
    mine = selectors.labels_of_annotator(project=project, annotator=request.user, item_id=item_id)  # type: ignore[arg-type]
    if not mine:
        raise Http404("You have no labels on that item.")
    item = mine[0].item
    # The criteria the annotator has labels on (an item whose labels were carried over a rubric change may still
    # owe the redefined ones: those are answered from the queue, not here).
    labeled = {label.criterion_id for label in mine}
    criteria = tuple(c for c in selectors.criteria_of_version(project.current_rubric_id) if c.pk in labeled)
    shown = shown_order(request.user.pk, item.pk) if project.is_pairwise else None
    error = ""
    if request.method == "POST":
        try:
            history.label_edit_from_form(
                project=project,
                annotator=request.user,  # type: ignore[arg-type]
                item_id=item.pk,
                data=request.POST,
            )
        except services.QueueError as exc:
            error = exc.message
        else:
            messages.success(request, "Your labels were updated.")
            return redirect((request.POST.get("next") == "history" and "label_history") or "label_queue", slug=slug)
    by_key = {label.criterion.key: label for label in mine}
    display = {}
    for key, label in by_key.items():
        value = label.value
        if project.is_pairwise and value in {"a", "b"}:
            value = "left" if (value == "a") == (shown == "ab") else "right"
        display[key] = value
    back = request.GET.get("next", request.POST.get("next", ""))
    return render(
        request,
        "annotate/label_edit.html",
        {
            "project": project,
            "criteria": criteria,
            "card": _card(project, item, request.user.pk),
            "values": display,
            "revisions": {key: label.revision for key, label in by_key.items()},
            "note": mine[0].note,
            "error": error,
            "next": back,
            "cancel_url": reverse("label_history" if back == "history" else "label_queue", args=[project.slug]),
            **_keys(project, "edit"),
        },
        status=409 if error else 200,
    )


@require_GET
@login_required
def label_progress(request: HttpRequest, slug: str) -> HttpResponse:
    """Labeled today, left for this annotator, project completion: loaded beside the labeling form."""
    project, _role = selectors.project_for_user(request.user, slug)
    progress = selectors.annotator_progress(project=project, annotator=request.user)  # type: ignore[arg-type]
    return render(request, "annotate/label.html#progress", {"project": project, "progress": progress})


# --- Getting data in: item and label imports ------------------------------------------------------------------


def _import_page(
    request: HttpRequest, project: Project, form: ImportUploadForm, *, status: int = 200, error: str = ""
) -> HttpResponse:
    jobs = list(project.import_jobs.select_related("created_by")[:10])
    context = {
        "project": project,
        "form": form,
        "error": error,
        "jobs": [(job, imports.import_job_progress(job) if job.is_running else None) for job in jobs],
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
def import_start(request: HttpRequest, slug: str) -> HttpResponse:
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
        job = imports.import_job_create(
            project=project,
            actor=request.user,
            kind=form.cleaned_data["kind"],
            upload=form.cleaned_data["file"],
            fmt=form.cleaned_data["file_format"],
        )
    except imports.ImportRefused as exc:
        return _import_page(request, project, form, status=exc.status, error=exc.message)
    imports.import_job_start_preview(job=job)
    url = reverse("import_job", args=[project.slug, job.pk])
    if wants_partial(request):
        job.refresh_from_db()
        return push_url(_render_job(request, project, job, partial="job"), url)
    return redirect(url)


def _render_job(request: HttpRequest, project: Project, job: ImportJob, *, partial: str = "") -> HttpResponse:
    context = {
        "project": project,
        "job": job,
        "report": imports.ImportReport.from_dict(job.report) if job.report else None,
        "progress": imports.import_job_progress(job) if job.is_running else None,
        "confirm_form": ImportConfirmForm(),
    }
    return render(request, "annotate/import_job.html" + (f"#{partial}" if partial else ""), context)


@require_GET
@login_required
def import_job(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    """One import: its progress while running (htmx polls this), then the preview, the bad rows, or the result."""
    project, _role = selectors.project_for_user(request.user, slug, role=Membership.Role.LEAD)
    job = get_object_or_404(ImportJob, project=project, pk=job_id)
    return _render_job(request, project, job, partial="job" if wants_partial(request) else "")


@require_POST
@login_required
def import_confirm(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    """The lead confirms a checked file. A second submit of the same form finds the job already claimed."""
    project, _role = selectors.project_for_user(request.user, slug, role=Membership.Role.LEAD)
    job = get_object_or_404(ImportJob, project=project, pk=job_id)
    form = ImportConfirmForm(request.POST)
    imports.import_job_confirm(job=job, update=form.is_valid() and form.cleaned_data["update"])
    if wants_partial(request):
        job.refresh_from_db()
        return _render_job(request, project, job, partial="job")
    return redirect("import_job", slug=project.slug, job_id=job.pk)


# --- Personal API tokens --------------------------------------------------------------------------------------


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def token_list(request: HttpRequest) -> HttpResponse:
    """The user's API tokens. A new token's full text is in this one response and nowhere else, ever."""
    form = TokenCreateForm(request.POST or None)
    created = ""
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                _token, created = tokens.token_create(user=request.user, name=form.cleaned_data["name"])  # type: ignore[arg-type]
            except ValidationError as exc:
                form.add_error("name", exc)
            else:
                form, status = TokenCreateForm(), 201
    context = {"tokens": request.user.api_tokens.all(), "form": form, "created": created}  # type: ignore[union-attr]
    if wants_partial(request):
        # htmx swaps only 2xx answers, and the form with its error must show.
        return render(request, "annotate/tokens.html#tokens", context)
    return render(request, "annotate/tokens.html", context, status=status)


@require_POST
@login_required
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    """Revoke one of the user's own tokens at once; another user's token id is a 404."""
    token = tokens.token_revoke(user=request.user, token_id=token_id)  # type: ignore[arg-type]
    if token is None:
        raise Http404("No such token.")
    if wants_partial(request):
        context = {"tokens": request.user.api_tokens.all(), "form": TokenCreateForm(), "created": ""}  # type: ignore[union-attr]
        return render(request, "annotate/tokens.html#tokens", context)
    messages.success(request, f"Token “{token.name}” is revoked: it no longer opens the API.")
    return redirect("token_list")


# --- Agreement (leads; adjudication: annotate/adjudication_views.py) ---------------------------------------


@require_GET
@login_required
def agreement_page(request: HttpRequest, slug: str) -> HttpResponse:
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
def agreement_compute(request: HttpRequest, slug: str) -> HttpResponse:
    """Queue a recomputation now instead of waiting for the next beat."""
    project, _role = selectors.project_for_user(request.user, slug, role=Membership.Role.LEAD)
    transaction.on_commit(lambda: tasks.agreement_report_compute.delay(project.pk))
    messages.info(request, "The report is being computed; this page shows it when it is ready.")
    return redirect("agreement_page", slug=project.slug)


# --- Criteria drift (leads) -----------------------------------------------------------------------------------


def _drift_context(request: HttpRequest, project: Project) -> dict[str, object]:
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
        lo=_scale_floor([a.alpha for row in ordered for a in row.agreement]),
        width=1040,
        height=260,
        legend_chars=max(min(max(len(name) for name in keys.values()), 28), 14),
    )


@require_GET
@login_required
def rubric_timeline(request: HttpRequest, slug: str) -> HttpResponse:
    """Rubric versions with what changed, labels and stored agreement under each; items labeled only under older
    versions, with the action that queues them again; judges calibrated on an older rubric."""
    project, _role = selectors.project_for_user(request.user, slug, role=Membership.Role.LEAD)
    if wants_partial(request):
        return render(request, "annotate/rubric_timeline.html#outdated", _drift_context(request, project))
    rows = drift.rubric_timeline(project=project)
    judges = list(staleness.judge_staleness(project).values())
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
def relabel_queue(request: HttpRequest, slug: str) -> HttpResponse:
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
def rubric_reports_compute(request: HttpRequest, slug: str) -> HttpResponse:
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


# --- Getting data out -----------------------------------------------------------------------------------------


def _export_form(project: Project, data: QueryDict | None = None) -> ExportForm:
    keys = list(selectors.criteria_current(project=project).values_list("key", flat=True))
    return ExportForm(data, criterion_keys=keys, pairwise=project.is_pairwise)


def _export_page(
    request: HttpRequest, project: Project, form: ExportForm, *, status: int = 200, error: str = "", empty: str = ""
) -> HttpResponse:
    formats = export_formats.for_kind(pairwise=project.is_pairwise)
    context = {"project": project, "form": form, "error": error, "empty": empty, "formats": formats}
    return render(request, "annotate/export.html", context, status=status)


@require_GET
@login_required
def export_page(request: HttpRequest, slug: str) -> HttpResponse:
    """The export options; the form asks export_download for the file."""
    project, _role = selectors.project_for_user(request.user, slug, role=Membership.Role.LEAD)
    return _export_page(request, project, _export_form(project))


@require_GET
@login_required
def export_download(request: HttpRequest, slug: str) -> HttpResponseBase:
    """The export as a download, streamed row by row from the database."""
    project, _role = selectors.project_for_user(request.user, slug, role=Membership.Role.LEAD)
    form = _export_form(project, request.GET)
    if not form.is_valid():
        return _export_page(request, project, form, status=400)
    data = form.cleaned_data
    options = exports.ExportOptions(
        fmt=data["format"],
        split=data["split"] or None,
        min_labels=data["min_labels"] or 0,
        consensus_only=data["consensus_only"],
        adjudicated_only=data["adjudicated_only"],
        criteria=tuple(data["criterion"]),
        individual=data["individual"],
        since=data["since"],
        until=data["until"],
        bom=data["bom"],
    )
    if request.GET.get("manifest") == "1":
        # The manifest alone, as JSON: what the download would hold (counts included), without the rows.
        try:
            with exports.snapshot():
                export = exports.export_prepare(project=project, options=options)
        except exports.ExportRefused as exc:
            return _export_page(request, project, form, status=400, error=str(exc))
        return JsonResponse(export.manifest, json_dumps_params={"indent": 2})
    try:
        export, stream = exports.export_stream(project=project, options=options)
    except exports.ExportRefused as exc:
        return _export_page(request, project, form, status=400, error=str(exc))
    if not export.manifest["counts"]["rows"]:
        for _chunk in stream:  # at most a CSV header: reading it to the end ends the snapshot
            pass
        return _export_page(request, project, form, empty=exports.empty_reason(export.manifest))
    response = StreamingHttpResponse(stream, content_type=exports.CONTENT_TYPES[options.fmt])
    response["Content-Disposition"] = f'attachment; filename="{exports.filename(export)}"'
    response[exports.MANIFEST_HEADER] = exports.manifest_header(export.manifest)
    response["X-Content-Type-Options"] = "nosniff"
    return response
