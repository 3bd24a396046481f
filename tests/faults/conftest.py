"""Fixtures for fault tests: the throwaway servers of harness.py, started per test and always stopped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from annotate.services.items import item_build
from annotate.services.projects import project_set_status
from tests.conftest import PASSWORD
from tests.faults.harness import ROOT, AppServer, ThrowawayPostgres, ThrowawayRedis, app_env, manage
from tests.judges.conftest import judge, standin, standin_server, version  # noqa: F401 (fixtures)

# Seeds a fresh database through the same factories and services the other tests use; prints what the test needs.
SEED = """
import json
import os
from annotate import tokens
from annotate.services.projects import project_set_status
from tests.factories import ItemFactory, ProjectFactory, UserFactory, membership
project = ProjectFactory(slug="support-bot", name="Support bot answers", overlap=1)
project_set_status(project=project, status="active")
items = [ItemFactory(project=project, input=f"Question {{n}}?", output=f"Answer {{n}}.") for n in range({n_items})]
lead = UserFactory(username="lena-lead")
membership(lead, project, "lead")
annotators = [UserFactory(username=name) for name in ("ada-annotator", "omar-annotator")]
for user in annotators:
    membership(user, project, "annotator")
_, secret = tokens.token_create(user=lead, name="faults")
print(json.dumps({{"token": secret, "project": project.slug}}))
"""


def seed(env: dict[str, str], *, n_items: int = 30) -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SEED.format(n_items=n_items)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    directory = Path(tempfile.mkdtemp(prefix="annotate-faults-redis-"))
    server = ThrowawayRedis(directory)
    server.start()
    try:
        yield server
    finally:
        server.kill()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    """A migrated, empty PostgreSQL cluster of our own."""
    cluster = ThrowawayPostgres()
    try:
        cluster.init()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def collected_static() -> Iterator[Path]:
    """Static files collected once, so gunicorn (DEBUG off) serves label.js and htmx as in production."""
    directory = Path(tempfile.mkdtemp(prefix="annotate-faults-static-"))
    env = app_env(database_url="", redis_url="", STATIC_ROOT=str(directory))
    env.pop("DATABASE_URL")
    env.pop("REDIS_URL")
    env["VAR_DIR"] = str(directory / "var")
    manage(env, "collectstatic", "--noinput")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def app_on_throwaway_postgres(throwaway_postgres, collected_static, tmp_path):
    """The app under gunicorn on a migrated, seeded throwaway cluster: (cluster, server, seeded)."""
    env = app_env(
        database_url=throwaway_postgres.url,
        redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/2"),
        STATIC_ROOT=str(collected_static),
        VAR_DIR=str(tmp_path / "var"),
    )
    manage(env, "migrate", "--noinput")
    seeded = seed(env)
    server = AppServer(env, tmp_path / "gunicorn.log")
    server.start()
    try:
        yield throwaway_postgres, server, seeded
    finally:
        server.stop()


@pytest.fixture
def labeling_project(transactional_db, project, lead, annotator, settings):
    """An active project with 20 items whose lead and annotator log in with PASSWORD through the real login form."""
    # The app server hashes as production does; the test suite's fast MD5 hasher is not among its hashers.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    for user in (lead, annotator):
        user.set_password(PASSWORD)
        user.save(update_fields=["password"])
    project_set_status(project=project, status="active")
    for n in range(20):
        item_build(project=project, fields={"input": f"Question {n}?", "output": f"Answer {n}."}).save()
    return project
