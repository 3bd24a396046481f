"""Fixtures: personas, a project they belong to, and a real Celery worker on the configured broker.

The suite runs on PostgreSQL and Redis; `make test` then runs the modules whose services branch on the database
vendor again on the embedded default (SQLite, file-system cache and broker). Tests marked `postgres` need what only
PostgreSQL has and are skipped there, with the marker's reason.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AbstractUser
from django.core.cache import caches
from django.core.cache.backends.filebased import FileBasedCache
from django.db import connection

from annotate import selectors
from annotate.models import Membership, Project
from tests.factories import ItemFactory, ProjectFactory, UserFactory, membership

PASSWORD = "correct horse battery staple"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
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


@pytest.fixture(autouse=True)
def caches_keyed_by_id_start_empty() -> None:
    """On SQLite an id can come back in the next test: rolling a test's transaction back also rolls back the table of
    AUTOINCREMENT counters. So whatever outlives a test keyed by an id (the per-process criteria of a rubric version,
    the embedded default's file cache: rate limits, import progress) starts each test empty. PostgreSQL sequences
    never go back, and Redis is left to the tests that use it."""
    selectors._CRITERIA_CACHE.clear()
    if isinstance(caches["default"], FileBasedCache):
        caches["default"].clear()


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
