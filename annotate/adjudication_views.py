"""Adjudication pages (leads): one disputed item at a time, every annotator's labels and notes beside it, the labeling
keys to choose the gold value per criterion; Enter saves and opens the next unresolved item. See annotate.adjudication.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from annotate import adjudication, selectors
from annotate.http import AuthedRequest
from annotate.keymap import keymap
from annotate.models import AgreementReport, Criterion, Membership, Project


def _scope(project: Project, criterion_key: str | None) -> list[Criterion]:
    criteria = list(selectors.criteria_of_version(project.current_rubric_id))
    if criterion_key is None:
        return criteria
    chosen = [c for c in criteria if c.key == criterion_key]
    if not chosen:
        raise Http404("No such criterion in the current rubric.")
    return chosen


def _here(project: Project, criterion_key: str | None) -> str:
    if criterion_key is None:
        return reverse("adjudicate_queue", args=[project.slug])
    return reverse("adjudicate", args=[project.slug, criterion_key])


def _int(raw: str | None) -> int | None:
    try:
        return int(raw or "")
    except ValueError:
        return None


@require_http_methods(["GET", "POST"])
@login_required
def adjudicate(request: AuthedRequest, slug: str, criterion_key: str | None = None) -> HttpResponse:
    """The next unresolved item (after `?after=<id>`, wrapping round), on every criterion or on one. A POST saves the
    gold labels of one item and redirects to the next unresolved one; a refused POST shows the same item again,
    with the lead's choices and note kept."""
    project, _role = selectors.project_for_user(request.user, slug, role=Membership.Role.LEAD)
    scope = _scope(project, criterion_key)
    report = AgreementReport.objects.filter(project=project, rubric_version_id=project.current_rubric_id).first()
    pending = adjudication.unresolved(project=project, report=report, criteria=scope)
    here = _here(project, criterion_key)
    error, chosen, note, item_id = "", {}, "", None
    if request.method == "POST":
        item_id = _int(request.POST.get("item"))
        keys = pending.items.get(item_id or 0)
        if keys is None:
            messages.info(request, "That item is already settled (or not disputed): here is the next unresolved one.")
            return redirect(f"{here}?after={item_id or ''}")
        chosen = {key: request.POST.get(f"c-{key}", "").strip() for key in keys}
        note = request.POST.get("note", "")
        missing = [c.name for c in scope if c.key in keys and not chosen[c.key]]
        try:
            if missing:
                raise ValidationError("Choose a gold value for " + ", ".join(f"“{m}”" for m in missing) + ".")
            adjudication.gold_set_item(
                project=project,
                item_id=item_id,  # type: ignore[arg-type]
                values=chosen,
                note=note,
                actor=request.user,
            )
        except ValidationError as exc:
            error = " ".join(exc.messages)
        else:
            left = len(pending.items) - 1
            messages.success(request, f"Gold labels saved. {left} unresolved.")
            return redirect(f"{here}?after={item_id}")
    else:
        item_id = pending.next_after(_int(request.GET.get("after")))
    disputed = None
    if item_id is not None and item_id in pending.items:
        criteria = [c for c in scope if c.key in pending.items[item_id]]
        disputed = adjudication.disputed_item(project=project, item_id=item_id, criteria=criteria)
    bindings = keymap(page="adjudicate", kind=project.kind, allow_tie=project.allow_tie)
    context = {
        "project": project,
        "criterion": scope[0] if criterion_key else None,
        "report": report,
        "n_unresolved": len(pending.items),
        "capped": pending.capped,
        "disputed": disputed,
        "values": chosen,
        "note": note,
        "error": error,
        "action": here,
        "next_url": f"{here}?after={item_id}" if item_id is not None and len(pending.items) > 1 else "",
        "keymap": bindings,
        "keymap_data": [binding.as_data() for binding in bindings],
    }
    return render(request, "annotate/adjudicate.html", context, status=400 if error else 200)
