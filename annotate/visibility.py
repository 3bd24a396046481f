"""Blind annotation: what the labeling screens show of an item besides its text.

Annotators see an item's input and outputs, and of its external id and metadata only the fields the lead listed in
`Project.annotator_fields` (none by default). External ids and metadata often name the models being compared (the
demo's pairwise ids end in `…/chatgpt-vs-tulu_65B`), which would unblind the comparison. The labeling screens apply
the rule to everyone who labels, leads included; the lead's own pages (adjudication, imports, exports, the API's
lead endpoints) show everything.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from annotate.models import Item, Project

EXTERNAL_ID = "external_id"
MAX_FIELDS = 20
_FIELD_RE = re.compile(r"^[\w.\-]{1,64}$")
# A listed metadata value longer than this is cut: the card is a hint, not a viewer.
_MAX_VALUE_CHARS = 200


@dataclass(frozen=True)
class ItemShown:
    """The parts of an item beyond its text that a labeling screen may show."""

    external_id: str  # "" when hidden
    metadata: tuple[tuple[str, str], ...]


def item_shown(project: Project, item: Item) -> ItemShown:
    fields = [f for f in project.annotator_fields or [] if isinstance(f, str)]
    metadata = item.metadata if isinstance(item.metadata, dict) else {}
    return ItemShown(
        external_id=item.external_id if EXTERNAL_ID in fields else "",
        metadata=tuple((key, _text(metadata[key])) for key in fields if key != EXTERNAL_ID and key in metadata),
    )


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 1] + "…"


def fields_parse(raw: str) -> list[str]:
    """The field names a lead typed (comma- or space-separated), checked, duplicates dropped, in order."""
    return fields_check([part for part in re.split(r"[,\s]+", raw.strip()) if part])


def fields_check(fields: list[str]) -> list[str]:
    """The field names, each checked, duplicates dropped, in order; ValidationError names the first bad one."""
    names: list[str] = []
    for part in fields:
        if not isinstance(part, str) or not _FIELD_RE.fullmatch(part):
            raise ValidationError(
                f"“{str(part)[:64]}” is not a field name: use letters, digits, dots, dashes and underscores (up to 64)."
            )
        if part not in names:
            names.append(part)
    if len(names) > MAX_FIELDS:
        raise ValidationError(f"List at most {MAX_FIELDS} fields.")
    return names


@transaction.atomic
def project_set_annotator_fields(*, project: Project, fields: list[str]) -> Project:
    """Set which fields annotators see. Checked here too, so the API and commands cannot store a bad list."""
    checked = fields_check(fields)
    Project.objects.filter(pk=project.pk).update(annotator_fields=checked)
    project.annotator_fields = checked
    return project


def metadata_keys(project: Project, *, limit: int = 200) -> list[str]:
    """Metadata keys found on a sample of the project's items, to help the lead choose (sorted)."""
    keys: set[str] = set()
    for metadata in project.items.order_by("-id").values_list("metadata", flat=True)[:limit]:
        if isinstance(metadata, dict):
            keys.update(k for k in metadata if isinstance(k, str))
    return sorted(keys)[:50]
