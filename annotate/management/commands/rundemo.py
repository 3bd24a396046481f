"""`make run`: check that this demo can start, migrate, load the demo, then serve with honcho (Procfile.dev: the web
server, a Celery worker, beat and, without OPENAI_API_KEY, the offline stand-in model) until Ctrl-C.

Two demos may run on one machine when each has its own PORT and VAR_DIR (the SQLite database, the file-system
broker and beat's schedule live there): a second one on the same VAR_DIR or the same port is refused before anything
starts. The stand-in's port (JUDGE_STANDIN_PORT, 8765) moves to a free one when it is taken, and the web server and
the worker are told which.

honcho does the process management: it starts each Procfile.dev line in a session of its own, and on Ctrl-C (or
when one of them exits) sends each one's process group SIGTERM, then SIGKILL to what is left after 5 seconds. This
command only waits for honcho, holding VAR_DIR's lock, and says "Stopped." at the end.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import FrameType
from typing import IO, Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

LOCK_NAME = "rundemo.lock"
PROCFILE = "Procfile.dev"


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
        try:
            if not _port_is_free(host, port):
                raise CommandError(
                    f"Port {port} on {host} is already in use (another demo or server?). "
                    f"Run this one on a free port: PORT={_free_port_near(host, port)} make run"
                )
            try:
                call_command("migrate", interactive=False, verbosity=0)
                self.stdout.write("Database migrated.")
                call_command("load_demo", stdout=self.stdout)
            except KeyboardInterrupt:
                self.stdout.write("Stopped.")
                return
            env, names = self._environment(host, port, var_dir)
            connection.close()
            returncode = self._serve(env, names, host, port)
        finally:
            lock.close()
        self.stdout.write("Stopped.")
        if returncode:
            sys.exit(1)

    def _environment(self, host: str, port: int, var_dir: Path) -> tuple[dict[str, str], list[str]]:
        """What Procfile.dev's lines read, and the names of the lines to start."""
        bin_dir = str(Path(sys.executable).parent)
        env = {
            **os.environ,
            # Procfile.dev's `python` is this one, whatever PATH the user has.
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            # The children read the same settings: an absolute VAR_DIR, whatever directory they start in.
            "VAR_DIR": str(var_dir),
            # Not PORT: honcho gives each line a PORT of its own.
            "DEMO_HOST": host,
            "DEMO_PORT": str(port),
            "PYTHONUNBUFFERED": "1",
        }
        # Cookies are per host, not per port: a second demo on another port must not log the first one out.
        env.setdefault("SESSION_COOKIE_NAME", f"annotate{port}_session")
        env.setdefault("CSRF_COOKIE_NAME", f"annotate{port}_csrftoken")
        names = ["web", "worker", "beat"]
        if not os.environ.get("OPENAI_API_KEY"):
            # No key for a real model: judges talk to the offline stand-in (judges/standin.py) on loopback.
            wanted = settings.JUDGE_STANDIN_PORT
            # Not the web server's port either (PORT=8765 make run): it is still free now, as nothing is started.
            standin_port = (
                wanted
                if wanted != port and _port_is_free("127.0.0.1", wanted)
                else _free_port_near("127.0.0.1", wanted, besides=port)
            )
            env["JUDGE_STANDIN_PORT"] = str(standin_port)
            why = "is the web server's" if wanted == port else "is taken"
            moved = (
                ""
                if standin_port == wanted
                else f": port {wanted} (JUDGE_STANDIN_PORT) {why}, so the web server and worker use {standin_port}"
            )
            self.stdout.write(f"Offline stand-in model on http://127.0.0.1:{standin_port}/v1{moved}")
            names.append("standin")
        if connection.vendor == "sqlite":
            self.stdout.write(
                self.style.WARNING(
                    f"Embedded default: SQLite and a file-system Celery broker under {var_dir}. This is for one "
                    "machine and a demo; a team uses PostgreSQL and Redis (set DATABASE_URL and REDIS_URL, see "
                    "docker/)."
                )
            )
        return env, names

    def _serve(self, env: dict[str, str], names: list[str], host: str, port: int) -> int:
        """Run honcho until it has stopped every process; its exit code, 0 when we were asked to stop."""
        self.stdout.write(self.style.SUCCESS(f"annotate is at http://{host}:{port}/  (Ctrl-C stops everything)"))
        self.stdout.flush()
        base = Path(settings.BASE_DIR)
        # `-e /dev/null`: no .env file is read, as before honcho.
        command = [sys.executable, "-m", "honcho", "-f", str(base / PROCFILE), "-d", str(base), "-e", os.devnull]
        honcho = subprocess.Popen([*command, "start", *names], cwd=base, env=env)
        asked = False

        def stop(signum: int, frame: FrameType | None) -> None:
            # A Ctrl-C in the terminal reaches honcho too (same process group); passed on all the same, for a signal
            # sent to this process alone. honcho kills what is left 5 seconds after the first.
            nonlocal asked
            asked = True
            honcho.send_signal(signal.SIGTERM)

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, stop)
        returncode = honcho.wait()
        return 0 if asked else returncode


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


def _free_port_near(host: str, port: int, besides: int | None = None) -> int:
    return next(
        (p for p in range(port + 1, min(port + 100, 65536)) if p != besides and _port_is_free(host, p)), port + 1
    )
