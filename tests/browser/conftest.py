"""Browser tests: Debian's Chromium driven by Playwright against pytest-django's live server.

Playwright's sync API keeps an event loop running in the test thread from `sync_playwright()` until it stops, so
Django's async-safety guard would refuse the ORM calls the tests make there (factories, fixtures, DB assertions).
DJANGO_ALLOW_ASYNC_UNSAFE lifts the guard, but only for this package: Playwright and the variable are package-scoped,
set up before the first browser test and gone after the last. Set for the whole session (at import), the variable
would leak into later tests and their subprocesses: `manage.py check --deploy` in tests/test_settings.py fails on
it with async.E001, as it should in production. The test thread never runs Django code concurrently with the loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

    from annotate.models import Project

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"

# Records every Content-Security-Policy violation the page reports, whatever the console says. Playwright injects
# init scripts through the DevTools protocol, so this listener itself is not subject to the page's CSP.
_RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push({directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample});
});
"""


@pytest.fixture(scope="package", autouse=True)
def allow_django_orm_beside_playwrights_loop() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


@pytest.fixture(scope="package")
def browser(allow_django_orm_beside_playwrights_loop: None) -> Iterator[Browser]:
    """One Chromium for all browser tests; stopped after the last one, so no event loop outlives this package."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests drive Debian's Chromium. "
            "Install it with `apt-get update && apt-get install -y chromium` "
            "(Playwright's own browser downloads are not used).",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page in its own context (no cookies shared between tests), with console errors recorded."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    # Generous: the suite shares two cores with Postgres, a Celery worker and the live server; a real hang still fails.
    context.set_default_timeout(30_000)
    context.add_init_script(_RECORD_CSP_VIOLATIONS)
    page = context.new_page()
    errors: list[str] = []

    def _on_console(message: ConsoleMessage) -> None:
        # Chromium's automatic request for /favicon.ico is not the page's doing (the app serves one).
        if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico"):
            errors.append(message.text)

    page.on("console", _on_console)
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    page.console_errors = errors  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        context.close()


def console_errors(page: Page) -> list[str]:
    """The console errors (and uncaught exceptions) the page reported so far."""
    return list(page.console_errors)  # type: ignore[attr-defined]


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot to tests/browser/screenshots/<name>.png (gitignored) and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# --- The labeling pages: shared by the labeling tests ----------------------------------------------------------

# Item text that must be shown, never run: script, handlers and javascript: links stay inert; code blocks render.
HOSTILE = (
    '<script>window.__xss=1</script> <img src=x onerror="window.__xss=2"> [link](javascript:window.__xss=3)\n\n'
    "```python\nprint('code block')\n```"
)


def active_project(kind: str, n_items: int, **fields: object) -> tuple[Project, AbstractBaseUser]:
    """An active project of `kind` (overlap 1 unless given) with n items and one annotator, `<kind>-annotator`."""
    from annotate.services.projects import project_set_status
    from tests.factories import ItemFactory, ProjectFactory, UserFactory, membership

    fields.setdefault("overlap", 1)
    project = ProjectFactory(slug=f"{kind}-queue", name=f"{kind.title()} queue", kind=kind, **fields)
    project_set_status(project=project, status="active")
    for i in range(n_items):
        if kind == "pairwise":
            ItemFactory(
                project=project,
                input=f"Question {i}: {HOSTILE}",
                output="",
                output_a=f"Answer A{i}",
                output_b=f"Answer B{i}",
            )
        else:
            ItemFactory(project=project, input=f"Question {i}: {HOSTILE}", output=f"Answer {i}")
    user = UserFactory(username=f"{kind}-annotator")
    membership(user, project, "annotator")
    return project, user


def wait_for_labels(page: Page, project: Project, n: int, *, timeout: float = 10) -> None:
    """Wait for n labels, letting Playwright work meanwhile: its sync API handles routes and events only while the
    test thread is inside a Playwright call, so a plain sleep here would stall a routed request."""
    from annotate.models import Label

    deadline = time.monotonic() + timeout
    while Label.objects.filter(item__project=project).count() < n and time.monotonic() < deadline:
        page.wait_for_timeout(50)


def wait_until(page: Page, condition: Callable[[], object], *, timeout: float = 10) -> None:
    """Wait for a database condition the same way (see wait_for_labels); fail if it never holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {getattr(condition, '__name__', condition)}")
        page.wait_for_timeout(50)
