"""Stored throughput: labels per (project, annotator, day), kept up to date by a beat pass so that the dashboard
never counts a project's labels (see selectors.throughput for the read).

The pass adds the labels whose ids lie between the project's watermark and a new, safe one, and moves the watermark,
in one transaction that holds the watermark row: a repeated or concurrent pass finds nothing left to add.

Why ids and not creation times: imports write labels with the creation time from the file, and a label is created
with the time it was submitted but becomes visible when its transaction commits; a time watermark would miss both.
Ids are taken from one sequence but also become visible out of order, so the watermark only moves to an id below
which no transaction can still be writing (ThroughputWatermark explains how that is known).
"""

from __future__ import annotations

import datetime as dt

from django.db import connection, transaction
from django.db.models import Count, Max, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from annotate.models import Label, Project, RubricVersion, ThroughputCount, ThroughputWatermark


def label_writers() -> set[str]:
    """The transactions (Postgres virtual transaction ids) that may be inserting labels right now, this one apart.

    An INSERT or COPY takes its ROW EXCLUSIVE lock on the table before it draws ids from the sequence and keeps it
    until the transaction ends, so a label id that is not yet visible belongs to one of these. SQLite has one writer
    at a time and hands out ids above every committed one, so there an id below the largest visible one is final.
    """
    if connection.vendor != "postgresql":
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            # pg_locks spans the cluster: relation oids are per database, so the database is part of the match.
            "SELECT DISTINCT virtualtransaction FROM pg_locks WHERE locktype = 'relation'"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND relation = %s::regclass AND mode = 'RowExclusiveLock' AND pid <> pg_backend_pid()",
            [Label._meta.db_table],
        )
        return {row[0] for row in cursor.fetchall()}


def _label_id_max() -> int:
    return Label.objects.aggregate(m=Max("id"))["m"] or 0


def throughput_count_pass(*, project: Project) -> int:
    """Add the project's labels created since the last pass to its daily counts; return how many were added.

    Idempotent: the watermark and the counts move together in one transaction that holds the watermark row.
    """
    ThroughputWatermark.objects.get_or_create(project=project)
    with transaction.atomic():
        mark = ThroughputWatermark.objects.select_for_update().get(project=project)
        # The largest id first, the writers after: a label with a smaller id that is still invisible was being
        # written before the read, so its transaction holds the lock when the writers are read.
        newest = _label_id_max()
        writers = label_writers()
        safe = mark.counted_through
        pending_done = mark.pending_through is not None and not (set(mark.pending_writers) & writers)
        if pending_done:
            safe = max(safe, mark.pending_through or 0)
        if not writers:
            safe = max(safe, newest)
        added = (
            _counts_add(project=project, after=mark.counted_through, through=safe) if safe > mark.counted_through else 0
        )
        mark.counted_through = safe
        if mark.pending_through is None or pending_done or mark.pending_through <= safe:
            # Take a new pending mark; an unfinished one is kept so that a steady stream of writers cannot starve it.
            mark.pending_through, mark.pending_writers = (newest, sorted(writers)) if newest > safe else (None, [])
        mark.save(update_fields=["counted_through", "pending_through", "pending_writers", "updated_at"])
    return added


def per_annotator_day(*, project: Project, after: int) -> QuerySet[Label, tuple[int, dt.date, int]]:
    """(annotator_id, day, n) of the project's labels with an id above `after`, days in settings.TIME_ZONE; the
    beat pass and the dashboard's read of the labels not yet counted both use it. Filter before it aggregates."""
    return (
        Label.objects.filter(
            rubric_version_id__in=RubricVersion.objects.filter(project=project).values("id"), id__gt=after
        )
        # A label carried over a rubric change is a copy of one already counted, not new work.
        .exclude(carried=True)
        .annotate(day=TruncDate("created_at", tzinfo=timezone.get_default_timezone()))
        .values_list("annotator_id", "day")
        .annotate(n=Count("id"))
        .values_list("annotator_id", "day", "n")
        .order_by()
    )


def _counts_add(*, project: Project, after: int, through: int) -> int:
    """Add the labels with after < id <= through to the counts. Call inside the transaction holding the watermark."""
    rows = list(per_annotator_day(project=project, after=after).filter(id__lte=through))
    if not rows:
        return 0
    new: dict[tuple[int, dt.date], int] = {}
    for annotator_id, day, n in rows:
        new[(annotator_id, day)] = new.get((annotator_id, day), 0) + n
    existing = ThroughputCount.objects.filter(
        project=project, day__in={day for _, day in new}, annotator_id__in={a for a, _ in new}
    ).values_list("annotator_id", "day", "n")
    for annotator_id, day, n in existing:
        if (annotator_id, day) in new:
            new[(annotator_id, day)] += n
    ThroughputCount.objects.bulk_create(
        [ThroughputCount(project=project, annotator_id=a, day=day, n=n) for (a, day), n in new.items()],
        update_conflicts=True,
        unique_fields=["project", "day", "annotator"],
        update_fields=["n"],
        batch_size=2000,
    )
    return sum(n for _, _, n in rows)


def throughput_counts_refresh() -> int:
    """One pass over every project (archived ones too: a stale watermark would make their dashboard count more)."""
    return sum(throughput_count_pass(project=project) for project in Project.objects.all())
