"""`make run`: migrate, load the demo, then run the web server, a Celery worker, beat and (without OPENAI_API_KEY) the
offline stand-in model side by side until Ctrl-C.

Two demos may run on one machine when each has its own PORT and VAR_DIR (the SQLite database, the file-system
broker and beat's schedule live there): a second one on the same VAR_DIR or the same port is refused before anything
starts. The stand-in's port (JUDGE_STANDIN_PORT, 8765) moves to a free one when it is taken, and the web server and
the worker are told which.

Each child runs in its own session, so its own children (the worker's pool processes) are signalled with it and a
Ctrl-C in the terminal reaches this command only: the first SIGINT/SIGTERM/SIGHUP asks every child to stop and
waits GRACE_SECONDS, any further one kills what is left at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO, Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

# Seconds the children get to stop by themselves after the first Ctrl-C (the worker finishes the task it holds, a
# judge chunk may take longer) before whatever is left is killed.
GRACE_SECONDS = 8.0
# Seconds the stand-in gets to say on which port it listens.
STANDIN_START_SECONDS = 30.0
LOCK_NAME = "rundemo.lock"


class Command(BaseCommand):
    help = "Migrate, load the demo, then serve the app with a Celery worker and beat until Ctrl-C (`make run`)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=os.environ.get("PORT") or "8000")
        parser.add_argument("--host", default="127.0.0.1")

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = options["host"], options["port"]
        var_dir = Path(settings.VAR_DIR).resolve()
        # Refused before anything is migrated or started: no half demo.
        lock = _lock_var_dir(var_dir)
        if lock is None:
            free_port = port if _port_is_free(host, port) else _free_port_near(host, port)
            raise CommandError(
                f"{var_dir} is in use by another demo. Give a second demo its own folder and port: "
                f"PORT={free_port} VAR_DIR={_free_var_dir(var_dir)} make run"
            )
        if not _port_is_free(host, port):
            lock.close()
            raise CommandError(
                f"Port {port} on {host} is already in use (another demo or server?). "
                f"Run this one on a free port: PORT={_free_port_near(host, port)} make run"
            )
        signals = _Signals()
        try:
            call_command("migrate", interactive=False, verbosity=0)
            self.stdout.write("Database migrated.")
            call_command("load_demo", stdout=self.stdout)
            # From here on a signal is counted, never raised, so that stopping the children is not cut short.
            signals.install()
        except KeyboardInterrupt:
            signals.ignore()
            self.stdout.write("Stopped.")
            return
        if connection.vendor == "sqlite":
            self.stdout.write(
                self.style.WARNING(
                    f"Embedded default: SQLite and a file-system Celery broker under {var_dir}. This is for one "
                    "machine and a demo; a team uses PostgreSQL and Redis (set DATABASE_URL and REDIS_URL, see "
                    "docker/)."
                )
            )
        connection.close()
        failed = False
        processes: dict[str, subprocess.Popen[str]] = {}
        try:
            failed = self._serve(host, port, var_dir, signals, processes)
        finally:
            _stop(processes, signals, self.stdout.write)
            # Everything is stopped: one more Ctrl-C must not kill the interpreter while it exits (Python puts the
            # default handlers back as it finalizes, but leaves ignored signals ignored).
            signals.ignore()
            lock.close()
            self.stdout.write("Stopped.")
        if failed:
            sys.exit(1)

    def _serve(
        self,
        host: str,
        port: int,
        var_dir: Path,
        signals: _Signals,
        processes: dict[str, subprocess.Popen[str]],
    ) -> bool:
        """Start the children into `processes` and watch them until a signal (False) or one of them exits (True)."""
        python = sys.executable
        # The children read the same settings: an absolute VAR_DIR, whatever directory they start in.
        env = {**os.environ, "VAR_DIR": str(var_dir)}
        # Cookies are per host, not per port: a second demo on another port must not log the first one out.
        env.setdefault("SESSION_COOKIE_NAME", f"annotate{port}_session")
        env.setdefault("CSRF_COOKIE_NAME", f"annotate{port}_csrftoken")
        # If whatever started us (make, a terminal) goes away without a Ctrl-C, stop everything rather than leave
        # a worker or the stand-in holding its port.
        _die_with_parent()
        if not os.environ.get("OPENAI_API_KEY"):
            # No key for a real model: judges talk to the offline stand-in (judges/standin.py) on loopback.
            wanted = settings.JUDGE_STANDIN_PORT
            processes["standin"] = _start(
                [python, "-m", "judges.standin", "--port", str(wanted), "--any-port-if-taken"],
                env,
                stdout=subprocess.PIPE,
            )
            standin_port = _standin_port(processes["standin"], signals)
            if standin_port is None:
                if not signals.count:
                    self.stderr.write("The offline stand-in model did not start; stopping.")
                return not signals.count
            env["JUDGE_STANDIN_PORT"] = str(standin_port)
            moved = (
                ""
                if standin_port == wanted
                else f": port {wanted} (JUDGE_STANDIN_PORT) is taken, so the web server and worker use {standin_port}"
            )
            self.stdout.write(f"Offline stand-in model on http://127.0.0.1:{standin_port}/v1{moved}")
        celery = [python, "-m", "celery", "-A", "annotate"]
        commands = {
            "web": [python, "manage.py", "runserver", f"{host}:{port}", "--noreload"],
            "worker": [*celery, "worker", "--loglevel=INFO", "--concurrency=2", f"--hostname=demo-{port}@%h"],
            "beat": [*celery, "beat", "--loglevel=INFO", "--schedule", settings.CELERY_BEAT_SCHEDULE_FILENAME],
        }
        for name, cmd in commands.items():
            if signals.count:
                return False
            processes[name] = _start(cmd, env)
        if "standin" in processes:
            # Started after every fork (a thread and preexec_fn do not mix): passes the stand-in's output on.
            _relay(processes["standin"].stdout, self.stdout)
        self.stdout.write(self.style.SUCCESS(f"annotate is at http://{host}:{port}/  (Ctrl-C stops everything)"))
        while not signals.count:
            for name, process in processes.items():
                if process.poll() is not None:
                    self.stderr.write(f"{name} exited with code {process.returncode}; stopping the others.")
                    return True
            time.sleep(0.1)
        return False


class _Signals:
    """Counts SIGINT, SIGTERM and SIGHUP instead of raising KeyboardInterrupt, so that cleanup is never cut short."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.count = 0

    def install(self) -> None:
        for signum in self.SIGNALS:
            signal.signal(signum, self._handle)

    def ignore(self) -> None:
        for signum in self.SIGNALS:
            signal.signal(signum, signal.SIG_IGN)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1


def _start(cmd: list[str], env: dict[str, str], **kwargs: Any) -> subprocess.Popen[str]:
    # A session of its own: the terminal's Ctrl-C reaches this command only, which stops the children in order, and
    # the child's own processes share its process group, which _stop kills as a whole.
    return subprocess.Popen(
        cmd,
        cwd=settings.BASE_DIR,
        env=env,
        text=True,
        start_new_session=True,
        preexec_fn=_die_with_parent,
        **kwargs,
    )


def _standin_port(process: subprocess.Popen[str], signals: _Signals) -> int | None:
    """The port the stand-in announces on its first line of output; None when it exits, stalls or we are stopped."""
    assert process.stdout is not None
    deadline = time.monotonic() + STANDIN_START_SECONDS
    while not signals.count and time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            line = process.stdout.readline()
            match = re.search(r"http://[^\s/]+:(\d+)/v1", line)
            return int(match.group(1)) if match else None
        if process.poll() is not None:
            return None
    return None


def _relay(source: IO[str] | None, out: Any) -> None:
    def copy() -> None:
        assert source is not None
        with contextlib.suppress(ValueError, OSError):
            for line in source:
                out.write(line.rstrip("\n"))

    threading.Thread(target=copy, name="standin-output", daemon=True).start()


def _lock_var_dir(var_dir: Path) -> IO[str] | None:
    """Hold VAR_DIR for this demo until the process ends, or None when another demo holds it: two demos on one
    VAR_DIR would share a SQLite file, a broker folder and beat's schedule file, and run every periodic task twice."""
    var_dir.mkdir(parents=True, exist_ok=True)
    lock = (var_dir / LOCK_NAME).open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock


def _free_var_dir(taken: Path) -> str:
    """A VAR_DIR to suggest for one more demo: var/demo2, var/demo3, ... (inside var/, which git ignores)."""
    for n in range(2, 100):
        candidate = Path(settings.BASE_DIR) / "var" / f"demo{n}"
        if candidate != taken and (not candidate.exists() or _lock_is_free(candidate)):
            return f"var/demo{n}"
    return "var/demo100"


def _lock_is_free(var_dir: Path) -> bool:
    path = var_dir / LOCK_NAME
    if not path.exists():
        return True
    with path.open("a") as probe:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
    return True


def _port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the servers bind: a port left in TIME_WAIT by a demo that just stopped is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _free_port_near(host: str, port: int) -> int:
    return next((p for p in range(port + 1, min(port + 100, 65536)) if _port_is_free(host, p)), port + 1)


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this process when its parent exits (a no-op elsewhere)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stop(processes: dict[str, subprocess.Popen[str]], signals: _Signals, say: Any) -> None:
    """SIGTERM each child, wait up to GRACE_SECONDS (or until one more signal), then kill each child's whole process
    group: a worker's pool processes too, even when the worker has gone first. Never raises on a signal."""
    if not processes:
        return
    seen = signals.count
    running = [p for p in processes.values() if p.poll() is None]
    if running:
        say("Stopping (Ctrl-C again to stop at once)...")
    for process in running:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    while any(p.poll() is None for p in processes.values()):
        if signals.count > seen or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for process in processes.values():
        # A group's id stays reserved while any member lives (a pool process whose worker is gone); an empty
        # group is simply not found.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    for process in processes.values():
        process.wait()
