"""What the HTTP labeling benchmarks share: gunicorn as a subprocess, and an annotator's browser-like session.

Not a benchmark module itself (run.py collects only bench_*.py); bench_labeling and bench_load import it.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.bench.run import ROOT

PASSWORD = "bench-password-not-secret"
# As in docker/Dockerfile: a process per core, 2 threads each; BENCH_GUNICORN tries others (docs/load.md compares them).
GUNICORN_ARGS = os.environ.get(
    "BENCH_GUNICORN", f"--workers {os.cpu_count() or 1} --worker-class gthread --threads 2"
).split()
# Method, path, status, %(D)s and the worker's pid. %(D)s is the microseconds gunicorn spent on the request, from the
# parsed request to the last byte of the response written: Django's time and the socket's, not the wait for a thread.
ACCESS_LOG_FORMAT = "%(m)s %(U)s %(s)s %(D)s %(p)s"
FORM = {"c-acceptable": "pass", "c-follows_instructions": "pass", "c-factually_correct": "fail", "note": ""}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Server:
    port: int
    pid: int  # gunicorn's master


@contextmanager
def gunicorn(*, access_log: Path | None = None, args: list[str] | None = None) -> Iterator[Server]:
    """gunicorn serving the app on a free loopback port, with `args` (default GUNICORN_ARGS), once it accepts
    connections."""
    port = free_port()
    # LOG_LEVEL: no INFO line per login (django-axes) on the console; the submit path logs nothing at INFO anyway.
    env = {**os.environ, "ALLOWED_HOSTS": "127.0.0.1", "HTTPS": "false", "DEBUG": "false", "LOG_LEVEL": "WARNING"}
    logging = ["--log-level", "warning"]
    if access_log is not None:
        logging += ["--access-logfile", str(access_log), "--access-logformat", ACCESS_LOG_FORMAT]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "annotate.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            *(GUNICORN_ARGS if args is None else args),
            *logging,
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError("gunicorn exited at start") from None
                time.sleep(0.1)
        yield Server(port, server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)


@dataclass(frozen=True)
class Logged:
    """One line of the access log (ACCESS_LOG_FORMAT); lines are in the order the responses finished."""

    method: str
    path: str
    status: int
    ms: float
    pid: str


def access_log(path: Path) -> list[Logged]:
    lines = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 5:
            lines.append(Logged(parts[0], parts[1], int(parts[2]), int(parts[3]) / 1000, parts[4]))
    return lines


def form_fields(html: str) -> tuple[int, str] | None:
    """The item id and the per-form submission key of one labeling form."""
    match = re.search(r'data-item="(\d+)"', html)
    key = re.search(r'name="form_key" value="([0-9a-f]+)"', html)
    return (int(match.group(1)), key.group(1)) if match and key else None


class Session:
    """A browser-like session over plain HTTP: cookies, CSRF token and one keep-alive connection."""

    def __init__(self, port: int, username: str, *, timeout: float = 30) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.cookies: dict[str, str] = {}
        self.username = username
        self.reconnects = 0

    def _headers(self, body: str | None, htmx: bool) -> dict[str, str]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()), "Host": "127.0.0.1"}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["X-CSRFToken"] = self.cookies.get("csrftoken", "")
            headers["Referer"] = "http://127.0.0.1/"
        if htmx:
            headers["HX-Request"] = "true"
        return headers

    def open(self, method: str, path: str, body: dict[str, str | list[str]] | None = None, htmx: bool = False):
        """Send a request and return the response with its headers read (the body is left to the caller)."""
        data = None if body is None else urllib.parse.urlencode(body, doseq=True)
        headers = self._headers(data, htmx)
        try:
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The server closed an idle keep-alive connection: reconnect and send the same request again. A
            # repeated submit carries the same form key, so the server stores it once.
            self.reconnects += 1
            self.conn.close()
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
        return response

    def request(self, method: str, path: str, body: dict[str, str | list[str]] | None = None, htmx: bool = False):
        response = self.open(method, path, body, htmx)
        return response.status, response.read().decode()

    def login(self) -> None:
        """Through the login form, as a browser does: GET for the CSRF cookie, then POST the form with it."""
        self.request("GET", "/login/")
        status, _ = self.request(
            "POST",
            "/login/",
            {"username": self.username, "password": PASSWORD, "csrfmiddlewaretoken": self.cookies["csrftoken"]},
        )
        assert status == 302, status


class Annotator(Session):
    """An annotator: log in, open the labeling page, submit what it shows and take the item the app gives next."""

    def __init__(self, port: int, username: str, slug: str, form: dict[str, str] | None = None) -> None:
        super().__init__(port, username)
        self.slug = slug
        self.form = FORM if form is None else form  # the criteria fields posted with each submit
        self.shown_at = time.monotonic()

    def start(self) -> tuple[tuple[int, str] | None, tuple[int, str] | None]:
        """Log in and open the labeling page: the current item's form and the prefetched next one."""
        self.login()
        status, page = self.request("GET", f"/p/{self.slug}/label/")
        assert status == 200, status
        forms = re.findall(r'<form class="item-form".*?</form>', page, re.S)
        self.shown_at = time.monotonic()
        return form_fields(forms[0]), form_fields(forms[1])

    def submit(self, current: tuple[int, str], prefetched: tuple[int, str] | None) -> tuple[int, str]:
        """Post the form as htmx does (its fields and its per-form key); the answer renders the next prefetched item.

        time_spent_ms and page_items are what the page's script fills in: the time since this item's form was shown,
        and the items the page holds (the one submitted and the prefetched one), so the server answers with a lease
        the page lacks or a fresh claim, in one statement (label.js; services.queue.queue_next).
        """
        fields: dict[str, str | list[str]] = {
            "csrfmiddlewaretoken": self.cookies["csrftoken"],
            "form_key": current[1],
            "time_spent_ms": str(int((time.monotonic() - self.shown_at) * 1000)),
            "page_items": [str(current[0])] + ([str(prefetched[0])] if prefetched else []),
            **self.form,
        }
        answer = self.request("POST", f"/p/{self.slug}/label/{current[0]}/", fields, htmx=True)
        self.shown_at = time.monotonic()
        return answer
