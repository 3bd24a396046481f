"""Adjudication: a lead's gold label for an item."""

from __future__ import annotations

from django.contrib.auth.models import User as AuthUser
from django.core.exceptions import ValidationError

from annotate import selectors
from annotate.models import GoldLabel, Item, Label, Project
from annotate.services.labels import label_validate_value


def gold_set(
    *, project: Project, item_id: int, criterion_key: str, value: str, note: str, actor: AuthUser
) -> GoldLabel:
    """A lead's gold label for an item on a current criterion. Setting it again replaces value and note."""
    criterion = next(
        (c for c in selectors.criteria_of_version(project.current_rubric_id) if c.key == criterion_key), None
    )
    item = Item.objects.filter(project=project, pk=item_id).first()
    if criterion is None or item is None:
        raise ValidationError("That item or criterion is not in this project's current rubric.")
    shown = Label.Order.AB if project.is_pairwise else None
    label_validate_value(project=project, value=value, shown_order=shown)
    gold, _ = GoldLabel.objects.update_or_create(
        item=item, criterion=criterion, defaults={"value": value, "note": note.strip()[:10_000], "set_by": actor}
    )
    return gold
