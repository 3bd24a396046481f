"""An annotator's own history: the items they labeled with the values and note they gave, filtered by value and date,
and the edit made in place from it (through services.label_edit, so its note cap, note rule and revision check hold).

Values are shown as the annotator gave them: Pass/Fail, or for pairwise projects the side they saw (Left/Right) and
Tie, never the stored A/B, which an annotator never sees.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib.auth.models import User as AuthUser
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from annotate import selectors
from annotate.models import Criterion, Item, Label, Project
from annotate.services.errors import QueueError
from annotate.services.labels import label_edit, label_values_from_form
from annotate.splits import shown_order
from annotate.visibility import item_shown

BINARY_FILTERS = [("", "Any value"), ("pass", "Pass"), ("fail", "Fail")]
PAIRWISE_FILTERS = [("", "Any value"), ("left", "Left is better"), ("right", "Right is better"), ("tie", "Tie")]


class HistoryFilterForm(forms.Form):
    """?value=&since=&until= on the history page: items with at least one label of that value, labeled in the range."""

    value = forms.ChoiceField(required=False, label="Value")
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, pairwise: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["value"].choices = PAIRWISE_FILTERS if pairwise else BINARY_FILTERS  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise forms.ValidationError("The start date is after the end date.")
        return data


def _value_q(value: str) -> Q:
    """A label of this value as the annotator gave it (pairwise sides depend on the order they were shown)."""
    if value == "left":
        return Q(value="a", shown_order="ab") | Q(value="b", shown_order="ba")
    if value == "right":
        return Q(value="b", shown_order="ab") | Q(value="a", shown_order="ba")
    return Q(value=value)


def _day_start(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def history_items(
    *,
    project: Project,
    annotator: AuthUser,
    value: str = "",
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> QuerySet[Item]:
    """The annotator's labeled items (current rubric), newest first, filtered; `labeled_at` annotated. The dates are
    whole days in the server's time zone, both included. Served by label_annotator_created_idx."""
    items = selectors.history_of_annotator(project=project, annotator=annotator)
    if value:
        mine = Label.objects.filter(
            item_id=OuterRef("pk"), annotator=annotator, rubric_version_id=project.current_rubric_id
        )
        items = items.filter(Exists(mine.filter(_value_q(value))))
    # On the selector's `labeled_at` (the latest of the annotator's labels on the item): a HAVING clause.
    if since:
        items = items.filter(Q(labeled_at__gte=_day_start(since)))
    if until:
        items = items.filter(Q(labeled_at__lt=_day_start(until + dt.timedelta(days=1))))
    return items


@dataclass(frozen=True)
class Given:
    """One criterion's value as the annotator gave it."""

    criterion: Criterion
    value: str  # pass, fail, left, right, tie
    label: str  # Pass, Left is better, ...


@dataclass(frozen=True)
class HistoryRow:
    item: Item
    labeled_at: dt.datetime
    given: list[Given]
    note: str
    revisions: dict[str, int]
    shown_order: str | None  # the pairwise order this annotator saw, None for binary (as on an item card)
    shown_id: str  # the external id if the project shows it to annotators (annotate.visibility), else ""

    @property
    def values(self) -> dict[str, str]:
        """Criterion key -> value as given (the edit form's pre-selection)."""
        return {g.criterion.key: g.value for g in self.given}


_SHOWN = {"pass": "Pass", "fail": "Fail", "left": "Left is better", "right": "Right is better", "tie": "Tie"}


def as_given(label: Label) -> str:
    """The label's value as the annotator chose it: a/b become the side they saw."""
    if label.value in {"a", "b"}:
        return "left" if (label.value == "a") == (label.shown_order == "ab") else "right"
    return label.value


def history_rows(
    *, project: Project, annotator: AuthUser, items: Sequence[Item], criteria: Sequence[Criterion]
) -> list[HistoryRow]:
    """The rows of one page of items: one query for all their labels by this annotator (current rubric)."""
    labels: dict[int, dict[str, Label]] = {}
    for label in Label.objects.filter(
        item_id__in=[item.pk for item in items],
        annotator=annotator,
        rubric_version_id=project.current_rubric_id,
    ).only("item", "criterion", "value", "note", "shown_order", "revision"):
        labels.setdefault(label.item_id, {})[label.criterion_id] = label  # type: ignore[index]
    rows = []
    for item in items:
        mine = labels.get(item.pk, {})
        given = []
        for criterion in criteria:
            found = mine.get(criterion.pk)  # type: ignore[call-overload]
            if found is not None:
                value = as_given(found)
                given.append(Given(criterion=criterion, value=value, label=_SHOWN[value]))
        note = next((lab.note for lab in mine.values()), "")
        revisions = {c.key: mine[c.pk].revision for c in criteria if c.pk in mine}  # type: ignore[index]
        shown = shown_order(annotator.pk, item.pk) if project.is_pairwise else None
        rows.append(
            HistoryRow(
                item=item,
                labeled_at=getattr(item, "labeled_at", None) or timezone.now(),
                given=given,
                note=note,
                revisions=revisions,
                shown_order=shown,
                shown_id=item_shown(project, item).external_id,
            )
        )
    return rows


def history_row(*, project: Project, annotator: AuthUser, item_id: int) -> HistoryRow | None:
    """One row, for the in-place swap; None when this annotator has no label on the item (current rubric)."""
    item = history_items(project=project, annotator=annotator).filter(pk=item_id).first()
    if item is None:
        return None
    criteria = selectors.criteria_of_version(project.current_rubric_id)
    return history_rows(project=project, annotator=annotator, items=[item], criteria=criteria)[0]


def label_edit_from_form(*, project: Project, annotator: AuthUser, item_id: int, data: Any) -> list[Label]:
    """Change the annotator's own labels on one item from submitted form data (c-<key>, rev-<key>, note): the
    history row's in-place form and the change-your-labels page. Raises services.QueueError with the reason.
    Only the criteria the annotator has labels on change: an item whose labels were carried over a rubric change may
    still owe the redefined ones, which the queue asks for."""
    labeled = set(
        Label.objects.filter(
            item_id=item_id, annotator=annotator, rubric_version_id=project.current_rubric_id
        ).values_list("criterion_id", flat=True)
    )
    criteria = tuple(c for c in selectors.criteria_of_version(project.current_rubric_id) if c.pk in labeled)
    shown = shown_order(annotator.pk, item_id) if project.is_pairwise else None
    values, problems = label_values_from_form(project=project, criteria=criteria, data=data, shown=shown)
    if problems:
        raise QueueError(" ".join(problems))
    revisions = {}
    for criterion in criteria:
        try:
            revisions[criterion.key] = int(data.get(f"rev-{criterion.key}", ""))
        except ValueError:
            revisions[criterion.key] = -1
    return label_edit(
        project=project,
        annotator=annotator,
        item_id=item_id,
        criteria=criteria,
        values=values,
        revisions=revisions,
        note=data.get("note", ""),
    )
