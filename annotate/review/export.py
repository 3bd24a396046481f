"""The `failure_modes` export, shared by the download and the API: one object per failure mode, then one for the
failing notes in no mode. Leads only (the callers check): it names items and quotes every reviewer's notes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from annotate.models import FailureMode, Project, ReviewNote
from annotate.review import counts as review_counts
from annotate.review import selectors as review_selectors

FORMAT = "failure_modes"


def _share(share: review_counts.Share | None) -> dict[str, Any]:
    if share is None:
        return {"items": 0, "reviewed_items": 0, "share": None, "ci_low": None, "ci_high": None}
    return {"items": share.k, "reviewed_items": share.n, "share": share.value, "ci_low": share.lo, "ci_high": share.hi}


def mode_out(
    mode: FailureMode | None, row: review_counts.ModeCounts, periods: tuple[Any, ...], notes: list[ReviewNote]
) -> dict[str, Any]:
    example_ids = list(dict.fromkeys(n.item.external_id for n in notes))
    return {
        "format": FORMAT,
        "mode_id": mode.pk if mode else None,
        "mode": mode.name if mode else "(unassigned)",
        "definition": mode.definition if mode else "",
        "criterion_key": (mode.promoted_key or None) if mode else None,
        "n_notes": sum(1 for n in notes if review_selectors.has_note(n)),
        "counts": _share(row.total),
        "by_day": [
            {"day": p.isoformat(), **_share(s)} for p, s in zip(periods, row.per_period, strict=True) if s is not None
        ],
        "rising": row.rising,
        "example_ids": example_ids,
        "notes": [
            {
                "note_id": n.pk,
                "item_id": n.item.external_id,
                "reviewer": n.reviewer.get_username(),
                "note": n.note,
                "reviewed_at": n.created_at.isoformat(),
            }
            for n in notes
        ],
    }


def failure_modes_rows(*, project: Project) -> Iterator[dict[str, Any]]:
    counted, modes = review_selectors.failure_counts(project=project, by="day")
    board = review_selectors.board(project=project)
    notes_of = {row.mode.pk: row.notes for row in board.modes}
    by_id = {m.pk: m for m in modes}
    for row in counted.modes:
        mode = by_id.get(row.mode_id)
        yield mode_out(mode, row, counted.periods, notes_of.get(row.mode_id, []) if mode else board.unassigned)
