"""The annotator's history page: their labeled items with the values and note they gave, filtered by value and
date, each row edited in place (htmx swaps the row for its form and back). Without JavaScript a row's Edit link
opens the change-your-labels page. See annotate.history."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from annotate import history, selectors
from annotate.http import AuthedRequest, wants_partial
from annotate.models import Project
from annotate.services.errors import QueueError

_FILTERS = ("value", "since", "until")


def _row_context(project: Project, row: history.HistoryRow, **extra: object) -> dict[str, object]:
    criteria = selectors.criteria_of_version(project.current_rubric_id)
    return {"project": project, "criteria": criteria, "row": row, "n_columns": len(criteria) + 4, **extra}


@require_GET
@login_required
def label_history(request: AuthedRequest, slug: str) -> HttpResponse:
    """The annotator's own items in this project, newest first, 50 a page, filtered by ?value=&since=&until=."""
    project, _role = selectors.project_for_user(request.user, slug)
    bound = any(request.GET.get(name) for name in _FILTERS)
    form = history.HistoryFilterForm(request.GET if bound else None, pairwise=project.is_pairwise)
    filters = form.cleaned_data if bound and form.is_valid() else {}
    items = history.history_items(
        project=project,
        annotator=request.user,
        value=filters.get("value") or "",
        since=filters.get("since"),
        until=filters.get("until"),
    )
    page = Paginator(items, 50).get_page(request.GET.get("page"))
    criteria = selectors.criteria_of_version(project.current_rubric_id)
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "project": project,
        "form": form,
        "filtered": bool(filters),
        "page": page,
        "criteria": criteria,
        "n_columns": len(criteria) + 4,
        "rows": history.history_rows(
            project=project,
            annotator=request.user,
            items=list(page.object_list),
            criteria=criteria,
        ),
        "query": query.urlencode(),
    }
    status = 400 if bound and not form.is_valid() else 200
    if wants_partial(request):
        return render(request, "annotate/history.html#results", context, status=status)
    return render(request, "annotate/history.html", context, status=status)


def _row_or_404(request: AuthedRequest, project: Project, item_id: int) -> history.HistoryRow:
    row = history.history_row(project=project, annotator=request.user, item_id=item_id)
    if row is None:
        raise Http404("You have no labels on that item.")
    return row


def _edit_page(project: Project, item_id: int) -> str:
    return reverse("label_edit", args=[project.slug, item_id]) + "?next=history"


@require_GET
@login_required
def history_row(request: AuthedRequest, slug: str, item_id: int) -> HttpResponse:
    """One history row as shown (htmx: the Cancel of an in-place edit). Without htmx: the history page."""
    project, _role = selectors.project_for_user(request.user, slug)
    row = _row_or_404(request, project, item_id)
    if not wants_partial(request):
        return redirect("label_history", slug=project.slug)
    return render(request, "annotate/history.html#row", _row_context(project, row))


@require_http_methods(["GET", "POST"])
@login_required
def history_row_edit(request: AuthedRequest, slug: str, item_id: int) -> HttpResponse:
    """The in-place edit of one history row: GET swaps the row for its form; POST saves through the same service as
    the change-your-labels page (note cap, note rule, revision check) and swaps the row back, or shows the form
    again, still filled in, with the reason. Without htmx, the change-your-labels page does the job."""
    project, _role = selectors.project_for_user(request.user, slug)
    row = _row_or_404(request, project, item_id)
    if request.method == "GET":
        if not wants_partial(request):
            return redirect(_edit_page(project, item_id))
        context = _row_context(project, row, error="", values=row.values, note=row.note, revisions=row.revisions)
        return render(request, "annotate/history.html#row_edit", context)
    try:
        history.label_edit_from_form(
            project=project,
            annotator=request.user,
            item_id=item_id,
            data=request.POST,
        )
    except QueueError as exc:
        if not wants_partial(request):
            messages.error(request, exc.message)
            return redirect(_edit_page(project, item_id))
        criteria = selectors.criteria_of_version(project.current_rubric_id)
        chosen = {c.key: request.POST.get(f"c-{c.key}", "") for c in criteria}
        revisions = {key: request.POST.get(f"rev-{key}", "") for key in row.revisions}
        # htmx swaps only 2xx answers: the form comes back with its reason in it.
        context = _row_context(
            project, row, error=exc.message, values=chosen, note=request.POST.get("note", ""), revisions=revisions
        )
        return render(request, "annotate/history.html#row_edit", context)
    if not wants_partial(request):
        messages.success(request, "Your labels were updated.")
        return redirect("label_history", slug=project.slug)
    saved = _row_or_404(request, project, item_id)
    return render(request, "annotate/history.html#row", _row_context(project, saved, just_saved=True))
