"""Reads of error analysis that the pages, the API and judges.suggest share.

Access: an annotator reads only their own reviews; a lead reads every review of the project. The callers have
already passed `annotate.selectors.project_for_user`; `notes_visible` applies the per-note rule.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db.models import Case, Count, F, Q, QuerySet, Value, When
from django.db.models.functions import TruncDate
from django.utils import timezone

from annotate import visibility
from annotate.models import FailureMode, Item, Membership, Project, ReviewNote
from annotate.review import counts as review_counts


def notes_visible(*, project: Project, user: User, role: str) -> QuerySet[ReviewNote]:
    """The reviews this member may read: a lead all of them, anyone else only their own."""
    notes = ReviewNote.objects.filter(project=project).select_related("item", "reviewer", "failure_mode")
    if role != Membership.Role.LEAD:
        notes = notes.filter(reviewer=user)
    return notes.order_by("-created_at", "-pk")


@dataclass(frozen=True)
class NoteTally:
    n_reviews: int
    n_notes: int  # reviews with a note text: a pass may have none


def has_note(note: ReviewNote) -> bool:
    """A review counts as a note when it has a note text (every failure has one; a pass may not)."""
    return bool(note.note)


def note_tally(notes: QuerySet[ReviewNote]) -> NoteTally:
    """How many reviews, and how many of them carry a note (the rule of `has_note`), in one query."""
    found = notes.order_by().aggregate(n_reviews=Count("pk"), n_notes=Count("pk", filter=~Q(note="")))
    return NoteTally(n_reviews=found["n_reviews"], n_notes=found["n_notes"])


def review_next(*, project: Project, reviewer: User) -> Item | None:
    """The next item for this reviewer: production items first (today's sample first, then the newest samples),
    then the rest in the queue's shuffled order; never one they have reviewed."""
    return (
        Item.objects.filter(project=project)
        .exclude(review_notes__reviewer=reviewer)
        .annotate(from_production=Case(When(source=Item.Source.SAMPLE, then=Value(0)), default=Value(1)))
        .order_by("from_production", F("sampled_on").desc(nulls_last=True), "order_key", "pk")
        .first()
    )


def review_progress(*, project: Project, reviewer: User) -> tuple[int, int]:
    """(items this reviewer has reviewed, items in the project)."""
    return (
        ReviewNote.objects.filter(project=project, reviewer=reviewer).count(),
        Item.objects.filter(project=project).count(),
    )


@dataclass(frozen=True)
class ReviewCard:
    item: Item
    shown: visibility.ItemShown
    mine: ReviewNote | None


def review_card(*, project: Project, reviewer: User, item: Item) -> ReviewCard:
    """What the review screen shows of an item: its text and only the fields the blind rule lets annotators see."""
    mine = ReviewNote.objects.filter(item=item, reviewer=reviewer).first()
    return ReviewCard(item=item, shown=visibility.item_shown(project, item), mine=mine)


@dataclass(frozen=True)
class ModeRow:
    mode: FailureMode
    notes: list[ReviewNote]


@dataclass(frozen=True)
class Board:
    modes: list[ModeRow]
    unassigned: list[ReviewNote]
    n_pass: int


def board(*, project: Project) -> Board:
    """The lead's grouping board: every mode with its notes, and the failing notes in no mode (oldest first)."""
    modes = list(FailureMode.objects.filter(project=project).order_by("created_at", "pk"))
    by_mode: dict[int | None, list[ReviewNote]] = {m.pk: [] for m in modes}
    by_mode[None] = []
    fails = (
        ReviewNote.objects.filter(project=project, verdict=ReviewNote.Verdict.FAIL)
        .select_related("item", "reviewer")
        .order_by("created_at", "pk")
    )
    for note in fails:
        by_mode.setdefault(note.failure_mode_id, []).append(note)
    n_pass = ReviewNote.objects.filter(project=project, verdict=ReviewNote.Verdict.PASS).count()
    return Board(modes=[ModeRow(m, by_mode[m.pk]) for m in modes], unassigned=by_mode[None], n_pass=n_pass)


def mode_for_project(*, project: Project, mode_id: int) -> FailureMode | None:
    return FailureMode.objects.filter(project=project, pk=mode_id).first()


def failure_counts(*, project: Project, by: str = "day") -> tuple[review_counts.Counts, list[FailureMode]]:
    """Each mode's share of reviewed items per day or week (local days, settings.TIME_ZONE)."""
    modes = list(FailureMode.objects.filter(project=project).order_by("created_at", "pk"))
    tz = timezone.get_current_timezone()
    rows = (
        ReviewNote.objects.filter(project=project)
        .annotate(day=TruncDate("created_at", tzinfo=tz))
        .values_list("day", "item_id", "verdict", "failure_mode_id")
    )
    counted = review_counts.failure_counts(
        (review_counts.ReviewRow(day=d, item_id=i, verdict=v, mode_id=m) for d, i, v, m in rows.iterator()),
        mode_ids=[m.pk for m in modes],
        by=by,
    )
    return counted, modes


@dataclass(frozen=True)
class Example:
    item: Item
    verdict: str
    note: str


def mode_examples(*, mode: FailureMode) -> list[Example]:
    """The items noted with a mode, one per item (its oldest note), oldest first: the mode's examples."""
    seen: set[int] = set()
    out = []
    for note in mode.notes.select_related("item").order_by("created_at", "pk"):
        if note.item_id not in seen:
            seen.add(note.item_id)
            out.append(Example(item=note.item, verdict="fail", note=note.note))
    return out


def few_shot_lines(*, mode: FailureMode, limit: int = 8) -> str:
    """Few-shot candidates for the judge of a promoted mode, in the judge editor's format (`EXTERNAL_ID VERDICT |
    reasoning` a line): train items only (dev and test stay for measuring the judge), half of them items noted with
    the mode (fail), half items whose review passed (pass), so the examples show both answers."""
    fails = [e for e in mode_examples(mode=mode) if e.item.split == Item.Split.TRAIN][: limit - limit // 2]
    passes = (
        ReviewNote.objects.filter(
            project_id=mode.project_id, verdict=ReviewNote.Verdict.PASS, item__split=Item.Split.TRAIN
        )
        .select_related("item")
        .order_by("created_at", "pk")
    )
    seen: set[int] = {e.item.pk for e in fails}
    lines = [f"{e.item.external_id} fail | {' '.join(e.note.split())[:200]}" for e in fails]
    for note in passes:
        if len(lines) >= limit:
            break
        if note.item_id not in seen:
            seen.add(note.item_id)
            lines.append(f"{note.item.external_id} pass | The reviewer passed it.")
    return "\n".join(lines)


def mode_note_counts(*, project: Project) -> dict[int, int]:
    return dict(
        ReviewNote.objects.filter(project=project, failure_mode__isnull=False)
        .values_list("failure_mode_id")
        .annotate(n=Count("item_id", distinct=True))
        .values_list("failure_mode_id", "n")
        .order_by()
    )


def today() -> dt.date:
    return timezone.localdate()
