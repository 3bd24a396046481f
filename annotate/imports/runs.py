"""What item and label runs share: the per-project write lock, error and conflict collection, row limit, duplicates."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connection

from annotate.imports.checking import (
    RowError,
)
from annotate.imports.report import MAX_REPORTED_ERRORS, ImportInvalid, ImportRefused, ImportReport, Progress
from annotate.models import Project

PREVIEW_ROWS = 10
PREVIEW_CHARS = 300
MAX_REPORTED_CONFLICTS = 100
# First key of the per-project advisory lock that serialises every writer of a project's items (imports, API pushes,
# the daily sample), so that two of them never race on the same new external_id. The second key is the project id.
_LOCK_NAMESPACE = 0x616E6E  # "ann"


def lock_project_writes(project: Project) -> None:
    """Serialise writers of this project's items until the transaction ends. Call inside transaction.atomic."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_NAMESPACE, project.pk])
    # SQLite (the embedded demo) takes its single write lock when the transaction begins (transaction_mode IMMEDIATE).


class _Run:
    """What every kind of run shares: error collection, the duplicate check, the row limit, progress."""

    def __init__(self, kind: str, *, apply: bool, progress: Progress | None) -> None:
        self.report = ImportReport(kind=kind, applied=apply)
        self.apply = apply
        self.errors: list[RowError] = []
        self.n_errors = 0
        # hash of a row's key -> its first line: the one thing kept per row. A 64-bit hash collision would report a
        # false duplicate; at a million rows its odds are about one in ten million.
        self.first_line: dict[int, int] = {}
        self.progress = progress
        self.max_rows = int(settings.IMPORT_MAX_ROWS)

    def error(self, problem: RowError) -> None:
        self.n_errors += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(problem)

    def count_row(self) -> None:
        self.report.n_rows += 1
        if self.report.n_rows > self.max_rows:
            raise ImportRefused(f"Too many rows: at most {self.max_rows:,} in one import.", status=413)

    def duplicate_of(self, key: object, line: int) -> int | None:
        first = self.first_line.setdefault(hash(key), line)
        return None if first == line else first

    def conflict(self, entry: dict[str, Any]) -> None:
        self.report.n_conflicts += 1
        if len(self.report.conflicts) < MAX_REPORTED_CONFLICTS:
            self.report.conflicts.append(entry)

    def finish(self) -> ImportReport:
        if self.n_errors:
            raise ImportInvalid(sorted(self.errors, key=lambda e: e.line), self.n_errors)
        return self.report


def _short(text: str) -> str:
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"
