"""Lead-only pages for judges. Each view: the access helper (leads only; everyone else gets 404), form, service, render.

Every page and fragment goes through `annotate.selectors.project_for_user(..., role="lead")` and then looks the judge,
version or run up inside that project, so an annotator, an outsider or an id from another project all get a 404.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from annotate import selectors as annotate_selectors
from annotate.models import Item, Membership, Project
from judges import card, forms, llm, prompts, selectors, services
from judges.models import Judge, JudgeRun, JudgeVersion

LEAD = Membership.Role.LEAD


def _lead_project(request: HttpRequest, slug: str) -> Project:
    project, _role = annotate_selectors.project_for_user(request.user, slug, role=LEAD)
    return project


def _htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


def _errors(exc: ValidationError) -> list[str]:
    return list(exc.messages)


# --- Judges ---------------------------------------------------------------------------------------------------


@require_GET
@login_required
def judge_list(request: HttpRequest, slug: str) -> HttpResponse:
    project = _lead_project(request, slug)
    context = {"project": project, "rows": selectors.judges_for_project(project=project)}
    return render(request, "judges/judge_list.html" + ("#judges" if _htmx(request) else ""), context)


def _editor_context(project: Project, form: forms.JudgeVersionForm, **extra: Any) -> dict[str, Any]:
    return {
        "project": project,
        "form": form,
        "placeholders": prompts.PLACEHOLDERS,
        "answer_format": prompts.PAIRWISE_FORMAT if project.is_pairwise else prompts.BINARY_FORMAT,
        "train_items": selectors.train_items(project=project, limit=20),
        **extra,
    }


def _initial(project: Project, version: JudgeVersion | None = None) -> dict[str, Any]:
    if version is None:
        return {
            "system_template": prompts.DEFAULT_SYSTEM[project.kind],
            "user_template": prompts.DEFAULT_USER[project.kind],
            "endpoint": forms.default_endpoint(),
            "model": "gpt-4o-2024-08-06",
            "temperature": 0,
            "max_tokens": 400,
        }
    examples = "\n".join(
        f"{ex.item.external_id} {ex.verdict}" + (f" | {ex.reasoning}" if ex.reasoning else "")
        for ex in version.examples.select_related("item").order_by("position")
    )
    return {
        "system_template": version.system_template,
        "user_template": version.user_template,
        "endpoint": version.endpoint,
        "model": version.model,
        "allow_alias": version.model_is_alias,
        "temperature": version.temperature,
        "max_tokens": version.max_tokens,
        "examples": examples,
    }


def _version_args(form: forms.JudgeVersionForm) -> dict[str, Any]:
    data = form.cleaned_data
    return {
        "system_template": data["system_template"],
        "user_template": data["user_template"],
        "endpoint": data["endpoint"],
        "model": data["model"],
        "allow_alias": data["allow_alias"],
        "temperature": data["temperature"],
        "max_tokens": data["max_tokens"],
        "examples": form.parsed_examples,
        "change_note": data.get("change_note", ""),
    }


@require_http_methods(["GET", "POST"])
@login_required
def judge_new(request: HttpRequest, slug: str) -> HttpResponse:
    """A judge for a criterion that has none yet, with its first version."""
    project = _lead_project(request, slug)
    taken = set(Judge.objects.filter(project=project).values_list("criterion_key", flat=True))
    criteria = [(c.key, c.name) for c in annotate_selectors.criteria_current(project=project) if c.key not in taken]
    wanted = request.GET.get("criterion", "")
    initial = _initial(project) | ({"criterion_key": wanted} if wanted else {})
    form = forms.NewJudgeForm(request.POST or None, project=project, criteria=criteria, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                judge = services.judge_create(
                    project=project,
                    criterion_key=form.cleaned_data["criterion_key"],
                    name=form.cleaned_data["name"],
                    actor=request.user,
                )
                version = services.judge_version_create(judge=judge, actor=request.user, **_version_args(form))
        except ValidationError as exc:
            for message in _errors(exc):
                form.add_error(None, message)
        else:
            messages.success(request, f"Judge “{judge.name}” created with version 1.")
            return _to(request, reverse("judges:version_detail", args=[project.slug, version.pk]))
    context = _editor_context(project, form, title="New judge", action=reverse("judges:judge_new", args=[slug]))
    template = "judges/version_form.html" + ("#editor" if _htmx(request) and request.method == "POST" else "")
    return render(request, template, context, status=422 if form.errors else 200)


@require_GET
@login_required
def judge_detail(request: HttpRequest, slug: str, judge_id: int) -> HttpResponse:
    project = _lead_project(request, slug)
    judge = selectors.judge_for_project(project=project, judge_id=judge_id)
    runs = selectors.runs_of_judge(judge=judge)
    context = {
        "project": project,
        "judge": judge,
        "versions": judge.versions.select_related("parent", "created_by").order_by("-number"),
        "runs": runs,
        "totals": selectors.runs_totals(runs=runs),
        "n_test_runs": selectors.test_runs_count(judge=judge),
    }
    return render(request, "judges/judge_detail.html" + ("#runs" if _htmx(request) else ""), context)


@require_http_methods(["GET", "POST"])
@login_required
def version_new(request: HttpRequest, slug: str, judge_id: int) -> HttpResponse:
    """Edit a version: always makes version n+1 whose parent is the version edited (?from=ID, default the latest)."""
    project = _lead_project(request, slug)
    judge = selectors.judge_for_project(project=project, judge_id=judge_id)
    parent_id = request.GET.get("from") or request.POST.get("parent") or ""
    versions = JudgeVersion.objects.filter(judge=judge)
    parent = (versions.filter(pk=int(parent_id)) if parent_id.isdigit() else versions.order_by("-number")).first()
    form = forms.JudgeVersionForm(
        request.POST or None, project=project, needs_note=parent is not None, initial=_initial(project, parent)
    )
    if request.method == "POST" and form.is_valid():
        try:
            version = services.judge_version_create(
                judge=judge, parent=parent, actor=request.user, **_version_args(form)
            )
        except ValidationError as exc:
            for message in _errors(exc):
                form.add_error(None, message)
        else:
            messages.success(request, f"Version {version.number} saved.")
            return _to(request, reverse("judges:version_detail", args=[project.slug, version.pk]))
    context = _editor_context(
        project,
        form,
        judge=judge,
        parent=parent,
        title=f"New version of “{judge.name}”",
        action=reverse("judges:version_new", args=[slug, judge.pk]),
    )
    template = "judges/version_form.html" + ("#editor" if _htmx(request) and request.method == "POST" else "")
    return render(request, template, context, status=422 if form.errors else 200)


@require_POST
@login_required
def template_check(request: HttpRequest, slug: str) -> HttpResponse:
    """Check the editor's templates and show them rendered for one dev item, without saving anything."""
    project = _lead_project(request, slug)
    system = request.POST.get("system_template", "")
    user = request.POST.get("user_template", "")
    problems = [f"System: {p}" for p in prompts.template_problems(system, kind=project.kind)]
    problems += [f"User: {p}" for p in prompts.template_problems(user, kind=project.kind)]
    sample = Item.objects.filter(project=project, split=Item.Split.DEV).order_by("id").first()
    criterion = annotate_selectors.criteria_current(project=project).first()
    preview = None
    if sample is not None and criterion is not None:
        order = "ab" if project.is_pairwise else "one"
        preview = prompts.render_messages(
            system_template=system,
            user_template=user,
            kind=project.kind,
            item=selectors.item_data(sample, order),
            criterion_name=criterion.name,
            criterion_description=criterion.description,
        )
    context = {
        "project": project,
        "problems": problems,
        "preview": preview,
        "sample": sample,
        "used": prompts.placeholders_used(system) + prompts.placeholders_used(user),
    }
    return render(request, "judges/template_check.html" + ("#check" if _htmx(request) else ""), context)


# --- Versions and runs ----------------------------------------------------------------------------------------


def _estimate(version: JudgeVersion, scope: str) -> tuple[selectors.Estimate | None, str]:
    rubric = annotate_selectors.rubric_current(project=version.judge.project)
    if rubric is None:
        return None, "The project has no rubric yet."
    try:
        return selectors.run_estimate(version=version, scope=scope, rubric_version=rubric), ""
    except (LookupError, llm.EndpointError) as exc:
        return None, str(exc)


def _version_context(
    request: HttpRequest, project: Project, version: JudgeVersion, *, scope: str = JudgeRun.Scope.DEV, error: str = ""
) -> dict[str, Any]:
    estimate, estimate_error = _estimate(version, scope)
    endpoint = llm.endpoints().get(version.endpoint)
    runs = list(version.runs.select_related("started_by").order_by("-id")[:20])
    return {
        "project": project,
        "version": version,
        "judge": version.judge,
        "examples": version.examples.select_related("item").order_by("position"),
        "endpoint": endpoint,
        "answer_format": prompts.PAIRWISE_FORMAT if project.is_pairwise else prompts.BINARY_FORMAT,
        "scope": scope,
        "estimate": estimate,
        "estimate_error": estimate_error,
        "runs": runs,
        "totals": selectors.runs_totals(runs=runs),
        "n_test_runs": selectors.test_runs_count(judge=version.judge),
        "start_error": error,
        "scopes": forms.RunStartForm.base_fields["scope"].choices,  # type: ignore[attr-defined]
    }


@require_GET
@login_required
def version_detail(request: HttpRequest, slug: str, version_id: int) -> HttpResponse:
    project = _lead_project(request, slug)
    version = selectors.version_for_project(project=project, version_id=version_id)
    scope = request.GET.get("scope", JudgeRun.Scope.DEV)
    if scope not in (JudgeRun.Scope.DEV, JudgeRun.Scope.ALL, JudgeRun.Scope.TEST):
        scope = JudgeRun.Scope.DEV
    context = _version_context(request, project, version, scope=scope)
    # The estimate fragment follows the scope chosen in the start form.
    return render(request, "judges/version_detail.html" + ("#estimate" if _htmx(request) else ""), context)


@require_GET
@login_required
def version_card(request: HttpRequest, slug: str, version_id: int) -> HttpResponse:
    """The version's judge card (judges/card.py) as a JSON download: prompt, model, examples, rubric, figures."""
    project = _lead_project(request, slug)
    version = selectors.version_for_project(project=project, version_id=version_id)
    try:
        data = card.card_build(version=version)
    except card.CardError as exc:
        return HttpResponse(str(exc), status=409, content_type="text/plain; charset=utf-8")
    response = JsonResponse(data, json_dumps_params={"indent": 2, "ensure_ascii": False})
    response["Content-Disposition"] = f'attachment; filename="{card.card_filename(data)}"'
    return response


@require_POST
@login_required
def run_start(request: HttpRequest, slug: str, version_id: int) -> HttpResponse:
    """Start a run. Dev by default; the test split only with its own confirmation, which is counted."""
    project = _lead_project(request, slug)
    version = selectors.version_for_project(project=project, version_id=version_id)
    form = forms.RunStartForm(request.POST)
    error = ""
    if not form.is_valid():
        error = "Choose dev, all items or test."
    else:
        try:
            run = services.judge_run_start(
                version=version,
                scope=form.cleaned_data["scope"],
                confirm_test=form.cleaned_data["confirm_test"],
                actor=request.user,
            )
        except ValidationError as exc:
            error = " ".join(_errors(exc))
        else:
            if run.test_run_number:
                messages.warning(request, f"Run on the held-out test split started: test run #{run.test_run_number}.")
            return _to(request, reverse("judges:run_detail", args=[project.slug, run.pk]))
    if _htmx(request):
        scope = form.cleaned_data.get("scope", JudgeRun.Scope.DEV) if form.is_valid() else JudgeRun.Scope.DEV
        context = _version_context(request, project, version, scope=scope, error=error)
        return render(request, "judges/version_detail.html#start", context, status=422)
    messages.error(request, error)
    return redirect("judges:version_detail", slug=project.slug, version_id=version.pk)


def _run_context(project: Project, run: JudgeRun, request: HttpRequest | None = None) -> dict[str, Any]:
    totals = selectors.run_totals(run=run)
    context: dict[str, Any] = {
        "project": project,
        "run": run,
        "version": run.version,
        "judge": run.version.judge,
        "totals": totals,
        "progress_pct": round(100 * totals.n_verdicts / run.n_calls) if run.n_calls else 100,
        "limiter_shared": llm.limiter_is_shared(),
        "report": run.report,
        "confusion_rows": list(zip(run.report["labels"], run.report["confusion"], strict=True)) if run.report else [],
    }
    if request is not None:
        show = request.GET.get("show", "all")
        show = show if show in ("all", "invalid", "errors") else "all"
        context["show"] = show
        context["page"] = Paginator(selectors.verdicts_of_run(run=run, show=show), 50).get_page(request.GET.get("page"))
    return context


@require_GET
@login_required
def run_detail(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    """The run page. While the run is active its progress fragment polls this URL every second (htmx)."""
    project = _lead_project(request, slug)
    run = selectors.run_for_project(project=project, run_id=run_id)
    if _htmx(request):
        return render(request, "judges/run_detail.html#progress", _run_context(project, run))
    return render(request, "judges/run_detail.html", _run_context(project, run, request))


@require_POST
@login_required
def run_cancel(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    project = _lead_project(request, slug)
    run = selectors.run_for_project(project=project, run_id=run_id)
    cancelled = services.judge_run_cancel(run=run)
    if _htmx(request):
        return render(request, "judges/run_detail.html#progress", _run_context(project, run))
    if cancelled:
        messages.success(request, "Run cancelled. Calls already in flight finish and are kept.")
    else:
        messages.error(request, "This run had already finished.")
    return redirect("judges:run_detail", slug=project.slug, run_id=run.pk)


def _to(request: HttpRequest, url: str) -> HttpResponse:
    """After a successful POST: a client-side redirect for htmx, an ordinary one otherwise."""
    if _htmx(request):
        return HttpResponseClientRedirect(url)
    return redirect(url)
