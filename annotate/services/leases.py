"""Leases and the queue counters: expiring leases, and recomputing n_submitted and n_leased."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from django.db import connection, transaction
from django.db.models import Count, F
from django.utils import timezone

from annotate import selectors
from annotate.models import Assignment, Item, Label, Project


def assignments_expire(*, now: dt.datetime | None = None, batch: int = 5000) -> int:
    """Delete leases that have run out, so their items go back to the queue. Safe to run any number of times.

    Locks item rows before lease rows, in the same order as claims and submits, and skips items being written to
    right now (the next sweep gets them), so it never deadlocks with annotators at work.
    """
    now = now or timezone.now()
    expired = Assignment.objects.filter(state=Assignment.State.LEASED, expires_at__lte=now)
    total = 0
    while True:
        with transaction.atomic():
            item_ids = list(expired.values_list("item_id", flat=True).distinct()[:batch])
            if not item_ids:
                return total
            locked = list(
                Item.objects.select_for_update(skip_locked=True).filter(pk__in=item_ids).values_list("pk", flat=True)
            )
            counts = Counter(expired.filter(item_id__in=locked).values_list("item_id", flat=True))
            expired.filter(item_id__in=locked).delete()
            for item_id, n in counts.items():
                Item.objects.filter(pk=item_id).update(n_leased=F("n_leased") - n)
            total += sum(counts.values())
        if len(item_ids) < batch or not locked:
            return total


_COUNTS_REFRESH_SQL = """
UPDATE annotate_item i SET n_submitted = coalesce(s.n, 0), n_leased = coalesce(a.n, 0)
FROM annotate_item j
LEFT JOIN (
    SELECT item_id, count(*) AS n FROM (
        SELECT l.item_id FROM annotate_label l JOIN annotate_item li ON li.id = l.item_id
        WHERE l.rubric_version_id = %(version)s AND li.project_id = %(project)s
        GROUP BY l.item_id, l.annotator_id HAVING count(*) = %(n_criteria)s
    ) complete GROUP BY item_id
) s ON s.item_id = j.id
LEFT JOIN (
    SELECT a.item_id, count(*) AS n FROM annotate_assignment a JOIN annotate_item ai ON ai.id = a.item_id
    WHERE ai.project_id = %(project)s AND a.state = 'leased' GROUP BY a.item_id
) a ON a.item_id = j.id
WHERE j.project_id = %(project)s AND i.id = j.id
  AND (i.n_submitted, i.n_leased) IS DISTINCT FROM (coalesce(s.n, 0), coalesce(a.n, 0))
"""


def queue_counts_refresh(*, project: Project) -> None:
    """Recompute every item's n_submitted and n_leased from the labels and leases themselves.

    Runs after the rubric changes (no one has submitted the new version yet) and after label imports; also a repair.
    """
    current = selectors.rubric_current(project=project)
    n_criteria = current.criteria.count() if current else 0
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Every item's row lock before counting, so no claim or submit interleaves with the recount.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM (SELECT 1 FROM annotate_item WHERE project_id = %s FOR UPDATE) locked",
                    [project.pk],
                )
        if connection.vendor == "postgresql":
            # One statement: a bulk update of every item by primary key costs a CASE over its whole batch per row.
            with connection.cursor() as cursor:
                cursor.execute(
                    _COUNTS_REFRESH_SQL,
                    {"project": project.pk, "version": current.pk if current else None, "n_criteria": n_criteria},
                )
            return
        Item.objects.filter(project=project).exclude(n_submitted=0, n_leased=0).update(n_submitted=0, n_leased=0)
        per_item = Counter(
            item_id
            for item_id, _annotator in Label.objects.filter(item__project=project, rubric_version=current)
            .values("item_id", "annotator_id")
            .annotate(n=Count("id"))
            .filter(n=n_criteria)
            .values_list("item_id", "annotator_id")
        )
        leased = Counter(
            Assignment.objects.filter(item__project=project, state=Assignment.State.LEASED).values_list(
                "item_id", flat=True
            )
        )
        Item.objects.bulk_update(
            [Item(pk=pk, n_submitted=per_item[pk], n_leased=leased[pk]) for pk in set(per_item) | set(leased)],
            ["n_submitted", "n_leased"],
            batch_size=5000,
        )
