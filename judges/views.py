"""Lead-only pages for judges. Each view: the access helper (leads only; everyone else gets 404), form, service, render.

Every page and fragment goes through `annotate.selectors.project_for_user(..., role="lead")` and then looks the judge,
version or run up inside that project, so an annotator, an outsider or an id from another project all get a 404.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.safestring import SafeString
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, HttpResponseClientRefresh

from annotate import carry, charts
from annotate import selectors as annotate_selectors
from annotate.http import AuthedRequest, wants_partial
from annotate.models import FailureMode, Item, Membership, Project
from annotate.review import selectors as review_selectors
from annotate.stats import reference
from judges import card, compare, forms, llm, monitor, production, prompts, ranking, recorded, selectors, staleness
from judges.models import Judge, JudgeRun, JudgeVersion
from judges.services import judge_runs, judge_versions

LEAD = Membership.Role.LEAD


def _lead_project(request: AuthedRequest, slug: str) -> Project:
    project, _role = annotate_selectors.project_for_user(request.user, slug, role=LEAD)
    return project


def _errors(exc: ValidationError) -> list[str]:
    return list(exc.messages)


# --- Judges ---------------------------------------------------------------------------------------------------


@require_GET
@login_required
def judge_list(request: AuthedRequest, slug: str) -> HttpResponse:
    project = _lead_project(request, slug)
    rows = selectors.judges_for_project(project=project)
    latest = selectors.latest_alignment(project=project)
    checks = {judge_id: selectors.run_target_check(run=run) for judge_id, run in latest.items()}
    bars = []
    for row in rows:
        if row.judge is None or row.judge.pk not in latest:
            continue
        run = latest[row.judge.pk]
        for name in compare.target_figures(target=row.judge.target, kind=project.kind) or ("kappa",):
            data = (run.report or {}).get("figures", {}).get(name, {})
            goal = next((line.target for line in checks[row.judge.pk].lines if line.figure == name), None)
            bars.append(
                charts.Bar(
                    f"{row.criterion.name}: {compare.LABELS[name]}",
                    data.get("value"),
                    data.get("ci_low"),
                    data.get("ci_high"),
                    note=f"v{run.version.number}, run #{run.pk}",
                    target=goal,
                )
            )
    context = {
        "project": project,
        "rows": rows,
        "latest": latest,
        "checks": checks,
        "staleness": staleness.judge_staleness(project),
        "alignment_chart": charts.interval_bars(
            bars, title="Latest alignment of each judge on dev, with 95% intervals and targets", lo=0.0, hi=1.0
        )
        if bars
        else None,
    }
    return render(request, "judges/judge_list.html" + ("#judges" if wants_partial(request) else ""), context)


def _editor_context(project: Project, form: forms.JudgeVersionForm, **extra: Any) -> dict[str, Any]:
    return {
        "project": project,
        "form": form,
        "placeholders": prompts.PLACEHOLDERS,
        "answer_format": prompts.PAIRWISE_FORMAT if project.is_pairwise else prompts.BINARY_FORMAT,
        "train_items": selectors.train_items(project=project, limit=20),
        **extra,
    }


@require_http_methods(["GET", "POST"])
@login_required
def judge_new(request: AuthedRequest, slug: str) -> HttpResponse:
    """A judge for a criterion that has none yet, with its first version."""
    project = _lead_project(request, slug)
    taken = set(Judge.objects.filter(project=project).values_list("criterion_key", flat=True))
    criteria = [(c.key, c.name) for c in annotate_selectors.criteria_current(project=project) if c.key not in taken]
    wanted = request.GET.get("criterion", "")
    initial = forms.version_initial(project) | ({"criterion_key": wanted} if wanted else {})
    promoted = FailureMode.objects.filter(project=project, promoted_key=wanted).first() if wanted else None
    if promoted is not None:
        # A criterion promoted from a failure mode: its reviewed train items are offered as few-shot examples.
        initial["examples"] = review_selectors.few_shot_lines(mode=promoted)
    form = forms.NewJudgeForm(request.POST or None, project=project, criteria=criteria, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                judge = judge_versions.judge_create(
                    project=project,
                    criterion_key=form.cleaned_data["criterion_key"],
                    name=form.cleaned_data["name"],
                    actor=request.user,
                )
                version = judge_versions.judge_version_create(
                    judge=judge, actor=request.user, **forms.version_args(form)
                )
        except ValidationError as exc:
            for message in _errors(exc):
                form.add_error(None, message)
        else:
            messages.success(request, f"Judge “{judge.name}” created with version 1.")
            return _to(request, reverse("judges:version_detail", args=[project.slug, version.pk]))
    context = _editor_context(project, form, title="New judge", action=reverse("judges:judge_new", args=[slug]))
    template = "judges/version_form.html" + ("#editor" if wants_partial(request) and request.method == "POST" else "")
    return render(request, template, context, status=422 if form.errors else 200)


@require_GET
@login_required
def judge_detail(request: AuthedRequest, slug: str, judge_id: int) -> HttpResponse:
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
        "staleness": staleness.judge_staleness(project).get(judge.pk),
        "monitor_refused": monitor.project_refusal(project),
    }
    if not wants_partial(request):
        context |= _judge_extras(judge)
    return render(request, "judges/judge_detail.html" + ("#runs" if wants_partial(request) else ""), context)


def _target_form(judge: Judge, data: Any = None) -> forms.JudgeTargetForm:
    initial = {"target": judge.target, "single_label_reference": judge.single_label_reference} | {
        name: getattr(judge, name) for name in judge_versions.TARGET_FIELDS
    }
    return forms.JudgeTargetForm(data, judge=judge, initial=initial)


def _history_chart(judge: Judge, *, highlight: frozenset[int] | set[int] = frozenset()) -> SafeString | None:
    """The alignment figures of every version's newest finished dev run, as lines across versions."""
    done = selectors.latest_done_runs(judge=judge)
    if not done:
        return None
    versions = sorted(done.values(), key=lambda r: r.version.number)
    names = ("agreement", "kappa", "position_consistency") if judge.project.is_pairwise else ("tpr", "tnr", "kappa")
    series = []
    for name in names:
        points = []
        for run in versions:
            data = (run.report or {}).get("figures", {}).get(name, {})
            points.append(
                charts.Point(
                    f"v{run.version.number}",
                    data.get("value"),
                    data.get("ci_low"),
                    data.get("ci_high"),
                    highlight=run.version_id in highlight,
                )
            )
        series.append(charts.Series(compare.LABELS[name], points))
    goals = {v for v in (judge.target_tpr, judge.target_tnr) if v is not None} if judge.target == "tpr_tnr" else set()
    if judge.target == "kappa":
        goals = {judge.target_kappa} if judge.target_kappa is not None else set()
    elif judge.target == "accuracy" and judge.project.is_pairwise and judge.target_accuracy is not None:
        goals = {judge.target_accuracy}
    target = goals.pop() if len(goals) == 1 else None
    lows = [p.lo if p.lo is not None else p.value for s in series for p in s.points if p.value is not None]
    # κ can fall below 0: then the scale goes down far enough to show it, in steps of a quarter.
    low = min(0.0, math.floor(min(lows, default=0.0) * 4) / 4)
    return charts.line_chart(
        series,
        title=f"Alignment of each version of {judge.name} on dev (newest finished run), with 95% intervals",
        lo=low,
        hi=1.0,
        target=target,
        width=640,
    )


def _prompt_heading(group: Sequence[selectors.ModelChoice]) -> str:
    """What a model-choice group has in common: the prompt (the LLMBar strategy a recorded one replays) and the
    versions that use it."""
    numbers = ", ".join(f"v{c.version.number}" for c in sorted(group, key=lambda c: c.version.number))
    found = next((r for c in group if (r := c.version.recording) is not None), None)
    first = group[0].version.number
    name = recorded.STRATEGY_LABELS[found.strategy] if found is not None else f"The prompt of v{first}"
    return f"{name} — {len(group)} models ({numbers})"


def _judge_extras(judge: Judge) -> dict[str, Any]:
    groups = selectors.model_choices(judge=judge)
    ranked = ranking.configuration_ranking(judge=judge)
    scatters = []
    for group in groups:
        heading = _prompt_heading(group)
        figure_name = (compare.target_figures(target=judge.target, kind=judge.project.kind) or ("kappa",))[0]
        points = [
            charts.Point(
                f"v{c.version.number} {c.version.model}",
                c.figure.get("value"),
                c.figure.get("ci_low"),
                c.figure.get("ci_high"),
                xv=float(c.cost_per_1000) if c.cost_per_1000 is not None else None,
                highlight=c.best,
                note="cheapest that meets the target" if c.best else "",
            )
            for c in group
        ]
        line = next((ln.target for c in group for ln in c.check.lines if ln.figure == figure_name), None)
        scatters.append(
            (
                heading,
                group,
                charts.scatter(
                    points,
                    title=f"{compare.LABELS[figure_name]} against cost per 1,000 verdicts, same prompt on each model",
                    x_title="USD per 1,000 verdicts",
                    y_title=compare.LABELS[figure_name],
                    target=line,
                ),
            )
        )
    return {
        "target_form": _target_form(judge),
        "history_chart": _history_chart(judge),
        "model_groups": scatters,
        "ranking": ranked,
        "has_recorded": any(r.choice.version.recording for r in ranked),
        "recorded_prices_as_of": settings.JUDGE_RECORDED_PRICES_AS_OF,
        "recorded_attribution": recorded.ATTRIBUTION,
        "choice_figure": compare.LABELS[
            (compare.target_figures(target=judge.target, kind=judge.project.kind) or ("kappa",))[0]
        ],
    }


@require_POST
@login_required
def judge_target(request: AuthedRequest, slug: str, judge_id: int) -> HttpResponse:
    """Set the judge's target (the bar for "calibrated")."""
    project = _lead_project(request, slug)
    judge = selectors.judge_for_project(project=project, judge_id=judge_id)
    form = _target_form(judge, request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            judge_versions.judge_target_set(
                judge=judge,
                target=data["target"],
                numbers={name: data.get(name) for name in judge_versions.TARGET_FIELDS},
                single_label_reference=data["single_label_reference"],
            )
        except ValidationError as exc:
            for message in _errors(exc):
                form.add_error(None, message)
        else:
            if wants_partial(request):
                context = {"project": project, "judge": judge, "target_form": _target_form(judge), "saved": True}
                return render(request, "judges/judge_detail.html#target", context)
            messages.success(request, "Target saved.")
            return redirect("judges:judge_detail", slug=project.slug, judge_id=judge.pk)
    if wants_partial(request):
        return render(
            request,
            "judges/judge_detail.html#target",
            {"project": project, "judge": judge, "target_form": form},
            status=422,
        )
    messages.error(
        request, "The target was not saved: " + " ".join(str(e) for errs in form.errors.values() for e in errs)
    )
    return redirect("judges:judge_detail", slug=project.slug, judge_id=judge.pk)


@require_http_methods(["GET", "POST"])
@login_required
def version_new(request: AuthedRequest, slug: str, judge_id: int) -> HttpResponse:
    """Edit a version: always makes version n+1 whose parent is the version edited (?from=ID, default the latest)."""
    project = _lead_project(request, slug)
    judge = selectors.judge_for_project(project=project, judge_id=judge_id)
    parent_id = request.GET.get("from") or request.POST.get("parent") or ""
    versions = JudgeVersion.objects.filter(judge=judge)
    parent = (versions.filter(pk=int(parent_id)) if parent_id.isdigit() else versions.order_by("-number")).first()
    form = forms.JudgeVersionForm(
        request.POST or None,
        project=project,
        needs_note=parent is not None,
        initial=forms.version_initial(project, parent),
    )
    if request.method == "POST" and form.is_valid():
        try:
            version = judge_versions.judge_version_create(
                judge=judge, parent=parent, actor=request.user, **forms.version_args(form)
            )
        except ValidationError as exc:
            for message in _errors(exc):
                form.add_error(None, message)
        else:
            messages.success(request, f"Version {version.number} saved.")
            if request.POST.get("then") == "run":
                return _to(request, _run_and_compare(request, project, version))
            return _to(request, reverse("judges:version_detail", args=[project.slug, version.pk]))
    context = _editor_context(
        project,
        form,
        judge=judge,
        n_test_runs=selectors.test_runs_count(judge=judge),
        parent=parent,
        title=f"New version of “{judge.name}”",
        action=reverse("judges:version_new", args=[slug, judge.pk]),
    )
    template = "judges/version_form.html" + ("#editor" if wants_partial(request) and request.method == "POST" else "")
    return render(request, template, context, status=422 if form.errors else 200)


def _run_and_compare(request: AuthedRequest, project: Project, version: JudgeVersion) -> str:
    """Start the new version on dev and say where to go: the comparison with its parent, which shows the run's
    progress until it is done (or the run page, for a first version)."""
    try:
        run = judge_runs.judge_run_start(version=version, scope=JudgeRun.Scope.DEV, actor=request.user)
    except ValidationError as exc:
        messages.error(request, "The run did not start: " + " ".join(_errors(exc)))
        return reverse("judges:version_detail", args=[project.slug, version.pk])
    if version.parent_id is None:
        return reverse("judges:run_detail", args=[project.slug, run.pk])
    return reverse("judges:compare", args=[project.slug]) + f"?va={version.parent_id}&vb={version.pk}"


@require_POST
@login_required
def template_check(request: AuthedRequest, slug: str) -> HttpResponse:
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
    return render(request, "judges/template_check.html" + ("#check" if wants_partial(request) else ""), context)


# --- Versions and runs ----------------------------------------------------------------------------------------


def _estimate(version: JudgeVersion, scope: str) -> tuple[selectors.Estimate | None, str]:
    rubric = annotate_selectors.rubric_current(project=version.judge.project)
    if rubric is None:
        return None, "The project has no rubric yet."
    try:
        return selectors.run_estimate(version=version, scope=scope, rubric_version=rubric), ""
    except (LookupError, llm.EndpointError) as exc:
        return None, str(exc)


def _no_labels_warning(version: JudgeVersion) -> str:
    rubric = version.judge.project.current_rubric
    return carry.no_labels_warning(rubric_version=rubric, key=version.judge.criterion_key) if rubric else ""


def _version_context(
    request: AuthedRequest, project: Project, version: JudgeVersion, *, scope: str = JudgeRun.Scope.DEV, error: str = ""
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
        "no_labels_warning": _no_labels_warning(version),
        "recorded_attribution": recorded.ATTRIBUTION,
        "recorded_prices_as_of": settings.JUDGE_RECORDED_PRICES_AS_OF,
        "scopes": forms.RUN_SCOPES,
    }


@require_GET
@login_required
def version_detail(request: AuthedRequest, slug: str, version_id: int) -> HttpResponse:
    project = _lead_project(request, slug)
    version = selectors.version_for_project(project=project, version_id=version_id)
    scope = request.GET.get("scope", JudgeRun.Scope.DEV)
    if scope not in (JudgeRun.Scope.DEV, JudgeRun.Scope.ALL, JudgeRun.Scope.TEST):
        scope = JudgeRun.Scope.DEV
    context = _version_context(request, project, version, scope=scope)
    # The estimate fragment follows the scope chosen in the start form.
    return render(request, "judges/version_detail.html" + ("#estimate" if wants_partial(request) else ""), context)


@require_GET
@login_required
def version_card(request: AuthedRequest, slug: str, version_id: int) -> HttpResponse:
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


@require_GET
@login_required
def card_key(request: AuthedRequest, slug: str) -> HttpResponse:
    """The project's card key (judges.card.card_key): the secret a pipeline checks the project's cards with."""
    project = _lead_project(request, slug)
    response = HttpResponse(card.card_key(project.slug) + "\n", content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{project.slug}.card-key"'
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@login_required
def run_start(request: AuthedRequest, slug: str, version_id: int) -> HttpResponse:
    """Start a run. Dev by default; the test split only with its own confirmation, which is counted."""
    project = _lead_project(request, slug)
    version = selectors.version_for_project(project=project, version_id=version_id)
    form = forms.RunStartForm(request.POST)
    error = ""
    if not form.is_valid():
        error = "Choose dev, all items or test."
    else:
        try:
            run = judge_runs.judge_run_start(
                version=version,
                scope=form.cleaned_data["scope"],
                confirm_test=form.cleaned_data["confirm_test"],
                actor=request.user,
            )
        except ValidationError as exc:
            error = " ".join(_errors(exc))
        else:
            if run.test_run_number:
                messages.warning(
                    request,
                    f"Run with {run.n_test_items} item{pluralize(run.n_test_items)} of the held-out test split "
                    f"started: test run #{run.test_run_number}.",
                )
            if warning := _no_labels_warning(version):
                messages.warning(request, warning)
            return _to(request, reverse("judges:run_detail", args=[project.slug, run.pk]))
    if wants_partial(request):
        scope = form.cleaned_data.get("scope", JudgeRun.Scope.DEV) if form.is_valid() else JudgeRun.Scope.DEV
        context = _version_context(request, project, version, scope=scope, error=error)
        return render(request, "judges/version_detail.html#start", context, status=422)
    messages.error(request, error)
    return redirect("judges:version_detail", slug=project.slug, version_id=version.pk)


def _run_context(project: Project, run: JudgeRun, request: AuthedRequest | None = None) -> dict[str, Any]:
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
    }
    if request is not None:
        show = request.GET.get("show", "all")
        show = show if show in ("all", "invalid", "errors") else "all"
        context["show"] = show
        context["page"] = Paginator(selectors.verdicts_of_run(run=run, show=show), 50).get_page(request.GET.get("page"))
    return context


def _figure_bars(report: dict[str, Any], check: compare.TargetCheck, *, title: str) -> SafeString:
    """The run's headline figures as interval bars, each with its own target where the judge has one."""
    names = (
        ("agreement", "kappa", "position_consistency")
        if report.get("kind") == "pairwise"
        else ("tpr", "tnr", "kappa", "accuracy")
    )
    goals = {line.figure: line.target for line in check.lines}
    figures = report.get("figures", {})
    rows = [
        charts.Bar(
            compare.LABELS[name],
            figures.get(name, {}).get("value"),
            figures.get(name, {}).get("ci_low"),
            figures.get(name, {}).get("ci_high"),
            target=goals.get(name),
        )
        for name in names
    ]
    low = -1.0 if any((r.lo if r.lo is not None else r.value or 0) < 0 for r in rows) else 0.0
    return charts.interval_bars(rows, title=title, lo=low, hi=1.0)


def _report_context(project: Project, run: JudgeRun) -> dict[str, Any]:
    """The judge report of a finished run: target verdict, figures, charts and reference counts."""
    report = run.report or {}
    check = selectors.run_target_check(run=run)
    split = "test" if run.scope == JudgeRun.Scope.TEST else run.get_scope_display().lower()
    labels = report.get("labels", [])
    order = (
        ("agreement", "agreement_without_ties", "kappa", "position_consistency")
        if report.get("kind") == "pairwise"
        else ("tpr", "tnr", "kappa", "accuracy", "fail_precision")
    )
    figures = report.get("figures", {})
    # Recall of fail is the same number as TNR: listed once.
    rows = [(name, figures[name]) for name in order if name in figures]
    rows += [(name, data) for name, data in figures.items() if name not in order and name != "fail_recall"]
    return {
        "check": check,
        "split": split,
        "figure_rows": rows,
        "definitions": compare.DEFINITIONS,
        "figure_names": compare.LABELS,
        "bars": _figure_bars(report, check, title=f"Judge–human agreement on the {split}, with 95% intervals")
        if report
        else None,
        "heatmap": charts.heatmap(
            report["confusion"],
            row_labels=labels,
            col_labels=labels,
            title="Confusion matrix: humans (rows) against the judge (columns)",
        )
        if report.get("confusion")
        else None,
    }


def _disagreement_context(request: AuthedRequest, run: JudgeRun) -> dict[str, Any]:
    found = selectors.disagreements_of_run(run=run)
    kinds = selectors.DISAGREEMENT_KINDS[run.project.kind]
    wanted = request.GET.get("kind", "")
    wanted = wanted if wanted in dict(kinds) else ""
    rows = [row for row in found.rows if not wanted or row[1] == wanted]
    rows, test_rows = _test_rows_apart([run], rows)
    page = Paginator(rows, 10).get_page(request.GET.get("dpage"))
    # The compared items by kind of reference, as the report stored them (a report from before it counted them: the
    # judged items with a reference label, by kind).
    sources = (run.report or {}).get("compared_kinds") or {
        name: sum(1 for ref in found.reference.values() if ref.kind == name and ref.value is not None)
        for name in reference.SHOWN
    }
    return {
        "kinds": kinds,
        "kind_labels": dict(kinds),
        "card_runs": [(f"Judge (v{run.version.number})", run)],
        "kind": wanted,
        "kind_counts": found.counts,
        "n_disagreements": len(found.rows),
        "dpage": page,
        "cards": selectors.item_cards(runs=[run], items=list(page.object_list), reference=found.reference),
        "sources": sources,
    } | _test_cards_context(request, [run], test_rows, found.reference)


def _test_rows_apart(
    runs: list[JudgeRun], rows: list[tuple[int, str]]
) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """The disagreement (or flipped) rows outside the held-out test split, and those in it (folded on the page, never
    listed openly next to "New version from this one": reading them to change the prompt would tune it to test)."""
    if not any(run.n_test_items for run in runs) or not rows:
        return rows, []
    test = set(
        Item.objects.filter(pk__in=[item_id for item_id, _ in rows], split=Item.Split.TEST).values_list("pk", flat=True)
    )
    return [row for row in rows if row[0] not in test], [row for row in rows if row[0] in test]


def _test_cards_context(
    request: AuthedRequest, runs: list[JudgeRun], rows: list[tuple[int, str]], reference: dict[int, Any]
) -> dict[str, Any]:
    tpage = Paginator(rows, 10).get_page(request.GET.get("tpage"))
    return {
        "n_test_disagreements": len(rows),
        "tpage": tpage,
        "test_open": "tpage" in request.GET,
        "test_cards": selectors.item_cards(runs=runs, items=list(tpage.object_list), reference=reference)
        if rows
        else [],
    }


@require_GET
@login_required
def run_detail(request: AuthedRequest, slug: str, run_id: int) -> HttpResponse:
    """The run page and its report. While the run is active its progress fragment polls this URL every second
    (htmx); once the run is over the poll reloads the page, so the report and the disagreements appear."""
    project = _lead_project(request, slug)
    run = selectors.run_for_project(project=project, run_id=run_id)
    if wants_partial(request) and request.GET.get("part") == "disagreements":
        context = _run_context(project, run) | _disagreement_context(request, run)
        return render(request, "judges/run_detail.html#disagreements", context)
    if wants_partial(request):
        if request.GET.get("poll") and not run.is_active:
            return HttpResponseClientRefresh()
        return render(request, "judges/run_detail.html#progress", _run_context(project, run))
    context = _run_context(project, run, request) | {"n_test_runs": selectors.test_runs_count(judge=run.version.judge)}
    if run.report:
        context |= _report_context(project, run) | _disagreement_context(request, run)
        context["probe"] = production.bias_probe(run=run, probe_field=request.GET.get("probe_field", "").strip())
    return render(request, "judges/run_detail.html", context)


@require_POST
@login_required
def run_cancel(request: AuthedRequest, slug: str, run_id: int) -> HttpResponse:
    project = _lead_project(request, slug)
    run = selectors.run_for_project(project=project, run_id=run_id)
    cancelled = judge_runs.judge_run_cancel(run=run)
    if wants_partial(request):
        return render(request, "judges/run_detail.html#progress", _run_context(project, run))
    if cancelled:
        messages.success(request, "Run cancelled. Calls already in flight finish and are kept.")
    else:
        messages.error(request, "This run had already finished.")
    return redirect("judges:run_detail", slug=project.slug, run_id=run.pk)


def _to(request: AuthedRequest, url: str) -> HttpResponse:
    """After a successful POST: a client-side redirect for htmx, an ordinary one otherwise."""
    if wants_partial(request):
        return HttpResponseClientRedirect(url)
    return redirect(url)


# --- Comparing two runs ---------------------------------------------------------------------------------------

FLIP_KINDS = (("fixed", "Fixed (was wrong, now right)"), ("broken", "Broken (was right, now wrong)"))


def _compare_runs(request: AuthedRequest, project: Project) -> tuple[JudgeRun | None, JudgeRun | None, list[str]]:
    """The two runs named by ?a=&b= (run ids) or ?va=&vb= (version ids: their newest run on ?scope=, default dev)."""
    problems = []
    scope = request.GET.get("scope", JudgeRun.Scope.DEV)
    scope = scope if scope in (JudgeRun.Scope.DEV, JudgeRun.Scope.ALL, JudgeRun.Scope.TEST) else JudgeRun.Scope.DEV
    found: list[JudgeRun | None] = []
    for run_key, version_key in (("a", "va"), ("b", "vb")):
        run_id, version_id = request.GET.get(run_key, ""), request.GET.get(version_key, "")
        if run_id.isdigit():
            found.append(selectors.run_for_project(project=project, run_id=int(run_id)))
        elif version_id.isdigit():
            version = selectors.version_for_project(project=project, version_id=int(version_id))
            run = selectors.latest_run(version=version, scope=scope)
            if run is None:
                problems.append(f"v{version.number} has no run on the {scope} split yet.")
            found.append(run)
        else:
            raise Http404("Name two runs (?a=&b=) or two versions (?va=&vb=).")
    a, b = found
    if a is not None and b is not None and a.version.judge_id != b.version.judge_id:
        raise Http404("Both runs must belong to the same judge.")
    return a, b, problems


@require_GET
@login_required
def compare_runs(request: AuthedRequest, slug: str) -> HttpResponse:
    """Two runs of one judge on the same items: deltas with paired intervals, flipped items, and the history of
    every version. While a run is still going, the comparison shows its progress and polls this URL (htmx)."""
    project = _lead_project(request, slug)
    a, b, problems = _compare_runs(request, project)
    shown = a or b
    judge = shown.version.judge if shown else None
    if judge is None:
        raise Http404("No runs to compare.")
    context: dict[str, Any] = {
        "project": project,
        "judge": judge,
        "a": a,
        "b": b,
        "problems": problems,
        "n_test_runs": selectors.test_runs_count(judge=judge),
        "query": urlencode([(k, v) for k, v in request.GET.items() if k in ("a", "b", "va", "vb", "scope")]),
        "pending": [r for r in (a, b) if r is not None and r.is_active],
        "sides": [("A · before", a), ("B · after", b)],
        # Either run looked at test: its test items' flips stay folded and no "New version" invites tuning to them.
        "looked_at_test": any(r.n_test_items for r in (a, b) if r is not None),
    }
    context["progress"] = [(r, selectors.run_totals(run=r)) for r in context["pending"]]
    ready = a is not None and b is not None and a.status == b.status == JudgeRun.Status.DONE
    if ready:
        assert a is not None and b is not None
        result = selectors.comparison(a=a, b=b)
        flip = request.GET.get("flip", "fixed")
        flip = flip if flip in dict(FLIP_KINDS) else "fixed"
        positions = result.flips.fixed if flip == "fixed" else result.flips.broken
        rows, test_rows = _test_rows_apart([a, b], [(result.common[int(i)], flip) for i in positions])
        page = Paginator(rows, 10).get_page(request.GET.get("fpage"))
        context |= {
            "result": result,
            "flip": flip,
            "flip_kinds": FLIP_KINDS,
            "kind_labels": dict(FLIP_KINDS),
            "fpage": page,
            "cards": selectors.item_cards(runs=[a, b], items=list(page.object_list), reference=result.reference),
            "card_runs": [(f"v{a.version.number} · run #{a.pk}", a), (f"v{b.version.number} · run #{b.pk}", b)],
            "check_a": selectors.run_target_check(run=a),
            "check_b": selectors.run_target_check(run=b),
            "same_rubric": a.rubric_version_id == b.rubric_version_id,
            "definitions": compare.DEFINITIONS,
        } | _test_cards_context(request, [a, b], test_rows, result.reference)
    if wants_partial(request):
        if request.GET.get("poll") and not context["pending"]:
            return HttpResponseClientRefresh()
        if request.GET.get("part") == "flips" and ready:
            return render(request, "judges/compare.html#flips", context)
    if ready:
        context["history_chart"] = _history_chart(judge, highlight={r.version_id for r in (a, b) if r is not None})
    return render(request, "judges/compare.html" + ("#comparison" if wants_partial(request) else ""), context)
