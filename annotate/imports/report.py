"""What an import tells: ImportRefused (nothing taken), ImportInvalid (bad rows named), ImportReport, and progress."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from annotate.imports.checking import (
    RowError,
)
from annotate.models import ImportJob

MAX_REPORTED_ERRORS = 1000

Progress = Callable[[float, int], None]  # (fraction done, rows read so far)
PROGRESS_MIN_ROWS = 500


def counted(n: int, noun: str, plural: str = "") -> str:
    """'1 bad row', '2 bad rows', '1,200 bad rows': a count with its noun in agreement."""
    return f"{n:,} {noun if n == 1 else (plural or noun + 's')}"


class _ProgressEvery:
    """Reports progress every 1% of the file or every PROGRESS_MIN_ROWS rows, whichever is larger: a 3 MB file
    moves in steps of 500 rows, a 2 GB one in steps of 1%, and neither writes the cache more often than that. Where
    1% will be is estimated from the rows read so far, then checked, so the file's position is read only a few times
    per step. Without a position (API rows) it reports every PROGRESS_MIN_ROWS rows."""

    def __init__(self, progress: Progress | None, position: Callable[[], float] | None) -> None:
        self.progress = progress
        self.position = position
        self.next_at = PROGRESS_MIN_ROWS
        self.last_fraction = 0.0

    def row(self, n_rows: int) -> None:
        if self.progress is None or n_rows < self.next_at:
            return
        fraction = min(1.0, self.position()) if self.position else 0.0
        if 0 < fraction < self.last_fraction + 0.01:
            # Not 1% further yet: look again where the rows read so far say that will be.
            rows_per_fraction = n_rows / fraction
            self.next_at = n_rows + max(1, math.ceil((self.last_fraction + 0.01 - fraction) * rows_per_fraction))
            return
        self.progress(fraction, n_rows)
        self.last_fraction = fraction
        self.next_at = n_rows + PROGRESS_MIN_ROWS


class ImportRefused(Exception):
    """The input as a whole cannot be taken (too large, unreadable, empty, no rubric): nothing was written."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        self.message = message
        self.status = status
        super().__init__(message)


class ImportInvalid(Exception):
    """Some rows are bad, so nothing was written. `errors` has the first MAX_REPORTED_ERRORS; `n_errors` counts all."""

    def __init__(self, errors: list[RowError], n_errors: int) -> None:
        self.errors = errors
        self.n_errors = n_errors
        super().__init__(f"{counted(n_errors, 'bad row')}; nothing was imported")


@dataclass
class ImportReport:
    """What a run found (a preview) or did (applied). Stored as JSON on an ImportJob, returned by the API."""

    kind: str
    applied: bool
    n_rows: int = 0
    n_new: int = 0
    n_unchanged: int = 0
    n_conflicts: int = 0
    n_updated: int = 0
    # Labels on items whose content an update replaced: they are kept as they were, and the lead is told so.
    n_labels_kept: int = 0
    users_created: list[str] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    preview: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportReport:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def summary(self) -> str:
        """One sentence for the lead, the command's output and the API."""
        noun = "item" if self.kind == ImportJob.Kind.ITEMS else "label"
        verb = "" if self.applied else "would be "
        parts = [f"{counted(self.n_new, 'new ' + noun)} {verb}added", f"{self.n_unchanged:,} unchanged"]
        if self.n_updated:
            parts.append(f"{counted(self.n_updated, 'conflicting ' + noun)} {verb}updated")
        elif self.n_conflicts:
            parts.append(f"{self.n_conflicts:,} conflicting (left as they are)")
        text = f"{counted(self.n_rows, 'row')}: " + ", ".join(parts) + "."
        if self.kind == ImportJob.Kind.ITEMS and self.n_updated:
            text += f" Their existing labels ({self.n_labels_kept:,}) were kept."
        if self.users_created:
            names = counted(len(self.users_created), "annotator name")
            that = "that is not a member" if len(self.users_created) == 1 else "that are not members"
            users = "inactive imported user" if len(self.users_created) == 1 else "inactive imported users"
            text += f" {names} {that} of this project {verb}added as its own {users}."
        return text
