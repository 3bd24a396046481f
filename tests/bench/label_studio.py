"""Label Studio beside annotate in the benchmarks: a real one, started here when it is installed, and its API.

Not a benchmark module itself (run.py collects only bench_*.py); bench_imports and bench_side_by_side use it.
Label Studio is a competitor measured beside us, installed apart in its own venv (never one of our dependencies):
    python3 -m venv /opt/ls && /opt/ls/bin/pip install label-studio==1.23.2
and found through LABEL_STUDIO_BIN (its `label-studio`) or `label-studio` on PATH. LABEL_STUDIO_URL and
LABEL_STUDIO_API_KEY use one already running instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.bench.labeling_http import free_port
from tests.bench.run import fresh_database

SKIPPED = (
    "skipped: Label Studio is not installed here (set LABEL_STUDIO_BIN to its label-studio, installed in its own "
    "venv: python3 -m venv /opt/ls && /opt/ls/bin/pip install label-studio==1.23.2)"
)
# What serves it, for the rows' scale text: `label-studio start` ends in `call_command('runserver', '--noreload',
# ...)` (label_studio/server.py::_app_run), Django's threaded development server; the pip package ships no other
# (its Docker compose puts uWSGI in front, which the package does not install).
SERVED_BY = "label-studio start (Django runserver --noreload, threaded: what its pip package serves with), PostgreSQL"

# The pair and one Choices control per criterion of annotate's bench projects (tests/factories.py's DEFAULT_CRITERIA),
# so that a submit on either side records the same three judgements.
CRITERIA = ("acceptable", "follows_instructions", "factually_correct")
PAIRWISE_CONFIG = (
    '<View><Text name="input" value="$input"/><Text name="output_a" value="$output_a"/>'
    '<Text name="output_b" value="$output_b"/>'
    + "".join(
        f'<Choices name="{key}" toName="input"><Choice value="A"/><Choice value="B"/><Choice value="Tie"/></Choices>'
        for key in CRITERIA
    )
    + "</View>"
)


@dataclass(frozen=True)
class LabelStudio:
    url: str  # base URL, no trailing slash
    token: str  # API token (legacy "Token <key>" authentication)
    served_by: str  # how it runs, for the rows' scale text

    def call(self, method: str, path: str, body: object | bytes | None = None, timeout: float = 600) -> dict:
        """One API request; a body that is not bytes is sent as JSON. Returns the decoded JSON answer ({} if empty)."""
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"{}")

    def create_project(self, title: str) -> int:
        return int(self.call("POST", "/api/projects", {"title": title, "label_config": PAIRWISE_CONFIG})["id"])

    def import_tasks(self, project_id: int, batches: Iterator[list[bytes]], n: int) -> float:
        """Its own import API (POST /api/projects/<id>/import), one request per batch of JSON Lines rows, until the
        project counts all n tasks (newer versions may import in the background); returns the seconds it took."""
        start = time.perf_counter()
        for batch in batches:
            tasks = b"[" + b",".join(b'{"data": ' + line + b"}" for line in batch) + b"]"
            self.call("POST", f"/api/projects/{project_id}/import", tasks)
        while self.call("GET", f"/api/projects/{project_id}").get("task_number", 0) < n:
            time.sleep(0.2)
        return time.perf_counter() - start


def _healthy(url: str) -> bool:
    try:
        urllib.request.urlopen(url + "/health", timeout=5).close()
    except (urllib.error.URLError, OSError):
        return False
    return True


def _executable() -> str | None:
    given = os.environ.get("LABEL_STUDIO_BIN", "")
    if given:
        return given if os.access(given, os.X_OK) else None
    return shutil.which("label-studio")


@contextmanager
def label_studio(*, start_timeout: float = 900) -> Iterator[LabelStudio | None]:
    """The Label Studio of LABEL_STUDIO_URL/LABEL_STUDIO_API_KEY if both are set; else one started here when it is
    installed, on a free loopback port, on its own fresh PostgreSQL database (beside DATABASE_URL's, same server) and
    a temporary data directory, with a user and API token made at start, once /health answers; else None.

    On exit the started one is stopped (its whole process group) and its database dropped."""
    url, key = os.environ.get("LABEL_STUDIO_URL", ""), os.environ.get("LABEL_STUDIO_API_KEY", "")
    if url and key:
        yield (
            LabelStudio(url.rstrip("/"), key, "the running Label Studio at LABEL_STUDIO_URL")
            if _healthy(url.rstrip("/"))
            else None
        )
        return
    executable = _executable()
    if executable is None:
        yield None
        return
    # The server of the configured database (the bench's own is in DATABASE_URL once run.py started).
    db = urllib.parse.urlsplit(os.environ.get("ORIGINAL_DATABASE_URL") or os.environ["DATABASE_URL"])
    name = f"label_studio_bench_{os.getpid()}"
    drop = fresh_database(db._replace(path="/postgres").geturl(), name)
    data_dir = tempfile.mkdtemp(prefix="label-studio-bench-")
    port = free_port()
    token = secrets.token_hex(20)  # its Token model's key: 40 characters
    # A clean environment: none of annotate's settings (DJANGO_SETTINGS_MODULE above all) may leak into it.
    env = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER"}}
    env.update(
        DJANGO_DB="default",
        POSTGRE_NAME=name,
        POSTGRE_USER=db.username or "postgres",
        POSTGRE_PASSWORD=urllib.parse.unquote(db.password or ""),
        POSTGRE_HOST=db.hostname or "127.0.0.1",
        POSTGRE_PORT=str(db.port or 5432),
        LABEL_STUDIO_BASE_DATA_DIR=data_dir,
        DEBUG="false",
        LOG_LEVEL="WARNING",
        # No error reports leave the machine.
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
    )
    log = Path(data_dir) / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                executable,
                "start",
                "--no-browser",
                "--internal-host",
                "127.0.0.1",
                "--port",
                str(port),
                "--username",
                "bench@example.com",
                "--password",
                secrets.token_hex(12),
                "--user-token",
                token,
                "--enable-legacy-api-token",
                "--log-level",
                "WARNING",
            ],
            env=env,
            cwd=data_dir,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped whole on exit
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout  # a fresh database runs all its migrations first
        while not _healthy(base):
            if server.poll() is not None:
                raise RuntimeError(f"Label Studio exited at start: {log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Label Studio did not answer /health in {start_timeout:.0f} s")
            time.sleep(1)
        yield LabelStudio(base, token, SERVED_BY)
    finally:
        _stop(server)
        drop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _stop(server: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            break
        try:
            server.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):  # anything it started that outlived it
        os.killpg(server.pid, signal.SIGKILL)
