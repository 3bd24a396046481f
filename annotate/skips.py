"""Skipped items come back.

A skip (services.queue_skip) releases the item to others at once and keeps it out of the annotator's queue for the
project's `skip_return_minutes`; after that it comes back at the end of their queue, served only when no fresh item is
left, oldest skip first. The annotator lists their skipped items and reopens one at once. The skip is the
Assignment row in state `skipped` with its `skipped_at` (a database constraint keeps the two together), so there is
one row per item and annotator whatever happens: leased, skipped, leased again.

Queue invariants (services, "The labeling queue") hold here too: every change of `item.n_leased` is made with the
item row locked, in the same transaction as the assignment row it counts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import User as AuthUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Exists, F, Min, OuterRef, QuerySet
from django.utils import timezone

from annotate.models import Assignment, Item, Label, Project
from annotate.services.errors import ItemNotNeeded, QueueError
from annotate.visibility import item_shown

SKIPPED = Assignment.State.SKIPPED
LEASED = Assignment.State.LEASED


def skip_return_check(minutes: int | None) -> None:
    """Refuse a skip delay outside 0..a week (None: not being changed)."""
    if minutes is not None and not 0 <= minutes <= Project.MAX_SKIP_RETURN_MINUTES:
        raise ValidationError(
            f"Skipped items come back after 0 to {Project.MAX_SKIP_RETURN_MINUTES:,} minutes (a week); "
            f"{minutes} is out of range."
        )


def project_set_skip_return(*, project: Project, minutes: int) -> Project:
    """Set the delay after which skipped items come back. It applies to skips already made, too."""
    skip_return_check(minutes)
    Project.objects.filter(pk=project.pk).update(skip_return_minutes=minutes, updated_at=timezone.now())
    project.skip_return_minutes = minutes
    return project


def _due_cutoff(project: Project, now: dt.datetime) -> dt.datetime:
    """Skips made at or before this moment have waited the project's delay: their items may come back."""
    return now - dt.timedelta(minutes=project.skip_return_minutes)


def _lease_skipped(*, item_id: int, annotator: AuthUser, rubric_version_id: int, now: dt.datetime) -> bool:
    """Turn this annotator's skip of the item into a live lease. Call with the item row locked. False when there is
    no skip to turn (a concurrent reopen or claim got there first): nothing is written then."""
    moved = Assignment.objects.filter(item_id=item_id, annotator=annotator, state=SKIPPED).update(
        state=LEASED,
        skipped_at=None,
        rubric_version_id=rubric_version_id,
        created_at=now,
        expires_at=now + dt.timedelta(seconds=int(settings.ASSIGNMENT_LEASE_SECONDS)),
    )
    if moved:
        Item.objects.filter(pk=item_id).update(n_leased=F("n_leased") + 1)
    return bool(moved)


def skip_claim_due(*, project: Project, annotator: AuthUser, rubric_version_id: int) -> Item | None:
    """Lease this annotator's oldest skipped item whose delay has passed and that still wants labels, or None.

    services.queue_claim calls this only when no fresh item is left, which is what puts skipped items at the end of
    the queue. The candidate's row is locked (SKIP LOCKED on PostgreSQL, the whole database on SQLite) before its
    counts are trusted; the skip is then turned into a lease by a conditional update, so a reopen in another tab
    that got there first is noticed and the next candidate is tried.
    """
    now = timezone.now()
    with transaction.atomic():
        for _attempt in range(3):
            item = (
                Item.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(
                    project=project,
                    n_submitted__lt=project.overlap - F("n_leased"),
                    assignments__annotator=annotator,
                    assignments__state=SKIPPED,
                    assignments__skipped_at__lte=_due_cutoff(project, now),
                )
                .exclude(
                    Exists(
                        Label.objects.filter(
                            item=OuterRef("pk"), annotator=annotator, rubric_version_id=rubric_version_id
                        )
                    )
                )
                .order_by("assignments__skipped_at", "assignments__id")
                .first()
            )
            if item is None:
                return None
            if _lease_skipped(item_id=item.pk, annotator=annotator, rubric_version_id=rubric_version_id, now=now):
                item.n_leased += 1
                return item
    return None


@transaction.atomic
def skip_reopen(*, project: Project, annotator: AuthUser, item_id: int) -> Item:
    """Lease one of this annotator's skipped items now, whatever its delay, so the labeling page shows it first.

    Raises services.QueueError when the item is not among their skips, services.ItemNotNeeded when it has since got
    every label it needs. Reopening an item already reopened (a second click) answers with it again.
    """

    if project.current_rubric_id is None:
        raise QueueError("This project is not open for labeling right now.")
    item = Item.objects.select_for_update().filter(project=project, pk=item_id).first()
    state = (
        Assignment.objects.filter(item_id=item_id, annotator=annotator).values_list("state", flat=True).first()
        if item is not None
        else None
    )
    if item is None or state is None:
        raise QueueError("That item is not among your skipped items.")
    if state == LEASED:
        return item
    if item.n_submitted + item.n_leased >= project.overlap:
        raise ItemNotNeeded("That item has since got all the labels it needs, so there is nothing left to do on it.")
    _lease_skipped(
        item_id=item.pk, annotator=annotator, rubric_version_id=project.current_rubric_id, now=timezone.now()
    )
    item.n_leased += 1
    return item


# --- Reads: the Skipped list and the empty queue's message ----------------------------------------------------


@dataclass(frozen=True)
class SkippedItem:
    item: Item
    skipped_at: dt.datetime
    returns_at: dt.datetime
    wanted: bool  # the item still wants labels: it comes back, and can be reopened
    shown_id: str = ""  # the external id only if the project shows it to annotators (annotate.visibility)


@dataclass(frozen=True)
class SkipSummary:
    n_skipped: int  # every item this annotator skipped in the project (and has not labeled since)
    n_coming_back: int  # those that still want labels
    first_return: dt.datetime | None  # when the first of those comes back; None when none does
    due_now: bool  # the first one's delay has passed already (it was taken by others for now, or is being written)


def skipped_rows(*, project: Project, annotator: AuthUser) -> QuerySet[Assignment]:
    """This annotator's skips in the project, oldest first (the order they come back in)."""
    return (
        Assignment.objects.filter(item__project=project, annotator=annotator, state=SKIPPED)
        .select_related("item")
        .order_by("skipped_at", "id")
    )


def skipped_entries(*, project: Project, rows: list[Assignment]) -> list[SkippedItem]:
    delay = dt.timedelta(minutes=project.skip_return_minutes)
    entries = []
    for row in rows:
        assert row.skipped_at is not None  # assignment_skipped_at_iff_skipped
        entries.append(
            SkippedItem(
                item=row.item,
                skipped_at=row.skipped_at,
                returns_at=row.skipped_at + delay,
                wanted=row.item.n_submitted + row.item.n_leased < project.overlap,
                shown_id=item_shown(project, row.item).external_id,
            )
        )
    return entries


def skip_summary(*, project: Project, annotator: AuthUser) -> SkipSummary:
    """What the empty queue says about skips: how many, how many come back, and from when."""
    rows = Assignment.objects.filter(item__project=project, annotator=annotator, state=SKIPPED)
    n_skipped = rows.count()
    if not n_skipped:
        return SkipSummary(n_skipped=0, n_coming_back=0, first_return=None, due_now=False)
    waiting = rows.filter(item__n_submitted__lt=project.overlap - F("item__n_leased")).aggregate(
        n=Count("id"), first=Min("skipped_at")
    )
    first = waiting["first"] + dt.timedelta(minutes=project.skip_return_minutes) if waiting["first"] else None
    return SkipSummary(
        n_skipped=n_skipped,
        n_coming_back=waiting["n"],
        first_return=first,
        due_now=first is not None and first <= timezone.now(),
    )
