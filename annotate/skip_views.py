"""The annotator's Skipped list: what they skipped in a project, when each comes back, and Reopen (annotate.skips)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from annotate import selectors, skips
from annotate.http import AuthedRequest
from annotate.models import Project
from annotate.services.errors import QueueError


@require_GET
@login_required
def label_skipped(request: AuthedRequest, slug: str) -> HttpResponse:
    """Your skipped items in this project, oldest first, each with when it comes back and a Reopen button."""
    project, _role = selectors.project_for_user(request.user, slug)
    rows = skips.skipped_rows(project=project, annotator=request.user)
    page = Paginator(rows, 50).get_page(request.GET.get("page"))
    context = {
        "project": project,
        "page": page,
        "entries": skips.skipped_entries(project=project, rows=list(page.object_list)),
        "now": timezone.now(),
        "open": project.status == Project.Status.ACTIVE and project.current_rubric_id is not None,
    }
    return render(request, "annotate/skipped.html", context)


@require_POST
@login_required
def label_reopen(request: AuthedRequest, slug: str, item_id: int) -> HttpResponse:
    """Take a skipped item back now: it is leased to you and shown first on the labeling page."""
    project, _role = selectors.project_for_user(request.user, slug)
    if project.status != Project.Status.ACTIVE:
        messages.error(request, "This project is not open for labeling right now.")
        return redirect("label_skipped", slug=project.slug)
    try:
        item = skips.skip_reopen(project=project, annotator=request.user, item_id=item_id)
    except QueueError as exc:
        messages.error(request, exc.message)
        return redirect("label_skipped", slug=project.slug)
    return redirect(reverse("label_queue", args=[project.slug]) + f"?item={item.pk}")
