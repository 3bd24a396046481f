"""Fixtures: personas, a project they belong to, and a real Celery worker on the real Redis broker."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AbstractUser

from annotate.models import Membership, Project
from tests.factories import ItemFactory, ProjectFactory, UserFactory, membership

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    """Tests create many users; a slow hash is what production wants and what tests do not need."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


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
    """A real Celery worker thread consuming from the real Redis broker (REDIS_URL)."""
    from celery.contrib.testing.worker import start_worker

    from annotate.celery import app

    app.control.purge()
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10) as worker:
        yield worker
