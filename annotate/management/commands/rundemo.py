from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection


class Command(BaseCommand):
    help = "Migrate, load the demo, then serve the app with a Celery worker and beat until Ctrl-C (`make run`)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--host", default="127.0.0.1")

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Database migrated.")
        call_command("load_demo", stdout=self.stdout)
        if connection.vendor == "sqlite":
            self.stdout.write(
                self.style.WARNING(
                    "Embedded default: SQLite and a file-system Celery broker under var/. This is for one machine "
                    "and a demo; a team uses PostgreSQL and Redis (set DATABASE_URL and REDIS_URL, see docker/)."
                )
            )
        python = sys.executable
        celery = [python, "-m", "celery", "-A", "annotate"]
        commands = {
            "web": [python, "manage.py", "runserver", f"{options['host']}:{options['port']}", "--noreload"],
            "worker": [*celery, "worker", "--loglevel=INFO", "--concurrency=2", "--hostname=demo@%h"],
            "beat": [
                *celery,
                "beat",
                "--loglevel=INFO",
                "--schedule",
                settings.CELERY_BEAT_SCHEDULE_FILENAME,
            ],
        }
        if not os.environ.get("OPENAI_API_KEY"):
            # No key for a real model: judges can talk to the offline stand-in (judges/standin.py) on loopback.
            commands["standin"] = [python, "-m", "judges.standin", "--port", str(settings.JUDGE_STANDIN_PORT)]
        # If whatever started us (make, a terminal) goes away without a Ctrl-C, stop everything rather than leave
        # a worker or the stand-in holding its port.
        _die_with_parent()
        processes = {
            name: subprocess.Popen(cmd, cwd=settings.BASE_DIR, preexec_fn=_die_with_parent)
            for name, cmd in commands.items()
        }
        self.stdout.write(
            self.style.SUCCESS(f"annotate is at http://{options['host']}:{options['port']}/  (Ctrl-C stops everything)")
        )
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        try:
            while True:
                for name, process in processes.items():
                    if process.poll() is not None:
                        self.stderr.write(f"{name} exited with code {process.returncode}; stopping the others.")
                        raise KeyboardInterrupt
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            _stop(processes)
            self.stdout.write("Stopped.")


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this process when its parent exits (a no-op elsewhere)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stop(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
