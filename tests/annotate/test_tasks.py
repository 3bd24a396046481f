"""Leases expire through a real Celery worker consuming from the real Redis broker."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from annotate import tasks
from annotate.models import Assignment, Item
from annotate.services.leases import assignments_expire
from annotate.services.queue import queue_claim
from tests.factories import UserFactory


def _lease(project, user, minutes: float) -> Assignment:
    """Claim the user's next item through the queue, then move its expiry `minutes` from now (negative: expired)."""
    item = queue_claim(project=project, annotator=user, rubric_version_id=project.current_rubric_id)
    assert item is not None
    lease = Assignment.objects.get(item=item, annotator=user)
    Assignment.objects.filter(pk=lease.pk).update(
        created_at=timezone.now() - timezone.timedelta(hours=1),
        expires_at=timezone.now() + timezone.timedelta(minutes=minutes),
    )
    return lease


@pytest.mark.django_db
def test_expiring_leases_frees_only_the_expired_ones_and_is_safe_to_repeat(project, items, annotator, other_annotator):
    expired = _lease(project, annotator, minutes=-1)
    live = _lease(project, other_annotator, minutes=5)
    # Both annotators were given the same item: it wants two labels and is the first in the shuffled order.
    assert expired.item_id == live.item_id
    assert Item.objects.get(pk=expired.item_id).n_leased == 2
    assert assignments_expire() == 1
    assert assignments_expire() == 0
    assert list(Assignment.objects.values_list("pk", flat=True)) == [live.pk]
    assert Item.objects.get(pk=live.item_id).n_leased == 1


def test_the_worker_expires_leases_when_beat_enqueues_the_sweep(celery_worker, project, items, annotator):
    lease = _lease(project, annotator, minutes=-1)
    tasks.assignments_expire.delay()
    deadline = time.monotonic() + 20
    while Assignment.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Assignment.objects.exists()
    assert Item.objects.get(pk=lease.item_id).n_leased == 0


def _analyzed(table: str):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")  # this backend's counts, now (PostgreSQL 15+)
        cursor.execute("SELECT last_analyze, n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = %s", [table])
        return cursor.fetchone()


@pytest.mark.postgres(reason="PostgreSQL's planner statistics and their counters")
@pytest.mark.django_db(transaction=True)
def test_beat_analyzes_the_hot_tables_when_autovacuum_has_not(project, items, annotator, settings):
    from django.db import connection

    from annotate import dbstats, selectors
    from annotate.models import Label

    assert settings.CELERY_BEAT_SCHEDULE["statistics-refresh"]["task"] == tasks.statistics_refresh.name
    with connection.cursor() as cursor:  # autovacuum must not get there first (it is off on some machines only)
        for table in dbstats.HOT_TABLES:
            cursor.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    try:
        with connection.cursor() as cursor:  # what the tests before this one changed, counted, then analyzed
            cursor.execute("SELECT pg_stat_force_next_flush()")
            cursor.execute("ANALYZE annotate_label")
        # Nothing changed since (other connections' late counts may still come in for the other tables).
        assert "annotate_label" not in dbstats.statistics_refresh()
        criteria = selectors.criteria_of_version(project.current_rubric_id)
        raters = [annotator, *UserFactory.create_batch(400)]
        Label.objects.bulk_create(  # 1,203 labels: past the 1,000 (+ 1%) changed rows that call for an ANALYZE
            Label(
                item=items[0],
                criterion=criterion,
                rubric_version_id=project.current_rubric_id,
                annotator=rater,
                value="pass",
                created_at=timezone.now(),
            )
            for rater in raters
            for criterion in criteria
        )
        last, changed = _analyzed("annotate_label")
        assert changed > 1000
        assert "annotate_label" in dbstats.statistics_refresh()
        after, changed = _analyzed("annotate_label")
        assert changed == 0 and (last is None or after > last)
        assert "annotate_label" not in dbstats.statistics_refresh()  # fresh now: nothing to do
    finally:
        with connection.cursor() as cursor:
            for table in dbstats.HOT_TABLES:
                cursor.execute(f"ALTER TABLE {table} RESET (autovacuum_enabled)")
