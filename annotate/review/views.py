"""Error analysis pages. Review (any member): one item at a time, Pass or Fail and a note, keyboard first. Notes: a
member's own reviews (a lead's: everyone's). Failure modes (leads): the grouping board, counts and drift, promotion
to a criterion, and the `failure_modes` export. Writes go through annotate.review.services."""

from __future__ import annotations

import json
from collections.abc import Iterator

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from annotate import carry, charts, selectors
from annotate.http import AuthedRequest, wants_partial
from annotate.models import FailureMode, Item, Membership, Project
from annotate.review import export, services
from annotate.review import selectors as review_selectors
from annotate.services import rubrics

# --- Review (any member) ---------------------------------------------------------------------------------------


def _int(raw: str | None) -> int | None:
    try:
        return int(raw or "")
    except ValueError:
        return None


def _review_context(request: AuthedRequest, project: Project, item: Item | None, **extra: object) -> dict[str, object]:
    done, total = review_selectors.review_progress(project=project, reviewer=request.user)
    card = review_selectors.review_card(project=project, reviewer=request.user, item=item) if item else None
    context: dict[str, object] = {
        "project": project,
        "card": card,
        "done": done,
        "total": total,
        "refusal": services.review_refusal(project),
        "verdict": card.mine.verdict if card and card.mine else "",
        "note": card.mine.note if card and card.mine else "",
        "error": "",
    }
    return context | extra


@require_GET
@login_required
def review_page(request: AuthedRequest, slug: str) -> HttpResponse:
    """The next item to review (production records first), or `?item=<id>` to change one's review of that item."""
    project, _role = selectors.project_for_user(request.user, slug)
    wanted = _int(request.GET.get("item"))
    item = (
        Item.objects.filter(project=project, pk=wanted).first()
        if wanted is not None
        else review_selectors.review_next(project=project, reviewer=request.user)
    )
    if wanted is not None and item is None:
        raise Http404("No such item in this project.")
    context = _review_context(request, project, item)
    if wants_partial(request):
        return render(request, "annotate/review/review.html#card", context)
    return render(request, "annotate/review/review.html", context)


@require_POST
@login_required
def review_submit(request: AuthedRequest, slug: str, item_id: int) -> HttpResponse:
    """Save the review of one item, then show the next one (htmx: the card; else a redirect)."""
    project, _role = selectors.project_for_user(request.user, slug)
    item = Item.objects.filter(project=project, pk=item_id).first()
    if item is None:
        raise Http404("No such item in this project.")
    verdict, note = request.POST.get("verdict", ""), request.POST.get("note", "")
    try:
        services.review_submit(project=project, reviewer=request.user, item_id=item.pk, verdict=verdict, note=note)
    except ValidationError as exc:
        context = _review_context(request, project, item, verdict=verdict, note=note, error=" ".join(exc.messages))
        # htmx swaps only 2xx answers: the card comes back, still filled in, with the reason.
        status = 200 if wants_partial(request) else 400
        template = "annotate/review/review.html" + ("#card" if wants_partial(request) else "")
        return render(request, template, context, status=status)
    if not wants_partial(request):
        messages.success(request, "Review saved.")
        return redirect("review_page", slug=project.slug)
    following = review_selectors.review_next(project=project, reviewer=request.user)
    return render(request, "annotate/review/review.html#card", _review_context(request, project, following, saved=True))


@require_GET
@login_required
def review_notes(request: AuthedRequest, slug: str) -> HttpResponse:
    """The reviews this member may read: their own (a lead: everyone's), newest first, 50 a page."""
    project, role = selectors.project_for_user(request.user, slug)
    notes = review_selectors.notes_visible(project=project, user=request.user, role=role)
    page = Paginator(notes, 50).get_page(request.GET.get("page"))
    tally = review_selectors.note_tally(notes)
    context = {"project": project, "page": page, "tally": tally, "is_lead": role == Membership.Role.LEAD}
    if wants_partial(request):
        return render(request, "annotate/review/notes.html#results", context)
    return render(request, "annotate/review/notes.html", context)


# --- The grouping board (leads) --------------------------------------------------------------------------------


def _lead(request: AuthedRequest, slug: str) -> Project:
    project, _role = selectors.project_for_user(request.user, slug, role=Membership.Role.LEAD)
    return project


def _board_context(project: Project, **extra: object) -> dict[str, object]:
    board = review_selectors.board(project=project)
    modes = [row.mode for row in board.modes]
    return {
        "project": project,
        "board": board,
        "modes": modes,
        "keyed_modes": list(enumerate(modes[:9], start=1)),
        "error": "",
        **extra,
    }


def _board(request: AuthedRequest, project: Project, *, error: str = "", done: str = "") -> HttpResponse:
    if not wants_partial(request):
        if error:
            messages.error(request, error)
        elif done:
            messages.success(request, done)
        return redirect("failure_modes", slug=project.slug)
    return render(request, "annotate/review/modes.html#board", _board_context(project, error=error, done=done))


@require_GET
@login_required
def failure_modes(request: AuthedRequest, slug: str) -> HttpResponse:
    project = _lead(request, slug)
    template = "annotate/review/modes.html" + ("#board" if wants_partial(request) else "")
    return render(request, template, _board_context(project))


@require_POST
@login_required
def mode_new(request: AuthedRequest, slug: str) -> HttpResponse:
    project = _lead(request, slug)
    try:
        mode = services.mode_create(
            project=project,
            name=request.POST.get("name", ""),
            definition=request.POST.get("definition", ""),
            actor=request.user,
        )
        note_id = _int(request.POST.get("note"))
        if note_id is not None:
            services.note_assign(project=project, note_id=note_id, mode_id=mode.pk)
    except ValidationError as exc:
        return _board(request, project, error=" ".join(exc.messages))
    return _board(request, project, done=f"Created “{mode.name}”.")


@require_POST
@login_required
def mode_rename(request: AuthedRequest, slug: str, mode_id: int) -> HttpResponse:
    project = _lead(request, slug)
    try:
        mode = services.mode_rename(
            project=project,
            mode_id=mode_id,
            name=request.POST.get("name", ""),
            definition=request.POST.get("definition") if "definition" in request.POST else None,
        )
    except ValidationError as exc:
        return _board(request, project, error=" ".join(exc.messages))
    return _board(request, project, done=f"Saved “{mode.name}”.")


@require_POST
@login_required
def mode_merge(request: AuthedRequest, slug: str, mode_id: int) -> HttpResponse:
    project = _lead(request, slug)
    target_id = _int(request.POST.get("into"))
    try:
        if target_id is None:
            raise ValidationError("Choose the mode to merge into.")
        target = services.mode_merge(project=project, source_id=mode_id, target_id=target_id)
    except ValidationError as exc:
        return _board(request, project, error=" ".join(exc.messages))
    return _board(request, project, done=f"Merged into “{target.name}”.")


@require_POST
@login_required
def mode_split(request: AuthedRequest, slug: str, mode_id: int) -> HttpResponse:
    project = _lead(request, slug)
    note_ids = [n for n in (_int(raw) for raw in request.POST.getlist("notes")) if n is not None]
    try:
        new = services.mode_split(
            project=project,
            mode_id=mode_id,
            note_ids=note_ids,
            name=request.POST.get("name", ""),
            definition=request.POST.get("definition", ""),
            actor=request.user,
        )
    except ValidationError as exc:
        return _board(request, project, error=" ".join(exc.messages))
    return _board(
        request, project, done=f"Split {len(note_ids)} note{'s' if len(note_ids) != 1 else ''} into “{new.name}”."
    )


@require_POST
@login_required
def mode_delete(request: AuthedRequest, slug: str, mode_id: int) -> HttpResponse:
    project = _lead(request, slug)
    try:
        n = services.mode_delete(project=project, mode_id=mode_id)
    except ValidationError as exc:
        return _board(request, project, error=" ".join(exc.messages))
    return _board(request, project, done=f"Removed the mode; its {n} note{'s' if n != 1 else ''} are unassigned.")


@require_POST
@login_required
def note_assign(request: AuthedRequest, slug: str, note_id: int) -> HttpResponse:
    project = _lead(request, slug)
    raw = request.POST.get("mode", "")
    try:
        mode_id = _int(raw)
        if raw and mode_id is None:
            raise ValidationError("No such failure mode in this project.")
        services.note_assign(project=project, note_id=note_id, mode_id=mode_id)
    except ValidationError as exc:
        return _board(request, project, error=" ".join(exc.messages))
    return _board(request, project)


# --- Counts and drift (leads) ----------------------------------------------------------------------------------


@require_GET
@login_required
def failure_counts(request: AuthedRequest, slug: str) -> HttpResponse:
    """Each mode's share of reviewed items per day or week (?by=day|week), with 95% Wilson intervals."""
    project = _lead(request, slug)
    by = request.GET.get("by", "day")
    if by not in ("day", "week"):
        by = "day"
    counted, modes = review_selectors.failure_counts(project=project, by=by)
    names = {m.pk: m.name for m in modes} | {0: "Unassigned"}
    labels = [p.isoformat() if by == "day" else f"week of {p.isoformat()}" for p in counted.periods]
    series = [
        charts.Series(
            name=names[row.mode_id],
            points=[
                charts.Point(
                    label=labels[i],
                    value=s.value if s else None,
                    lo=s.lo if s else None,
                    hi=s.hi if s else None,
                    highlight=row.rising and i == len(labels) - 1,
                )
                for i, s in enumerate(row.per_period)
            ],
        )
        for row in counted.modes
        if row.total is not None and row.total.k > 0
    ]
    chart = (
        charts.line_chart(series, title="Share of reviewed items per failure mode", width=760, legend_chars=24)
        if series
        else None
    )
    rows = [(names[row.mode_id], row) for row in counted.modes]
    context = {
        "project": project,
        "by": by,
        "counts": counted,
        "labels": labels,
        "rows": rows,
        "chart": chart,
        "rising": [name for name, row in rows if row.rising],
        "unassigned": next(row for row in counted.modes if row.mode_id == 0),
    }
    if wants_partial(request):
        return render(request, "annotate/review/counts.html#figures", context)
    return render(request, "annotate/review/counts.html", context)


# --- Promotion (leads) ------------------------------------------------------------------------------------------


def _mode_or_404(project: Project, mode_id: int) -> FailureMode:
    mode = review_selectors.mode_for_project(project=project, mode_id=mode_id)
    if mode is None:
        raise Http404("No such failure mode.")
    return mode


@require_http_methods(["GET", "POST"])
@login_required
def mode_promote(request: AuthedRequest, slug: str, mode_id: int) -> HttpResponse:
    """Review, then confirm, the new rubric version with the mode as a binary criterion."""
    project = _lead(request, slug)
    mode = _mode_or_404(project, mode_id)
    current = selectors.rubric_current(project=project)
    base = current.number if current else 0
    key = request.POST.get("key") or services.promote_key(project, mode)
    name = request.POST.get("name") or services.promote_name(mode)
    description = request.POST.get("description") or (
        f"Fails when the response shows this failure: {(mode.definition or mode.name).rstrip('.')}."
    )
    problems: list[str] = []
    changes = []
    consequence = ""
    refusal = services.promote_refusal(project, mode)
    if not refusal:
        try:
            saved, new = services.promote_criteria(project=project, key=key, name=name, description=description)
        except ValidationError as exc:
            problems = list(exc.messages)
        else:
            changes = rubrics.rubric_diff(old=saved, new=new)
            kept = (
                carry.rubric_consequence(
                    current=current, new=[(c["key"], c["name"], c["description"]) for c in new]
                ).kept
                if current is not None
                else []
            )
            # The same numbers mode_promote writes.
            plan = services.promotion_plan(project=project, mode=mode)
            consequence = services.promotion_sentence(plan=plan, name=new[-1]["name"], kept=kept)
    if request.method == "POST" and request.POST.get("action") == "save" and not problems:
        try:
            promotion = services.mode_promote(
                project=project,
                mode_id=mode.pk,
                key=key,
                name=name,
                description=description,
                base_number=_int(request.POST.get("base")) or 0,
                actor=request.user,
            )
        except ValidationError as exc:
            problems = list(exc.messages)
        else:
            messages.success(
                request,
                f"Saved rubric v{promotion.version.number}: “{promotion.criterion.name}” with "
                f"{promotion.n_fail} failing and {promotion.n_pass} passing "
                f"example{'s' if promotion.n_pass != 1 else ''} from the reviews.",
            )
            url = reverse("mode_promote", args=[project.slug, mode.pk])
            return HttpResponseClientRedirect(url) if wants_partial(request) else redirect(url)
    examples = review_selectors.mode_examples(mode=mode)
    context = {
        "project": project,
        "mode": mode,
        "base": base,
        "next_number": base + 1,
        "key": key,
        "name": name,
        "description": description,
        "changes": changes,
        "consequence": consequence,
        "problems": problems,
        "refusal": services.review_refusal(project),
        "promote_refusal": refusal,
        "examples": examples,
        "few_shot": review_selectors.few_shot_lines(mode=mode),
        "split_counts": {s: sum(1 for e in examples if e.item.split == s) for s in Item.Split.values},
    }
    status = 422 if problems and request.method == "POST" else 200
    return render(request, "annotate/review/promote.html", context, status=status)


# --- Export (leads) --------------------------------------------------------------------------------------------


@require_GET
@login_required
def failure_modes_export(request: AuthedRequest, slug: str) -> HttpResponse | StreamingHttpResponse:
    """The `failure_modes` export: one JSON object per mode (and one for the unassigned notes)."""
    project = _lead(request, slug)

    def lines() -> Iterator[str]:
        for row in export.failure_modes_rows(project=project):
            yield json.dumps(row, ensure_ascii=False) + "\n"

    response = StreamingHttpResponse(lines(), content_type="application/jsonl; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{project.slug}-failure_modes.jsonl"'
    return response
