"""Each test starts without the app's Redis keys of the tests before it, and the Celery broker's keys survive that."""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache

from annotate import tasks
from annotate.models import Assignment, Item
from tests.annotate.test_tasks import _lease
from tests.conftest import forget_app_keys


@pytest.fixture
def client(test_redis):
    if test_redis is None:
        pytest.skip("the embedded default has no Redis")
    return test_redis


def test_the_app_keys_go_and_the_brokers_stay(client):
    cache.set("leak-probe", 1)
    client.set("judges:limit:leak-probe:starts", 1)
    client.sadd("_kombu.binding.leak-probe", "probe")
    client.rpush("leak-probe-queue", "message")
    try:
        assert forget_app_keys(client) >= 2
        assert cache.get("leak-probe") is None
        assert not client.exists("judges:limit:leak-probe:starts")
        assert client.exists("_kombu.binding.leak-probe", "leak-probe-queue") == 2
    finally:
        client.delete("_kombu.binding.leak-probe", "leak-probe-queue")


def test_a_test_starts_with_no_app_keys(client):
    assert not any(client.scan_iter(match="json:*")) and not any(client.scan_iter(match="judges:*"))


def _expired_lease_swept_by_the_worker(project, annotator) -> None:
    lease = _lease(project, annotator, minutes=-1)
    tasks.assignments_expire.delay()
    deadline = time.monotonic() + 20
    while Assignment.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Assignment.objects.exists()
    assert Item.objects.get(pk=lease.item_id).n_leased == 0


def test_the_worker_still_runs_tasks_sent_after_a_forget(client, celery_worker, project, items, annotator):
    """The producer declared the queue with the first task; forgetting the app's keys must not unroute the next."""
    _expired_lease_swept_by_the_worker(project, annotator)
    forget_app_keys(client)
    _expired_lease_swept_by_the_worker(project, annotator)
