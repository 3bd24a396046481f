"""Writes of error analysis: reviews, failure modes and their grouping operations, and promotion to a criterion.

Every grouping operation keeps every note: merge moves the notes of one mode into another before it removes the
first; split moves chosen notes into a new mode; a removed mode leaves its notes unassigned (on_delete=SET_NULL).
A note belongs to at most one mode by construction (one foreign key), only a failing review has one
(review_note_mode_only_on_fail), and mode names are unique per project whatever their case.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from annotate import carry, selectors
from annotate.models import Criterion, FailureMode, Item, Label, Project, ReviewNote, RubricVersion
from annotate.services import leases, rubrics

MAX_NOTE_CHARS = 10_000
MAX_NAME_CHARS = 120
MAX_DEFINITION_CHARS = 2_000
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _clean_text(text: str, *, field: str, limit: int) -> str:
    text = (text or "").replace("\r\n", "\n").strip()
    if _CONTROL.search(text):
        raise ValidationError(f"The {field} holds a control character: remove it.")
    if len(text) > limit:
        raise ValidationError(f"The {field} is {len(text):,} characters long: at most {limit:,}.")
    return text


def review_refusal(project: Project) -> str:
    """Why the project cannot be reviewed, or "" when it can."""
    if project.is_pairwise:
        return "Review mode reads one output at a time: it is for binary projects."
    return ""


# --- Reviews --------------------------------------------------------------------------------------------------


@transaction.atomic
def review_submit(
    *, project: Project, reviewer: User, item_id: int, verdict: str, note: str, now: dt.datetime | None = None
) -> ReviewNote:
    """Record (or change) the reviewer's overall verdict and note on an item of the project.

    A failing review needs a note: the first thing that went wrong. Changing a review keeps its failure mode while it
    still fails; a review changed to pass leaves its mode (only failures are grouped).
    """
    if refusal := review_refusal(project):
        raise ValidationError(refusal)
    if verdict not in ReviewNote.Verdict.values:
        raise ValidationError("Choose Pass or Fail.")
    note = _clean_text(note, field="note", limit=MAX_NOTE_CHARS)
    if verdict == ReviewNote.Verdict.FAIL and not note:
        raise ValidationError("Say what went wrong first: a failing review needs a note.")
    if not Item.objects.filter(pk=item_id, project=project).exists():
        raise ValidationError("No such item in this project.")
    existing = ReviewNote.objects.select_for_update().filter(item_id=item_id, reviewer=reviewer).first()
    if existing is None:
        return ReviewNote.objects.create(
            project=project,
            item_id=item_id,
            reviewer=reviewer,
            verdict=verdict,
            note=note,
            created_at=now or timezone.now(),
        )
    existing.verdict, existing.note = verdict, note
    if verdict == ReviewNote.Verdict.PASS:
        existing.failure_mode = None
    existing.save(update_fields=["verdict", "note", "failure_mode", "updated_at"])
    return existing


# --- Failure modes ----------------------------------------------------------------------------------------------


def _mode(project: Project, mode_id: int, *, lock: bool = True) -> FailureMode:
    rows = FailureMode.objects.filter(pk=mode_id, project=project)
    mode = (rows.select_for_update() if lock else rows).first()
    if mode is None:
        raise ValidationError("No such failure mode in this project.")
    return mode


def _name(name: str) -> str:
    name = " ".join(_clean_text(name, field="name", limit=MAX_NAME_CHARS).split())
    if not name:
        raise ValidationError("Give the failure mode a name.")
    return name


def _save_named(mode: FailureMode) -> FailureMode:
    try:
        with transaction.atomic():
            mode.save()
    except IntegrityError as exc:
        raise ValidationError(f"A failure mode named “{mode.name}” exists already: merge into it instead.") from exc
    return mode


def mode_create(*, project: Project, name: str, definition: str = "", actor: User | None = None) -> FailureMode:
    return _save_named(
        FailureMode(
            project=project,
            name=_name(name),
            definition=_clean_text(definition, field="definition", limit=MAX_DEFINITION_CHARS),
            created_by=actor,
        )
    )


@transaction.atomic
def mode_rename(*, project: Project, mode_id: int, name: str, definition: str | None = None) -> FailureMode:
    mode = _mode(project, mode_id)
    mode.name = _name(name)
    if definition is not None:
        mode.definition = _clean_text(definition, field="definition", limit=MAX_DEFINITION_CHARS)
    return _save_named(mode)


@transaction.atomic
def mode_merge(*, project: Project, source_id: int, target_id: int) -> FailureMode:
    """Move every note of `source` into `target` and remove `source`. Returns the target."""
    if source_id == target_id:
        raise ValidationError("Choose another mode to merge into.")
    # Lock both in id order, so two merges of the same pair in opposite directions cannot deadlock.
    first, second = sorted((source_id, target_id))
    locked = {first: _mode(project, first), second: _mode(project, second)}
    source, target = locked[source_id], locked[target_id]
    if source.promoted_key:
        raise ValidationError(f"“{source.name}” became a criterion: merge other modes into it instead.")
    ReviewNote.objects.filter(failure_mode=source).update(failure_mode=target, updated_at=timezone.now())
    source.delete()
    return target


@transaction.atomic
def mode_split(
    *,
    project: Project,
    mode_id: int,
    note_ids: Sequence[int],
    name: str,
    definition: str = "",
    actor: User | None = None,
) -> FailureMode:
    """Move the chosen notes of a mode into a new mode named `name`. Returns the new mode."""
    mode = _mode(project, mode_id)
    wanted = set(note_ids)
    if not wanted:
        raise ValidationError("Choose the notes that go to the new mode.")
    found = set(ReviewNote.objects.filter(failure_mode=mode, pk__in=wanted).values_list("pk", flat=True))
    if found != wanted:
        raise ValidationError(f"Only notes of “{mode.name}” can be split off it.")
    new = mode_create(project=project, name=name, definition=definition, actor=actor)
    ReviewNote.objects.filter(pk__in=found).update(failure_mode=new, updated_at=timezone.now())
    return new


@transaction.atomic
def mode_delete(*, project: Project, mode_id: int) -> int:
    """Remove a mode; its notes become unassigned (none is lost). Returns how many notes it had."""
    mode = _mode(project, mode_id)
    if mode.promoted_key:
        raise ValidationError(f"“{mode.name}” became a criterion: it stays.")
    n = ReviewNote.objects.filter(failure_mode=mode).update(failure_mode=None, updated_at=timezone.now())
    mode.delete()
    return n


@transaction.atomic
def note_assign(*, project: Project, note_id: int, mode_id: int | None) -> ReviewNote:
    """Put a failing review's note in a mode (None: unassigned)."""
    note = ReviewNote.objects.select_for_update().filter(pk=note_id, project=project).first()
    if note is None:
        raise ValidationError("No such note in this project.")
    mode = _mode(project, mode_id, lock=False) if mode_id is not None else None
    if mode is not None and note.verdict != ReviewNote.Verdict.FAIL:
        raise ValidationError("Only a failing review's note goes into a failure mode.")
    note.failure_mode = mode
    note.save(update_fields=["failure_mode", "updated_at"])
    return note


@transaction.atomic
def notes_assign(*, project: Project, note_ids: Sequence[int], mode_id: int) -> int:
    """Put several failing notes in one mode (a suggestion the lead applies). Returns how many moved."""
    mode = _mode(project, mode_id, lock=False)
    return ReviewNote.objects.filter(project=project, pk__in=list(note_ids), verdict=ReviewNote.Verdict.FAIL).update(
        failure_mode=mode, updated_at=timezone.now()
    )


# --- Promotion ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Promotion:
    version: RubricVersion
    criterion: Criterion
    n_fail: int
    n_pass: int


@dataclass(frozen=True)
class ReviewLabel:
    """A label of the promoted criterion that one review gives."""

    item_id: int
    annotator_id: int
    value: str
    note: str
    created_at: dt.datetime


@dataclass(frozen=True)
class PromotionPlan:
    """What promoting a mode writes: the labels its reviews give, and how many items of the project get none."""

    labels: tuple[ReviewLabel, ...]
    n_items: int  # items in the project

    @property
    def n_fail(self) -> int:
        return sum(1 for label in self.labels if label.value == Label.Value.FAIL)

    @property
    def n_pass(self) -> int:
        return len(self.labels) - self.n_fail

    @property
    def n_reviewed_items(self) -> int:
        """Items that get a label of the new criterion from the reviews."""
        return len({label.item_id for label in self.labels})

    @property
    def n_unlabeled_items(self) -> int:
        """Items that will need a label of the new criterion from an annotator."""
        return self.n_items - self.n_reviewed_items


def _n(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def promotion_sentence(*, plan: PromotionPlan, name: str, kept: Sequence[carry.CriterionConsequence]) -> str:
    """What saving the promotion does to the labels, from the numbers `mode_promote` writes: "“Avoids: X”: 12
    reviewed items get their labels from the reviews (8 fail, 4 pass); the other 713 items will need a new label on
    it; the other 3 criteria keep their 725 labels"."""
    n_reviewed, n_other = plan.n_reviewed_items, plan.n_unlabeled_items
    if n_reviewed == 1:
        verb = "gets its label" if len(plan.labels) == 1 else "gets its labels"
    else:
        verb = "get their labels"
    tally = f"({plan.n_fail:,} fail, {plan.n_pass:,} pass)"
    parts = [f"“{name}”: {_n(n_reviewed, 'reviewed item')} {verb} from the reviews {tally}"]
    if n_other:
        parts.append(f"the other {_n(n_other, 'item')} will need a new label on it")
    n_kept = _n(sum(c.n_labels for c in kept), "label")
    if len(kept) == 1:
        parts.append(f"“{kept[0].name}” keeps its {n_kept}")
    elif kept:
        parts.append(f"the other {len(kept)} criteria keep their {n_kept}")
    return "; ".join(parts)


def promote_name(mode: FailureMode) -> str:
    """The suggested name of the promoted criterion, which the lead may edit: a pass means the failure is absent."""
    return f"Avoids: {mode.name}"[:200]


def promote_key(project: Project, mode: FailureMode) -> str:
    """A criterion key made from the mode's name that the current rubric does not use yet."""
    base = (slugify(f"avoids {mode.name}").replace("-", "_") or "avoids_failure")[:56]
    taken = {c.key for c in selectors.criteria_current(project=project)}
    key, n = base, 2
    while key in taken:
        key, n = f"{base}_{n}", n + 1
    return key


def promote_refusal(project: Project, mode: FailureMode) -> str:
    """Why the mode cannot become a criterion, or "" when it can."""
    if refusal := review_refusal(project):
        return refusal
    if mode.promoted_key:
        return f"“{mode.name}” is already the criterion “{mode.promoted_key}”."
    if not ReviewNote.objects.filter(failure_mode=mode).exists():
        return (
            f"“{mode.name}” holds no notes: a criterion needs examples. Put at least one noted item in it on the "
            "failure modes board first."
        )
    return ""


def promotion_plan(*, project: Project, mode: FailureMode, now: dt.datetime | None = None) -> PromotionPlan:
    """The labels the reviews give the promoted criterion: each reviewer's review noted with this mode fails it, each
    passing review passes it; reviews that failed for another reason say nothing about it and give no label."""
    now = now or timezone.now()
    reviews = ReviewNote.objects.filter(project=project).filter(failure_mode=mode) | ReviewNote.objects.filter(
        project=project, verdict=ReviewNote.Verdict.PASS
    )
    labels = tuple(
        ReviewLabel(
            item_id=item_id,
            annotator_id=reviewer_id,
            value=Label.Value.FAIL if mode_id == mode.pk else Label.Value.PASS,
            note=note if mode_id == mode.pk else "",
            created_at=created_at if created_at <= now else now,
        )
        for item_id, reviewer_id, mode_id, note, created_at in reviews.order_by("pk").values_list(
            "item_id", "reviewer_id", "failure_mode_id", "note", "created_at"
        )
    )
    return PromotionPlan(labels=labels, n_items=Item.objects.filter(project=project).count())


def promote_criteria(
    *, project: Project, key: str, name: str, description: str
) -> tuple[list[rubrics.CriterionData], list[rubrics.CriterionData]]:
    """The current criteria and the criteria after adding the promoted one (checked)."""
    key = key.strip()
    if not re.fullmatch(r"[a-z0-9_-]{1,64}", key):
        raise ValidationError("The key takes lowercase letters, digits, - and _ (up to 64).")
    name = _clean_text(name, field="criterion name", limit=200)
    description = _clean_text(description, field="definition", limit=MAX_DEFINITION_CHARS)
    if not name or not description:
        raise ValidationError("A criterion needs a name and a definition.")
    saved = [
        rubrics.CriterionData(key=c.key, name=c.name, description=c.description)
        for c in selectors.criteria_current(project=project)
    ]
    if any(c["key"] == key for c in saved):
        raise ValidationError(f"The rubric has a criterion “{key}” already: choose another key.")
    return saved, [*saved, rubrics.CriterionData(key=key, name=name, description=description)]


@transaction.atomic
def mode_promote(
    *,
    project: Project,
    mode_id: int,
    key: str,
    name: str,
    description: str,
    base_number: int,
    actor: User,
) -> Promotion:
    """Make the mode a binary criterion of a new rubric version, and its reviews labeled examples of it.

    The new version comes from the rubric service (so the labels of every other criterion carry over), and only if
    the rubric is still version `base_number`, the one the lead reviewed. Each reviewer's judgement becomes their
    label on the new criterion: a review noted with this mode fails it, a passing review passes it. Reviews that
    failed for another reason say nothing about this criterion and give no label. Items keep their splits.
    """
    Project.objects.select_for_update().filter(pk=project.pk).first()
    mode = _mode(project, mode_id)
    if refusal := promote_refusal(project, mode):
        raise ValidationError(refusal)
    current = selectors.rubric_current(project=project)
    if (current.number if current else 0) != base_number:
        raise ValidationError(
            f"Someone saved rubric v{current.number if current else 0} while you were reviewing: review it again."
        )
    _saved, criteria = promote_criteria(project=project, key=key, name=name, description=description)
    project.refresh_from_db(fields=["status"])
    version = rubrics.rubric_set_criteria(
        project=project, criteria=criteria, actor=actor, note=f"failure mode “{mode.name}” promoted"[:500]
    )
    assert version is not None  # a criterion was added
    criterion = version.criteria.get(key=criteria[-1]["key"])
    plan = promotion_plan(project=project, mode=mode)
    labels = [
        Label(
            item_id=r.item_id,
            criterion=criterion,
            rubric_version=version,
            annotator_id=r.annotator_id,
            value=r.value,
            note=r.note,
            created_at=r.created_at,
        )
        for r in plan.labels
    ]
    Label.objects.bulk_create(labels, ignore_conflicts=True)
    leases.queue_counts_refresh(project=project)
    mode.promoted_key, mode.promoted_in = criterion.key, version
    mode.save(update_fields=["promoted_key", "promoted_in", "updated_at"])
    return Promotion(version=version, criterion=criterion, n_fail=plan.n_fail, n_pass=plan.n_pass)
