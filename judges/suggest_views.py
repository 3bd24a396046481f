"""The lead's page for a judge endpoint's suggested grouping of unassigned review notes (judges.suggest): ask, watch
it come (the panel polls while the call runs), apply a suggested group. Nothing changes until the lead applies."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from annotate import selectors as annotate_selectors
from annotate.http import AuthedRequest, wants_partial
from annotate.models import Membership, Project, ReviewNote
from judges import forms, llm, suggest
from judges.models import ModeSuggestion


def _lead(request: AuthedRequest, slug: str) -> Project:
    project, _role = annotate_selectors.project_for_user(request.user, slug, role=Membership.Role.LEAD)
    return project


def _context(project: Project, **extra: object) -> dict[str, object]:
    latest = ModeSuggestion.objects.filter(project=project).order_by("-created_at", "-pk").first()
    notes = ReviewNote.objects.in_bulk([i for g in (latest.groups if latest else []) for i in g.get("note_ids", [])])
    groups = [
        {**g, "index": i, "notes": [notes[n] for n in g["note_ids"] if n in notes]}
        for i, g in enumerate(latest.groups if latest else [])
    ]
    return {
        "project": project,
        "latest": latest,
        "groups": groups,
        "endpoints": list(llm.endpoints()),
        "endpoint": forms.default_endpoint(),
        "model": "gpt-4o-2024-08-06",
        "n_unassigned": len(suggest.unassigned_notes(project)),
        "error": "",
        **extra,
    }


@require_http_methods(["GET", "POST"])
@login_required
def mode_suggest(request: AuthedRequest, slug: str) -> HttpResponse:
    """GET: the latest suggestion (htmx: the panel, which polls while it runs). POST: ask for a new one."""
    project = _lead(request, slug)
    error = ""
    if request.method == "POST":
        try:
            suggest.suggestion_start(
                project=project,
                actor=request.user,
                endpoint=request.POST.get("endpoint", ""),
                model=request.POST.get("model", ""),
            )
        except ValidationError as exc:
            error = " ".join(exc.messages)
        if not wants_partial(request):
            if error:
                messages.error(request, error)
            return redirect("judges:mode_suggest", slug=project.slug)
    context = _context(project, error=error)
    if wants_partial(request):
        return render(request, "judges/mode_suggest.html#panel", context)
    return render(request, "judges/mode_suggest.html", context)


@require_POST
@login_required
def mode_suggest_apply(request: AuthedRequest, slug: str, suggestion_id: int, index: int) -> HttpResponse:
    project = _lead(request, slug)
    if not ModeSuggestion.objects.filter(project=project, pk=suggestion_id).exists():
        raise Http404("No such suggestion.")
    error = ""
    try:
        mode = suggest.suggestion_apply(project=project, suggestion_id=suggestion_id, index=index, actor=request.user)
    except ValidationError as exc:
        error = " ".join(exc.messages)
    if not wants_partial(request):
        if error:
            messages.error(request, error)
        else:
            messages.success(request, f"Applied “{mode.name}”.")
        return redirect("judges:mode_suggest", slug=project.slug)
    return render(request, "judges/mode_suggest.html#panel", _context(project, error=error))
