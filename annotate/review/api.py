"""The error-analysis part of the token API: review notes (read and write) and failure modes with their counts.

Mounted on annotate.api's NinjaAPI (`api.add_router("/", "annotate.review.api.router")`), so its TokenAuth,
per-token throttle and error shape apply. Access as on the pages: a member reads and writes their own reviews
(a lead reads everyone's); failure modes are for leads. Everything goes through `project_for_user`.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import Router, Schema, Status

from annotate import selectors, visibility
from annotate.models import Item, Membership, Project, ReviewNote
from annotate.review import export, services
from annotate.review import selectors as review_selectors

router = Router(tags=["error analysis"])
MAX_NOTES_PAGE = 1000


def _user(request: HttpRequest) -> User | AnonymousUser:
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, User) else request.user


def _project(request: HttpRequest, slug: str, *, role: str | None = None) -> tuple[Project, str]:
    return selectors.project_for_user(_user(request), slug, role=role)


class FieldErrorOut(Schema):
    field: str
    message: str


class ErrorOut(Schema):
    detail: str
    errors: list[FieldErrorOut] = []


class ReviewIn(Schema):
    item_id: str  # the item's external id
    verdict: str
    note: str = ""


class ReviewOut(Schema):
    id: int
    item_id: str | None  # the external id; null for an annotator when the project hides ids (blind annotation)
    reviewer: str
    verdict: str
    note: str  # "" when the review has none: every failure has a note, a pass may not (it is not counted as a note)
    failure_mode: str | None
    reviewed_at: str


def _review_out(note: ReviewNote, project: Project, *, lead: bool) -> dict[str, Any]:
    shown = note.item.external_id if lead else visibility.item_shown(project, note.item).external_id or None
    return {
        "id": note.pk,
        "item_id": shown,
        "reviewer": note.reviewer.get_username(),
        "verdict": note.verdict,
        "note": note.note,
        "failure_mode": note.failure_mode.name if lead and note.failure_mode else None,
        "reviewed_at": note.created_at.isoformat(),
    }


@router.get("/projects/{slug}/review-notes", response={200: list[ReviewOut], 404: ErrorOut})
def review_notes_list(request: HttpRequest, slug: str, offset: int = 0) -> list[dict[str, Any]]:
    """Reviews, newest first, up to 1,000 from `offset`: a member's own, or for a lead everyone's."""
    project, role = _project(request, slug)
    user = _user(request)
    assert isinstance(user, User)
    notes = review_selectors.notes_visible(project=project, user=user, role=role)
    lead = role == Membership.Role.LEAD
    return [_review_out(n, project, lead=lead) for n in notes[max(0, offset) : max(0, offset) + MAX_NOTES_PAGE]]


@router.post("/projects/{slug}/review-notes", response={201: ReviewOut, 400: ErrorOut, 404: ErrorOut})
def review_note_write(request: HttpRequest, slug: str, data: ReviewIn) -> Status:
    """Record (or change) the caller's review of an item: verdict pass/fail and, on a fail, the note."""
    project, role = _project(request, slug)
    user = _user(request)
    assert isinstance(user, User)
    item = Item.objects.filter(project=project, external_id=data.item_id).first()
    if item is None:
        return Status(400, {"detail": "No such item.", "errors": [{"field": "item_id", "message": "unknown"}]})
    try:
        note = services.review_submit(
            project=project, reviewer=user, item_id=item.pk, verdict=data.verdict, note=data.note
        )
    except ValidationError as exc:
        return Status(400, {"detail": " ".join(exc.messages), "errors": []})
    note = ReviewNote.objects.select_related("item", "reviewer", "failure_mode").get(pk=note.pk)
    return Status(201, _review_out(note, project, lead=role == Membership.Role.LEAD))


@router.get("/projects/{slug}/failure-modes", response={200: list[dict[str, Any]], 404: ErrorOut})
def failure_modes_list(request: HttpRequest, slug: str) -> list[dict[str, Any]]:
    """The `failure_modes` export as JSON: each mode's definition, counts with intervals, example ids and notes,
    then the unassigned failing notes (leads only)."""
    project, _role = _project(request, slug, role=Membership.Role.LEAD)
    return list(export.failure_modes_rows(project=project))
