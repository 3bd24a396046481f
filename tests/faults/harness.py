"""Real services to break on purpose: a throwaway Redis, a throwaway PostgreSQL cluster, the app under gunicorn and
Celery workers, each a subprocess on a free loopback port. The shared servers (Postgres on 5432, Redis on 6379) are
never stopped or restarted by these tests: only what a test started here.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1] if Path("/usr/lib/postgresql").exists() else Path()
TEST_SECRET_KEY = "test-only-" + "0" * 50 + "-not-for-production"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], object], *, timeout: float = 30, every: float = 0.1, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(every)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def stop_process(proc: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    """Stop a process group this harness started (start_new_session=True), by its own id only."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


# --- Redis --------------------------------------------------------------------------------------------------------


@dataclass
class ThrowawayRedis:
    """A redis-server of our own, in a temp dir, without persistence. `kill()` is an outage; `start()` a recovery."""

    directory: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(lambda: port_open(self.port), timeout=15, what="redis to listen")

    def kill(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, sig=signal.SIGKILL)
            self.proc = None
        wait_for(lambda: not port_open(self.port), timeout=10, what="redis to stop")


# --- PostgreSQL ---------------------------------------------------------------------------------------------------


class ThrowawayPostgres:
    """A PostgreSQL cluster of our own (initdb in a temp dir owned by the postgres user when run as root)."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="annotate-faults-pg-"))
        self.data = self.directory / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.directory, "postgres", "postgres")

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        command = list(args)
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=check, capture_output=True, timeout=120, start_new_session=True)

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/annotate"

    def init(self) -> None:
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        self.start()
        self._run(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "annotate")

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.directory / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        # Fast shutdown: connected sessions are cut, as in a restart or failover.
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


# --- The app ------------------------------------------------------------------------------------------------------


def app_env(*, database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "HTTPS": "false",
        "DEBUG": "false",
        "SECRET_KEY": TEST_SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DB_CONN_MAX_AGE": "60",
        "LOG_LEVEL": "WARNING",
        **extra,
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode:
        raise AssertionError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@dataclass
class AppServer:
    """The app under gunicorn as the Dockerfile runs it (threaded workers), on a free port."""

    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        handle = self.log.open("ab")
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "annotate.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--preload",
                "--workers",
                "2",
                "--worker-class",
                "gthread",
                "--threads",
                "4",
                "--timeout",
                "60",
                "--graceful-timeout",
                "5",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        handle.close()
        wait_for(lambda: port_open(self.port), timeout=60, what="gunicorn to listen")
        wait_for(self._serving, timeout=60, every=0.2, what="gunicorn to answer")

    def _serving(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=10) as r:
                return r.status == 200
        except (OSError, urllib.error.HTTPError):
            return False

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def database_url() -> str:
    """The URL of the database the tests run on (the test database), for the processes a test starts."""
    from django.db import connection

    s = connection.settings_dict
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{s['USER']}{password}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def start_worker(env: dict[str, str], log: Path, name: str) -> subprocess.Popen[bytes]:
    """A real Celery worker process (prefork, one child) that a test can SIGKILL."""
    handle = log.open("ab")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "annotate",
            "worker",
            "--pool=prefork",
            "--concurrency=1",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            f"--hostname={name}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    handle.close()
    return worker


# --- A browser-like HTTP client -----------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    text: str
    headers: dict[str, str]
    url: str


class Session:
    """Cookies, CSRF and no exceptions on 4xx/5xx: what a browser tab does, over real HTTP."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def csrf(self) -> str:
        return next((c.value for c in self.jar if c.name == "csrftoken"), "")

    def request(
        self,
        method: str,
        path: str,
        data: dict[str, str] | None = None,
        *,
        htmx: bool = False,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> Response:
        body = urllib.parse.urlencode(data or {}, doseq=True).encode() if data is not None else None
        req = urllib.request.Request(self.base + path, data=body, method=method)
        if body is not None:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
            req.add_header("X-CSRFToken", self.csrf())
        req.add_header("Referer", self.base + "/")
        if htmx:
            req.add_header("HX-Request", "true")
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        try:
            with self.opener.open(req, timeout=timeout) as r:
                return Response(r.status, r.read().decode(), dict(r.headers), r.url)
        except urllib.error.HTTPError as exc:
            return Response(exc.code, exc.read().decode(errors="replace"), dict(exc.headers), exc.url or "")

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, data: dict[str, str], **kwargs: Any) -> Response:
        return self.request("POST", path, data, **kwargs)

    def log_in(self, username: str, password: str) -> None:
        self.get("/login/")
        r = self.post("/login/", {"username": username, "password": password, "csrfmiddlewaretoken": self.csrf()})
        assert r.status == 200 and r.url.rstrip("/") == self.base, (r.status, r.url)


FORM = re.compile(r'<form class="item-form" method="post" action="(?P<action>[^"]+)"')
FORM_KEY = re.compile(r'name="form_key" value="(?P<key>[^"]+)"')
RADIO = re.compile(r'<input type="radio" name="(?P<name>[^"]+)" value="(?P<value>[^"]+)"')


def first_form(html: str) -> tuple[str, dict[str, str]] | None:
    """The first labeling form on a page (the current item): its action and a filled-in body choosing "pass"."""
    match = FORM.search(html)
    if not match:
        return None
    rest = html[match.end() :]
    rest = rest[: rest.find("</form>")]
    data = {"form_key": FORM_KEY.search(rest)["key"], "time_spent_ms": "1200", "note": ""}  # type: ignore[index]
    for radio in RADIO.finditer(rest):
        data.setdefault(radio["name"], radio["value"])
    return match["action"], data


def timed(call):
    """What `call()` returns, and how many seconds it took."""
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started
