"""Labels written with COPY for the benchmarks: millions of rows in seconds, where the ORM would take minutes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

LABEL_COPY = (
    "COPY annotate_label (item_id, criterion_id, rubric_version_id, annotator_id, value, note, revision, "
    "submission_key, created_at, updated_at) FROM STDIN"
)


def copy_labels(labels: Iterable[tuple[int, Any, int, str]]) -> int:
    """Write each (item id, criterion, annotator id, value) as a label of the criterion's rubric version, created now,
    at revision 1, without a note or submission key. Returns how many were written."""
    from django.db import connection
    from django.utils import timezone

    now = timezone.now().isoformat()
    n = 0
    with connection.cursor() as cursor, cursor.copy(LABEL_COPY) as copy:
        for item_id, criterion, annotator_id, value in labels:
            copy.write_row(
                (item_id, criterion.pk, criterion.rubric_version_id, annotator_id, value, "", 1, "", now, now)
            )
            n += 1
    return n


def spread_value(n: int) -> str:
    """A value for a seeded label from a number mixed from its item, annotator and criterion: four passes in five."""
    return "pass" if n % 5 else "fail"
