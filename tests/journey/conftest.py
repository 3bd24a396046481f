"""The journey: the real `make run`, driven through Debian's Chromium the way people use it.

`app` starts `make run` once per setup for the whole package, parametrised:
- `sqlite`: the embedded default a newcomer gets (SQLite and a file-system broker under VAR_DIR, a tmp dir);
- `postgres`: DATABASE_URL = a fresh database created here and dropped after (named after the test run's own
  DATABASE_URL, plus `_journey`), REDIS_URL = JOURNEY_REDIS_URL, or else the test run's REDIS_URL on the next database
  number (flushed before and after: the journey owns it). `make run` turns DEBUG on in both.
The tests talk to the app over HTTP only (they read its database to check what was stored) and fail on any 5xx the
browser sees, any console error, and any error line or traceback in make run's output.

Nothing here uses Django's ORM beside Playwright's event loop, so unlike tests/browser/ this package needs no
DJANGO_ALLOW_ASYNC_UNSAFE.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Response, sync_playwright

from tests.journey.makerun import MakeRun, nothing_listens_on

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SETUPS = ("sqlite", "postgres")


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def _journey_redis_url() -> str:
    if explicit := os.environ.get("JOURNEY_REDIS_URL"):
        return explicit
    parts = urlsplit(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    number = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(number + 1) % 16}"))


def _flush(redis_url: str) -> None:
    import redis

    redis.Redis.from_url(redis_url).flushdb()


def _postgres(database_url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(_with_database(database_url, "postgres"), autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(scope="package", params=SETUPS)
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeRun]:
    setup = request.param
    here = tmp_path_factory.mktemp(f"journey-{setup}")
    run = MakeRun(setup=setup, var_dir=here / "var", log_path=here / "make-run.log")
    test_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/annotate")
    name = urlsplit(test_url).path.strip("/") + "_journey"
    if setup == "postgres":
        run.database_url = _with_database(test_url, name)
        run.redis_url = _journey_redis_url()
        _postgres(test_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        _postgres(test_url, f'CREATE DATABASE "{name}"')
        _flush(run.redis_url)
    try:
        run.start()
        if problems := run.new_log_problems():
            pytest.fail(f"[{setup}] errors while make run started ({run.log_path}):\n" + "\n".join(problems))
        yield run
    finally:
        stopped = run.process is not None
        returncode, left = run.stop() if stopped else (None, [])
        if run.database_url:
            _postgres(test_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if run.redis_url:
            _flush(run.redis_url)
    if stopped:
        where = f"(make run's output: {run.log_path})"
        assert returncode is not None, f"make run did not exit within a minute of Ctrl-C {where}"
        assert not left, f"make run left processes behind after Ctrl-C: {left} {where}"
        assert "Stopped." in run.log(), f"rundemo did not reach its clean stop {where}:\n{run.log_tail()}"
        assert nothing_listens_on(run.port) and nothing_listens_on(run.standin_port), (
            f"something still listens on its ports {where}"
        )
        problems = run.new_log_problems()
        assert not problems, f"errors in make run's output {where}:\n" + "\n".join(problems)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get update && apt-get install -y chromium`.", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watch:
    """What the journey must never see: 5xx answers, console errors, error lines in make run's output."""

    app: MakeRun
    server_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    log_problems: list[str] = field(default_factory=list)
    failed: bool = False

    def on_response(self, response: Response) -> None:
        if response.status >= 500:
            self.server_errors.append(f"{response.status} {response.request.method} {response.url}")

    def on_console(self, message: ConsoleMessage) -> None:
        # The app serves no favicon; Chromium's automatic request for it is not the page's doing.
        if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico"):
            self.console_errors.append(f"{message.text} ({message.location.get('url', '')})")

    def problems(self) -> list[str]:
        self.log_problems += self.app.new_log_problems()
        return (
            [f"HTTP {e}" for e in self.server_errors]
            + [f"console: {e}" for e in self.console_errors]
            + [f"make run's output: {e}" for e in self.log_problems]
        )

    def check(self) -> None:
        if self.failed:
            return  # reported once, by the check that found it
        if problems := self.problems():
            self.failed = True
            pytest.fail(
                f"[{self.app.setup}] the journey met errors (make run's output: {self.app.log_path}):\n"
                + "\n".join(problems),
                pytrace=False,
            )


@pytest.fixture
def watch(app: MakeRun) -> Watch:
    app.new_log_problems()  # anything before this test was reported by the test that caused it
    return Watch(app)


@pytest.fixture
def page(browser: Browser, app: MakeRun, watch: Watch) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    # Generous: two cores shared by the browser, runserver, a Celery worker and beat, the stand-in and the tests.
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.on("response", watch.on_response)
    page.on("console", watch.on_console)
    page.on("pageerror", lambda exc: watch.console_errors.append(f"uncaught: {exc}"))
    try:
        yield page
    finally:
        context.close()
    watch.check()
