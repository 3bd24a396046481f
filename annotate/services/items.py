"""Items: an item's canonical content, hash, external id and split."""

from __future__ import annotations

from typing import Any

from annotate.models import Item, Project
from annotate.splits import content_hash, order_key, split_for


def item_content(*, project: Project, fields: dict[str, Any]) -> dict[str, str]:
    """The content fields of an item of this project's kind, in canonical form (what the content hash covers)."""
    if project.is_pairwise:
        return {
            "input": fields.get("input", ""),
            "output_a": fields.get("output_a", ""),
            "output_b": fields.get("output_b", ""),
        }
    return {"input": fields.get("input", ""), "output": fields.get("output", "")}


def item_build(
    *,
    project: Project,
    fields: dict[str, Any],
    external_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    source: str = Item.Source.IMPORT,
    split: str | None = None,
) -> Item:
    """An unsaved item with its content hash, external id (default: the hash) and deterministic split."""
    content = item_content(project=project, fields=fields)
    digest = content_hash(content)
    external_id = external_id or digest
    return Item(
        project=project,
        external_id=external_id,
        metadata=metadata or {},
        source=source,
        split=split or split_for(project.slug, external_id),
        order_key=order_key(project.slug, external_id),
        content_hash=digest,
        **content,
    )
