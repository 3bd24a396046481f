"""Fixtures: personas, a project they belong to, and a real Celery worker on the configured broker.

The suite runs on PostgreSQL and Redis; `make test` then runs the modules whose services branch on the database
vendor again on the embedded default (SQLite, file-system cache and broker). Tests marked `postgres` need what only
PostgreSQL has and are skipped there, with the marker's reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.cache import caches
from django.core.cache.backends.filebased import FileBasedCache
from django.db import connection

from annotate import selectors
from annotate.models import Membership, Project
from tests.factories import ItemFactory, ProjectFactory, UserFactory, membership

PASSWORD = "correct horse battery staple"


# Markers by folder: every test there gets them (see pyproject's markers). Browser, fault and journey tests are also
# slow (a browser, a gunicorn or a whole `make run` each), so `pytest -m "not slow"` is the fast loop; slow tests
# elsewhere carry @pytest.mark.slow themselves.
FOLDER_MARKERS = {
    "browser": ("browser", "slow"),
    "faults": ("fault", "slow"),
    "journey": ("journey", "browser", "slow"),
}
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.path)).resolve()
        folder = path.relative_to(TESTS).parts[0] if path.is_relative_to(TESTS) else ""
        for name in FOLDER_MARKERS.get(folder, ()):
            item.add_marker(name)
    if connection.vendor == "postgresql":
        return
    for item in items:
        marker = item.get_closest_marker("postgres")
        if marker is not None:
            reason = marker.kwargs.get("reason") or "PostgreSQL only"
            item.add_marker(pytest.mark.skip(reason=f"needs PostgreSQL, not {connection.vendor}: {reason}"))


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    """Tests create many users; a slow hash is what production wants and what tests do not need."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# The app's own keys in Redis: Django's cache (sessions, rate limits, import progress; KEY_PREFIX "json") and the
# judges' limiter, single-flight locks and answers, and the card runner's cache ("judges:"). They are deleted before
# every test; nothing else is. The Celery broker shares the database (its queue, "_kombu.binding.*", "unacked*") and
# stays Celery's: the celery_worker fixture purges the queue, and a message taken but not yet acknowledged (acks_late)
# must stay redeliverable. (FLUSHDB between tests measured harmless to routing with kombu 5.7, as Celery declares the
# queue again when it publishes; tests/test_redis_hygiene.py checks that the narrower delete keeps the worker going.)
APP_REDIS_PATTERNS = ("json:*", "judges:*")


@pytest.fixture(scope="session")
def test_redis() -> Iterator[redis.Redis | None]:
    """A client of the Redis database REDIS_URL names, or None on the embedded default (no Redis)."""
    url = getattr(settings, "REDIS_URL", None)
    if not url:
        yield None
        return
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def caches_keyed_by_id_start_empty(test_redis: redis.Redis | None) -> None:
    """Every test starts with the app's caches empty, so nothing one test (or an earlier run) left behind, keyed by an
    id or by content, shows up in the next: the per-process criteria of a rubric version, the embedded default's file
    cache, and the app's keys in the test Redis database (only those: APP_REDIS_PATTERNS). On SQLite an id even comes
    back in the next test, as rolling a test's transaction back rolls back the table of AUTOINCREMENT counters."""
    selectors._CRITERIA_CACHE.clear()
    if isinstance(caches["default"], FileBasedCache):
        caches["default"].clear()
    if test_redis is not None:
        forget_app_keys(test_redis)


def forget_app_keys(client: redis.Redis) -> int:
    """Delete the app's keys (APP_REDIS_PATTERNS) in the client's database, and nothing else. Returns how many."""
    keys = [key for pattern in APP_REDIS_PATTERNS for key in client.scan_iter(match=pattern, count=1000)]
    return client.unlink(*keys) if keys else 0


@pytest.fixture
def project(db) -> Project:
    return ProjectFactory(slug="support-bot", name="Support bot answers")


@pytest.fixture
def lead(project) -> AbstractUser:
    user = UserFactory(username="lena-lead")
    membership(user, project, Membership.Role.LEAD)
    return user


@pytest.fixture
def annotator(project) -> AbstractUser:
    user = UserFactory(username="ada-annotator")
    membership(user, project, Membership.Role.ANNOTATOR)
    return user


@pytest.fixture
def other_annotator(project) -> AbstractUser:
    user = UserFactory(username="omar-annotator")
    membership(user, project, Membership.Role.ANNOTATOR)
    return user


@pytest.fixture
def outsider(db) -> AbstractUser:
    """A user of the same installation with a project of their own, and no membership in `project`."""
    user = UserFactory(username="otto-outsider")
    membership(user, ProjectFactory(slug="other-team", name="Other team"), Membership.Role.LEAD)
    return user


@pytest.fixture
def items(project):
    return [ItemFactory(project=project) for _ in range(5)]


@pytest.fixture
def celery_worker(transactional_db):
    """A real Celery worker thread consuming from the configured broker: Redis (REDIS_URL), or in the SQLite run the
    file-system transport under VAR_DIR that `make run` uses, so both brokers carry the tasks the tests send."""
    from celery.contrib.testing.worker import start_worker

    from annotate.celery import app

    app.control.purge()
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10) as worker:
        yield worker
