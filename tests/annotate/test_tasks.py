"""Leases expire through a real Celery worker consuming from the real Redis broker."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from annotate import selectors, services, tasks
from annotate.models import Assignment


def _lease(item, user, minutes: float) -> Assignment:
    """A lease taken an hour ago that expires `minutes` from now (negative: already expired)."""
    now = timezone.now()
    lease = Assignment.objects.create(
        item=item,
        annotator=user,
        rubric_version=selectors.rubric_current(project=item.project),
        expires_at=now + timezone.timedelta(hours=1),
    )
    Assignment.objects.filter(pk=lease.pk).update(
        created_at=now - timezone.timedelta(hours=1), expires_at=now + timezone.timedelta(minutes=minutes)
    )
    return lease


@pytest.mark.django_db
def test_expiring_leases_frees_only_the_expired_ones_and_is_safe_to_repeat(items, annotator, other_annotator):
    _lease(items[0], annotator, minutes=-1)
    live = _lease(items[1], other_annotator, minutes=5)
    assert services.assignments_expire() == 1
    assert services.assignments_expire() == 0
    assert list(Assignment.objects.values_list("pk", flat=True)) == [live.pk]


def test_the_worker_expires_leases_when_beat_enqueues_the_sweep(celery_worker, items, annotator):
    _lease(items[0], annotator, minutes=-1)
    tasks.assignments_expire.delay()
    deadline = time.monotonic() + 20
    while Assignment.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Assignment.objects.exists()
