"""`make run` as a newcomer starts it: the real command in the repository root, in its own process group, its output
in a log file; stopped the way Ctrl-C stops it (SIGINT to the whole foreground group), then checked for leftovers.

Only the test's HTTP client, its browser and its database reads touch the app: nothing here imports Django.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# A newcomer's shell: nothing that configures the app (no DATABASE_URL, REDIS_URL, SECRET_KEY, DEBUG, HTTPS, no
# OPENAI_API_KEY, nothing pytest or make put there). Only these pass through from the test run's environment.
PASSED_THROUGH = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TMPDIR")

# What counts as an error in the server's output: Django's and Celery's error lines, and any traceback.
LOG_PROBLEM = re.compile(r" ERROR |: ERROR/| CRITICAL |: CRITICAL/|Traceback")
# load_demo prints "Demo users (username / password / role):" then one "  name  password  role" line per user.
CREDENTIALS_HEADER = "Demo users (username / password / role):"
CREDENTIAL_LINE = re.compile(r"^\s+(\S+)\s+(\S+)\s+(lead|annotator)\s*$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nothing_listens_on(port: int) -> bool:
    """No server on the port any more (its closed connections may still sit in TIME_WAIT: that is not a server)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


@dataclass
class Database:
    """Read-only SQL against what the app stored: SQLite's file under VAR_DIR, or the PostgreSQL database."""

    sqlite_path: Path | None = None
    postgres_url: str | None = None

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Rows of one query written with %s placeholders (turned into ? for SQLite)."""
        if self.sqlite_path is not None:
            conn = sqlite3.connect(f"file:{self.sqlite_path}?mode=ro", uri=True, timeout=10)
            try:
                return conn.execute(sql.replace("%s", "?"), list(params)).fetchall()
            finally:
                conn.close()
        import psycopg

        assert self.postgres_url
        with psycopg.connect(self.postgres_url, autocommit=True) as conn:
            return conn.execute(sql, list(params)).fetchall()  # type: ignore[arg-type]

    def value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None


@dataclass
class MakeRun:
    setup: str  # "sqlite" or "postgres"
    var_dir: Path
    log_path: Path
    port: int = field(default_factory=free_port)
    standin_port: int = field(default_factory=free_port)
    database_url: str | None = None
    redis_url: str | None = None
    process: subprocess.Popen[bytes] | None = None
    credentials: dict[str, tuple[str, str]] = field(default_factory=dict)  # username -> (password, role)
    log_checked_to: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db(self) -> Database:
        if self.database_url:
            return Database(postgres_url=self.database_url)
        return Database(sqlite_path=self.var_dir / "annotate.sqlite3")

    def env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in PASSED_THROUGH if k in os.environ}
        env |= {
            "PORT": str(self.port),
            "JUDGE_STANDIN_PORT": str(self.standin_port),
            "VAR_DIR": str(self.var_dir),
            # A terminal shows each line as it is printed; a file gets Python's block buffering unless told.
            "PYTHONUNBUFFERED": "1",
        }
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        return env

    # --- start and stop ---------------------------------------------------------------------------------------

    def start(self, timeout: float = 240) -> None:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                ["make", "run"],
                cwd=ROOT,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, as a shell's foreground job has
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"make run exited with {self.process.returncode} before serving:\n{self.log_tail()}")
            if self._login_page_answers():
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"make run did not serve {self.base_url}/login/ in {timeout:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.5)
        self.credentials = parse_credentials(self.log())

    def _login_page_answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/login/", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self, timeout: float = 60) -> tuple[int | None, list[str]]:
        """Ctrl-C: SIGINT to the process group. Returns make's exit status and the processes left behind (killed)."""
        assert self.process is not None
        pgid = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGINT)
        try:
            returncode: int | None = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            returncode = None
        # Orphans are re-parented and reaped by init: give them a moment to go.
        deadline = time.monotonic() + 15
        while (left := self.leftovers(pgid)) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid, _ in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if returncode is None:
            self.process.kill()
            self.process.wait()
        return returncode, [cmd for _, cmd in left]

    def leftovers(self, pgid: int) -> list[tuple[int, str]]:
        """Live processes of the group, or carrying this run's VAR_DIR in their environment (a child that left it)."""
        marker = f"VAR_DIR={self.var_dir}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                stat = (entry / "stat").read_text()
                state, _ppid, group = stat.rsplit(")", 1)[1].split()[:3]
                if state in ("Z", "X"):
                    continue
                mine = int(group) == pgid or marker in (entry / "environ").read_bytes().split(b"\0")
                if mine:
                    cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                    found.append((int(entry.name), cmd))
            except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
                continue
        return found

    # --- the log ----------------------------------------------------------------------------------------------

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-n:])

    def new_log_problems(self) -> list[str]:
        """Error lines printed since the last call (each line is reported once)."""
        text = self.log()
        fresh, self.log_checked_to = text[self.log_checked_to :], len(text)
        lines = fresh.splitlines()
        problems = []
        for n, line in enumerate(lines):
            if LOG_PROBLEM.search(line):
                problems.append("\n".join(lines[n : n + 25]) if "Traceback" in line else line)
        return problems


def parse_credentials(output: str) -> dict[str, tuple[str, str]]:
    """The demo users as load_demo prints them; an empty dict when the block is missing."""
    found: dict[str, tuple[str, str]] = {}
    lines = output.splitlines()
    for n, line in enumerate(lines):
        if line.strip() == CREDENTIALS_HEADER:
            for row in lines[n + 1 :]:
                match = CREDENTIAL_LINE.match(row)
                if not match:
                    break
                found[match[1]] = (match[2], match[3])
    return found
