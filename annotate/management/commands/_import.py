"""What `import_items` and `import_labels` share: arguments, the progress bar and how results are printed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotate.imports.files import file_import
from annotate.imports.parsing import FORMATS
from annotate.imports.report import ImportInvalid, ImportRefused, counted
from annotate.models import Project


class ProgressBar:
    """A one-line bar on the command's stderr, redrawn at most ten times a second (when stderr is not a terminal:
    one line per 10%, so logs stay short)."""

    def __init__(self, stream: Any, label: str) -> None:
        self.stream = stream
        self.label = label
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.last = 0.0
        self.last_decile = -1
        self.start = time.perf_counter()

    def __call__(self, fraction: float, rows: int) -> None:
        now = time.perf_counter()
        elapsed = max(now - self.start, 1e-9)
        width = 30
        filled = int(width * min(fraction, 1.0))
        bar = "#" * filled + "." * (width - filled)
        text = f"{self.label} [{bar}] {fraction:4.0%} {rows:,} rows {rows / elapsed:,.0f}/s"
        if self.tty:
            if now - self.last >= 0.1 or fraction >= 1.0:
                self.stream.write("\r" + text + ("\n" if fraction >= 1.0 else ""), ending="")
                self.stream.flush()
                self.last = now
        elif int(fraction * 10) > self.last_decile:
            self.last_decile = int(fraction * 10)
            self.stream.write(text, ending="\n")


class ImportCommand(BaseCommand):
    kind = ""
    # The system checks import every URL module (and through them the LLM client) to check things an import never
    # touches; they cost a fifth of a 100,000-row import. `manage.py check` and the server still run them.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="the project's slug")
        parser.add_argument("file", type=Path, help="a .jsonl or .csv file (UTF-8, with or without BOM)")
        parser.add_argument("--format", choices=FORMATS, help="override the format guessed from the name")
        parser.add_argument(
            "--update", action="store_true", help="give conflicting rows (same id, other content) the file's content"
        )
        parser.add_argument("--dry-run", action="store_true", help="check and compare only; write nothing")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"No project {options['project']!r}.")
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"No file {path}.")
        label = "checking" if options["dry_run"] else "importing"
        progress = None if options["no_progress"] else ProgressBar(self.stderr, label)
        try:
            report = file_import(
                project=project,
                kind=self.kind,
                path=path,
                fmt=options["format"],
                update=options["update"],
                apply=not options["dry_run"],
                progress=progress,
            )
        except ImportInvalid as exc:
            lines = [str(e) for e in exc.errors]
            if exc.n_errors > len(exc.errors):
                lines.append(f"... and {exc.n_errors - len(exc.errors):,} more")
            raise CommandError(
                f"{counted(exc.n_errors, 'bad row')}; nothing was imported:\n  " + "\n  ".join(lines)
            ) from None
        except ImportRefused as exc:
            raise CommandError(f"{exc.message} Nothing was imported.") from None
        self.stdout.write(self.style.SUCCESS(report.summary()) if report.applied else report.summary())
        for conflict in report.conflicts:
            where = ", ".join(f"{k} {v}" for k, v in conflict.items() if k != "line")
            self.stdout.write(f"  conflict on line {conflict['line']}: {where}")
        if report.n_conflicts > len(report.conflicts):
            self.stdout.write(f"  ... and {report.n_conflicts - len(report.conflicts):,} more conflicts")
        if report.n_conflicts and not options["update"]:
            self.stdout.write("Conflicting rows were left as they are; run again with --update to replace them.")
        if report.users_created:
            self.stdout.write("Imported users (inactive): " + ", ".join(report.users_created))
