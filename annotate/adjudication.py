"""Adjudication: the lead settles, one item at a time, what the annotators did not.

The unresolved list is read from the stored agreement report (its per-criterion `needs_adjudication` ids, never
recomputed here) minus the (item, criterion) pairs a lead has given a gold label since: a saved item leaves the list
at once, without waiting for the report's next refresh. The write is `gold_set_item`: every unresolved criterion of
one item in one transaction, through `services.gold_set` (which validates each value).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth.models import User as AuthUser
from django.core.exceptions import ValidationError
from django.db import transaction

from annotate.models import AgreementReport, Criterion, GoldLabel, Item, Label, Project
from annotate.services.gold import gold_set


@dataclass(frozen=True)
class Unresolved:
    """The unresolved items of a project (or of one criterion): item id -> keys of its unresolved criteria, in
    rubric order; items in ascending id order. `capped`: the stored report lists at most
    reports.MAX_ADJUDICATION_IDS ids per criterion, so more may be waiting than listed."""

    items: dict[int, list[str]]
    capped: bool

    def next_after(self, item_id: int | None) -> int | None:
        """The first unresolved item after `item_id` (by id), wrapping round; never `item_id` itself."""
        ids = list(self.items)
        later = [pk for pk in ids if item_id is None or pk > item_id]
        earlier = [pk for pk in ids if item_id is not None and pk < item_id]
        found = later or earlier
        return found[0] if found else None


def unresolved(*, project: Project, report: AgreementReport | None, criteria: Sequence[Criterion]) -> Unresolved:
    """What still needs a lead's gold label on `criteria` (current rubric) according to `report`. Two queries at
    most: the report is already loaded; gold labels are read for the listed items only."""
    if report is None:
        return Unresolved(items={}, capped=False)
    stored = report.data.get("criteria", {})
    listed: dict[str, list[int]] = {}
    capped = False
    for criterion in criteria:
        consensus = stored.get(criterion.key, {}).get("consensus", {})
        ids = [int(pk) for pk in consensus.get("needs_adjudication", [])]
        capped = capped or consensus.get("n_needs_adjudication", 0) > len(ids)
        listed[criterion.key] = ids
    every_id = {pk for ids in listed.values() for pk in ids}
    by_pk = {c.pk: c.key for c in criteria}
    settled = {
        (item_id, by_pk[criterion_id])
        for item_id, criterion_id in GoldLabel.objects.filter(
            item_id__in=every_id, criterion_id__in=list(by_pk)
        ).values_list("item_id", "criterion_id")
    }
    items: dict[int, list[str]] = {}
    for criterion in criteria:  # rubric order
        for pk in listed[criterion.key]:
            if (pk, criterion.key) not in settled:
                items.setdefault(pk, []).append(criterion.key)
    return Unresolved(items=dict(sorted(items.items())), capped=capped)


@dataclass(frozen=True)
class AnnotatorRow:
    """One annotator's labels on the disputed item: value per criterion key (display text) and their note."""

    annotator: AuthUser
    values: dict[str, Label]
    note: str


@dataclass(frozen=True)
class DisputedItem:
    item: Item
    criteria: list[Criterion]  # the unresolved ones, rubric order
    annotators: list[AnnotatorRow]


def disputed_item(*, project: Project, item_id: int, criteria: Sequence[Criterion]) -> DisputedItem | None:
    """The item with every annotator's labels (current rubric, the given criteria) and note: for a lead only."""
    item = Item.objects.filter(project=project, pk=item_id).first()
    if item is None:
        return None
    rows: dict[int, AnnotatorRow] = {}
    labels = (
        Label.objects.filter(item=item, criterion__in=list(criteria))
        .select_related("annotator", "criterion")
        .order_by("created_at", "annotator_id")
    )
    for label in labels:
        row = rows.setdefault(label.annotator_id, AnnotatorRow(annotator=label.annotator, values={}, note=label.note))
        row.values[label.criterion.key] = label
    return DisputedItem(item=item, criteria=list(criteria), annotators=list(rows.values()))


@transaction.atomic
def gold_set_item(
    *, project: Project, item_id: int, values: dict[str, str], note: str, actor: AuthUser
) -> list[GoldLabel]:
    """The lead's gold label for each criterion in `values` on one item, all or none (a bad value saves nothing)."""
    if not values:
        raise ValidationError("Choose a gold value for at least one criterion.")
    if len(note.strip()) > 10_000:  # the cap of an annotator's note (services.label_submit)
        raise ValidationError("The note is too long (at most 10,000 characters).")
    return [
        gold_set(project=project, item_id=item_id, criterion_key=key, value=value, note=note, actor=actor)
        for key, value in values.items()
    ]
