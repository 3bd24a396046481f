"""Getting items and labels in: one pipeline behind the browser upload, the two commands and the token API.

Why one pipeline: the promises (every bad row named with its line, all or nothing, importing twice changes nothing,
a changed item is a conflict unless the lead asks to update) are only as good as the weakest way in.

How a run goes: rows are read one at a time from the file (JSON Lines or CSV) or the API batch, each is checked and
built, and every BATCH rows are compared with what the project holds and, unless it is a preview, written. Only one
batch is ever held, so memory does not grow with the file; the first-seen line of every id is the one thing kept per
row (to name duplicates). Writes happen inside one transaction under a per-project lock; a single bad row anywhere
rolls everything back and the report names every bad row. On PostgreSQL new items go in with COPY.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import errno
import json
import logging
import math
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

import psycopg
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from psycopg.copy import QueuedLibpqWriter

from annotate import selectors, services
from annotate.guards import text_problem
from annotate.import_rows import (
    ItemChecker,
    ItemRow,
    RowError,
    external_id_checked,
    type_name,
)
from annotate.import_rows import item_checker as item_checker  # re-exported: samples.py and tests use it from here
from annotate.import_rows import item_values as item_values
from annotate.models import ImportedUser, ImportJob, Item, Label, Membership, Project, imported_username

log = logging.getLogger(__name__)
User = get_user_model()
USERNAME_MAX_LENGTH: int = User._meta.get_field("username").max_length or 150

FORMATS = ("jsonl", "csv")
BATCH = 5000
PREVIEW_ROWS = 10
PREVIEW_CHARS = 300
MAX_REPORTED_ERRORS = 1000
MAX_REPORTED_CONFLICTS = 100
MAX_NOTE_CHARS = 10_000  # as for a note written in the browser (services.label_submit)
_BOM = b"\xef\xbb\xbf"
# First key of the per-project advisory lock that serialises every writer of a project's items (imports, API pushes,
# the daily sample), so that two of them never race on the same new external_id. The second key is the project id.
_LOCK_NAMESPACE = 0x616E6E  # "ann"
# First key of the per-job advisory lock a worker holds (session-level) while it checks or applies a job: a job marked
# running whose lock nobody holds lost its worker (the lock dies with the worker's connection, SIGKILL included).
_JOB_LOCK_NAMESPACE = 0x696D70  # "imp"
# Without PostgreSQL's advisory locks (the embedded SQLite demo), a running claim may be retaken after this long.
_STALE_AFTER = dt.timedelta(minutes=30)
_USERNAME = re.compile(r"^[\w.@+-]{1,150}\Z")

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


# --- Reading files --------------------------------------------------------------------------------------------


def format_detect(filename: str, head: bytes = b"") -> str:
    """jsonl or csv, from the file name, else from the first byte that is not a BOM or white space."""
    suffix = Path(filename).suffix.lower()
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    return "jsonl" if head.removeprefix(_BOM).lstrip()[:1] == b"{" else "csv"


# What a file is, from its first bytes, when it is not the UTF-8 text an import reads. Nothing here is ever opened,
# decompressed or unpacked: compressed uploads are refused, so there is no archive to bomb anyone with.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive (an Excel workbook is one)"),
    (b"PK\x05\x06", "a ZIP archive"),
    (b"\x1f\x8b", "gzip-compressed"),
    (b"BZh", "bzip2-compressed"),
    (b"\xfd7zXZ\x00", "xz-compressed"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Office document (.xls or .doc)"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"%PDF-", "a PDF document"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x7fELF", "an executable (ELF)"),
    (b"\xff\xfe", "UTF-16 text"),
    (b"\xfe\xff", "UTF-16 text"),
)
SNIFF_BYTES = 64 * 1024


def content_problem(head: bytes) -> str | None:
    """Why a file whose first bytes are `head` cannot be an import file (JSON Lines or CSV in UTF-8), or None."""
    for signature, what in _SIGNATURES:
        if head.startswith(signature) and not (signature == b"BZh" and head[4:10] != b"1AY&SY"):
            if what == "UTF-16 text":
                return "The file is UTF-16 text; save it as UTF-8 (JSON Lines or CSV) and upload it again."
            kind = what if what.startswith("a") else f"a {what} file"
            return (
                f"The file is {kind}, not JSON Lines or CSV text. Upload the .jsonl or .csv file itself, "
                "uncompressed; nothing was imported."
            )
    if b"\x00" in head:
        return "The file holds binary data (NUL bytes), not JSON Lines or CSV text; nothing was imported."
    return None


def _max_line_bytes() -> int:
    # A row holds at most a few fields of IMPORT_MAX_FIELD_CHARS characters, each up to 4 bytes in UTF-8 (6 when
    # JSON-escaped); a line beyond this cannot be valid, and reading it whole would unbound memory.
    return int(settings.IMPORT_MAX_FIELD_CHARS) * 6 * 5 + 65_536


def _readline(stream: IO[bytes], limit: int) -> tuple[bytes, bool]:
    """The next physical line, and whether it was longer than `limit` (its rest is then skipped, unread)."""
    raw = stream.readline(limit + 1)
    if len(raw) <= limit or raw.endswith(b"\n"):
        return raw, False
    while True:
        more = stream.readline(1 << 20)
        if not more or more.endswith(b"\n"):
            return raw[:0], True


def _decode_problem(raw: bytes, exc: UnicodeDecodeError) -> str:
    return f"bad encoding: not UTF-8 (byte 0x{raw[exc.start]:02x} at position {exc.start + 1})"


def rows_read(stream: IO[bytes], *, fmt: str) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """(line number, row or the reason the row is unreadable) for each row of a UTF-8 file, BOM or not."""
    if fmt == "jsonl":
        return _jsonl_rows(stream)
    if fmt == "csv":
        return _csv_rows(stream)
    raise ImportRefused(f"Unknown format {fmt!r}: use jsonl or csv.")


def _jsonl_rows(stream: IO[bytes]) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    limit = _max_line_bytes()
    line = 0
    while True:
        raw, too_long = _readline(stream, limit)
        if not raw and not too_long:
            return
        line += 1
        if too_long:
            yield line, RowError(line, "", f"line too long (more than {limit:,} bytes)")
            continue
        if line == 1:
            raw = raw.removeprefix(_BOM)
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield line, RowError(line, "", _decode_problem(raw, exc))
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            yield line, RowError(line, "", f"not valid JSON: {exc.msg} (column {exc.colno})")
            continue
        except RecursionError:
            yield line, RowError(line, "", "not valid JSON: nested too deeply")
            continue
        if not isinstance(data, dict):
            yield line, RowError(line, "", f"each line must be a JSON object, not {type_name(data)}")
            continue
        yield line, data


def _csv_rows(stream: IO[bytes]) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    limit = _max_line_bytes()
    problems: dict[int, str] = {}  # physical line -> why it is unreadable (only lines of the current record)
    physical = 0

    def lines() -> Iterator[str]:
        nonlocal physical
        while True:
            raw, too_long = _readline(stream, limit)
            if not raw and not too_long:
                return
            physical += 1
            if too_long:
                problems[physical] = f"line too long (more than {limit:,} bytes)"
                yield "\n"
                continue
            if physical == 1:
                raw = raw.removeprefix(_BOM)
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                problems[physical] = _decode_problem(raw, exc)
                yield raw.decode("utf-8", "replace")

    csv.field_size_limit(limit)
    reader = csv.reader(lines(), strict=False)
    try:
        header = next(reader)
    except StopIteration:
        raise ImportRefused("The file is empty.") from None
    except csv.Error as exc:
        raise ImportRefused(f"The CSV header cannot be read: {exc}.") from None
    if 1 in problems:
        raise ImportRefused(f"The CSV header cannot be read: {problems[1]}.")
    header = [name.strip() for name in header]
    if not any(header):
        raise ImportRefused("The first line must name the columns (a CSV header).")
    if "" in header:
        raise ImportRefused(f"Column {header.index('') + 1} of the header has no name.")
    twice = sorted({name for name in header if header.count(name) > 1})
    if twice:
        raise ImportRefused(f"The header names these columns twice: {', '.join(twice)}.")
    yield 1, {"__header__": header}
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # The reader cannot resynchronise after this (an unterminated quote swallows the rest): stop here.
            yield start, RowError(start, "", f"unreadable CSV: {exc}")
            return
        end = reader.line_num
        line, start = start, end + 1
        bad = [problems.pop(n) for n in range(line, end + 1) if n in problems]
        if bad:
            yield line, RowError(line, "", bad[0])
        elif not cells or (len(cells) == 1 and not cells[0].strip()):
            continue
        elif len(cells) > len(header):
            yield line, RowError(line, "", f"{len(cells)} cells, but the header names {len(header)} columns")
        else:
            yield line, dict(zip(header, cells, strict=False))


# --- Runs -----------------------------------------------------------------------------------------------------


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


class _ItemRun(_Run):
    def __init__(self, project: Project, *, update: bool, apply: bool, progress: Progress | None) -> None:
        super().__init__(ImportJob.Kind.ITEMS, apply=apply, progress=progress)
        self.project = project
        self.update = update
        self.batch: list[ItemRow] = []
        # A project without items has nothing to compare with; under the write lock nobody can add any meanwhile.
        self.empty_at_start = False
        self.copy_stack: contextlib.ExitStack | None = None
        self.copy: Any = None

    def feed(self, checker: ItemChecker, line: int, row: dict[str, Any] | RowError) -> None:
        if isinstance(row, RowError):
            self.count_row()
            self.error(row)
            return
        self.count_row()
        checked = checker.check(line, row)
        if isinstance(checked, list):
            for problem in checked:
                self.error(problem)
            return
        external_id = checked.external_id
        first = self.duplicate_of(external_id, line)
        if first is not None:
            if external_id == checked.content_hash:  # no external_id given: the content is the id
                message = f"the same content as line {first} (without an external_id, the content is the id)"
            else:
                message = f"duplicate id {external_id!r} in this file (first on line {first})"
            self.error(RowError(line, "external_id", message))
            return
        if not self.n_errors:
            self.batch.append(checked)
            if len(self.batch) >= BATCH:
                self.flush()

    def flush(self) -> None:
        batch, self.batch = self.batch, []
        if not batch or self.n_errors:
            return
        existing = self._existing([row.external_id for row in batch])
        new: list[ItemRow] = []
        changed: list[Item] = []
        for row in batch:
            found = existing.get(row.external_id)
            if found is None:
                status = "new"
                new.append(row)
            elif found[0] == row.content_hash:
                status = "unchanged"
                self.report.n_unchanged += 1
            else:
                status = "conflict"
                self.conflict({"line": row.line, "external_id": row.external_id})
                if self.update:
                    item = row.as_item(self.project)
                    item.pk = found[1]
                    changed.append(item)
            if len(self.report.preview) < PREVIEW_ROWS:
                self.report.preview.append(
                    {
                        "line": row.line,
                        "status": status,
                        "external_id": row.external_id,
                        "fields": {name: _short(text) for name, text in row.content.items()},
                    }
                )
        self.report.n_new += len(new)
        if self.update:
            self.report.n_updated += len(changed)
        if self.apply:
            self._insert(new)
            if changed:
                Item.objects.bulk_update(changed, [*_content_fields(self.project), "content_hash", "metadata"], 1000)
                self.report.n_labels_kept += Label.objects.filter(item_id__in=[i.pk for i in changed]).count()

    def _existing(self, external_ids: list[str]) -> dict[str, tuple[str, int]]:
        """external_id -> (content hash, pk) of the batch's ids that the project already has."""
        if self.empty_at_start:
            return {}
        if connection.vendor == "postgresql":
            # One array parameter instead of 5,000 placeholders: cheaper to build, send and plan.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT external_id, content_hash, id FROM annotate_item WHERE project_id = %s "
                    "AND external_id = ANY(%s)",
                    [self.project.pk, external_ids],
                )
                rows = cursor.fetchall()
        else:
            rows = list(
                Item.objects.filter(project=self.project, external_id__in=external_ids).values_list(
                    "external_id", "content_hash", "pk"
                )
            )
        return {external_id: (digest, pk) for external_id, digest, pk in rows}

    def _insert(self, rows: list[ItemRow]) -> None:
        """Insert new items. They join the queue as the counters say: nobody has submitted or leased them yet."""
        if not rows:
            return
        if connection.vendor != "postgresql":
            Item.objects.bulk_create([row.as_item(self.project) for row in rows], batch_size=500)
            return
        if self.copy is None:
            # A thread hands the rows to the server while this one parses the next ones. Into a project that had
            # no items the COPY stays open for the whole file (no look-ups need the connection meanwhile).
            self.copy_stack = contextlib.ExitStack()
            cursor = _psycopg_cursor(self.copy_stack.enter_context(connection.cursor()))
            self.copy = self.copy_stack.enter_context(
                cursor.copy(f"COPY annotate_item ({_ITEM_COLUMNS}) FROM STDIN", writer=QueuedLibpqWriter(cursor))
            )
        now = timezone.now()
        pk = self.project.pk
        write_row = self.copy.write_row
        for row in rows:
            content = row.content
            write_row(
                (
                    pk,
                    row.external_id,
                    content["input"],
                    content.get("output", ""),
                    content.get("output_a", ""),
                    content.get("output_b", ""),
                    row.metadata_json,
                    row.source,
                    row.split,
                    row.content_hash,
                    row.order_key,
                    0,
                    0,
                    0,
                    None,
                    now,
                )
            )
        if not self.empty_at_start:
            self.copy_end()

    def copy_end(self, *exc_info: Any) -> None:
        """Finish the open COPY (or abort it, given an exception)."""
        stack, self.copy_stack, self.copy = self.copy_stack, None, None
        if stack is not None:
            stack.__exit__(*(exc_info or (None, None, None)))

    def __enter__(self) -> _ItemRun:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.copy_end(*exc_info)


def _psycopg_cursor(cursor: Any) -> psycopg.Cursor[Any]:
    """The psycopg cursor under Django's cursor wrapper(s), for what only psycopg offers (a COPY with its own writer).

    Which wrapper Django hands out depends on the settings: with DEBUG (or `force_debug_cursor`) it is a
    CursorDebugWrapper, whose `copy()` logs the statement and takes no other argument. So psycopg's API is called on
    psycopg's cursor, whatever wraps it.
    """
    raw = cursor
    while not isinstance(raw, psycopg.Cursor):
        raw = getattr(raw, "cursor", None)
        if raw is None:
            raise TypeError(f"no psycopg cursor under {type(cursor).__name__}")
    return raw


def _content_fields(project: Project) -> tuple[str, ...]:
    return ("input", "output_a", "output_b") if project.is_pairwise else ("input", "output")


_ITEM_COLUMNS = (
    "project_id, external_id, input, output, output_a, output_b, metadata, source, split, content_hash, order_key, "
    "n_submitted, n_leased, priority, sampled_on, created_at"
)


def items_import(
    *,
    project: Project,
    rows: Iterable[tuple[int, dict[str, Any] | RowError]],
    tabular: bool = False,
    source: str = Item.Source.IMPORT,
    update: bool = False,
    apply: bool = True,
    progress: Progress | None = None,
    position: Callable[[], float] | None = None,
) -> ImportReport:
    """Check, compare and (with `apply`) write items from `rows`, all or nothing. Idempotent.

    Raises ImportInvalid (every bad row, nothing written) or ImportRefused. An item whose external_id exists with
    other content is a conflict: reported and left alone, or with `update` given the new content (its labels stay).
    A CSV row set (`tabular`) starts with its header: {"__header__": [...]}.
    """
    with transaction.atomic(), _ItemRun(project, update=update, apply=apply, progress=progress) as run:
        if apply:
            lock_project_writes(project)
        run.empty_at_start = apply and not Item.objects.filter(project=project).exists()
        every = _ProgressEvery(progress, position)
        checker: ItemChecker | None = None
        for line, row in rows:
            if checker is None:
                header = row.get("__header__") if tabular and isinstance(row, dict) else None
                checker = ItemChecker(project, tabular=tabular, source=source, header=header)
                if checker.header_errors:
                    raise ImportInvalid(checker.header_errors, len(checker.header_errors))
                if header is not None:
                    continue
            run.feed(checker, line, row)
            every.row(run.report.n_rows)
        run.flush()
        run.copy_end()
        report = run.finish()
        if apply and report.n_new >= _ANALYZE_AFTER and connection.vendor == "postgresql":
            transaction.on_commit(_items_analyze)
    if progress is not None:
        progress(1.0, report.n_rows)
    return report


# After this many new rows, refresh the planner's statistics: with the old ones, PostgreSQL takes a large project
# for a small one and looks ids up by scanning all its items (80 ms instead of 6 ms per batch of 5,000).
_ANALYZE_AFTER = 10_000


# Only the columns queries filter or sort on: the statistics of the long text columns (input, outputs, metadata) are
# never used, and gathering them read every sampled row's text back (most of this ANALYZE's time).
_ANALYZE_COLUMNS = "project_id, external_id, split, n_submitted, priority, order_key, sampled_on, content_hash"


def _items_analyze() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE annotate_item ({_ANALYZE_COLUMNS})")


# --- Labels ---------------------------------------------------------------------------------------------------


class _LabelRow(NamedTuple):
    line: int
    external_id: str
    annotator: str
    criterion_id: int
    criterion_key: str
    value: str
    note: str
    created_at: dt.datetime | None


_LABEL_FIELDS = ("external_id", "annotator", "criterion", "value", "note", "created_at")
_LABEL_REQUIRED = ("external_id", "annotator", "criterion", "value")


class _LabelChecker:
    def __init__(self, project: Project, *, tabular: bool, header: list[str] | None = None) -> None:
        self.project = project
        self.tabular = tabular
        self.criteria = {c.key: c for c in selectors.criteria_of_version(project.current_rubric_id)}
        self.allowed = Label.PAIRWISE_VALUES if project.is_pairwise else Label.BINARY_VALUES
        if project.is_pairwise and not project.allow_tie:
            self.allowed = self.allowed - {Label.Value.TIE}
        self.header_errors: list[RowError] = []
        if header is not None:
            self.header_errors = [RowError(1, n, "missing column") for n in _LABEL_REQUIRED if n not in header]
            self.header_errors += [RowError(1, n, "unknown column") for n in header if n not in _LABEL_FIELDS]

    def check(self, line: int, row: dict[str, Any]) -> _LabelRow | list[RowError]:
        errors = [RowError(line, name, "unknown field") for name in sorted(row) if name not in _LABEL_FIELDS]
        for name in _LABEL_REQUIRED:
            if row.get(name) in (None, ""):
                errors.append(RowError(line, name, "missing field"))
        external_id, problem = external_id_checked(row.get("external_id"))
        if problem:
            errors.append(RowError(line, "external_id", problem))
        annotator = row.get("annotator")
        if annotator not in (None, "") and (not isinstance(annotator, str) or not _USERNAME.match(annotator.strip())):
            errors.append(RowError(line, "annotator", "must be a username: at most 150 letters, digits and @ . + - _"))
        criterion = row.get("criterion")
        if criterion not in (None, "") and (not isinstance(criterion, str) or criterion.strip() not in self.criteria):
            keys = ", ".join(self.criteria)
            errors.append(RowError(line, "criterion", f"unknown criterion {criterion!r}; this rubric has {keys}"))
        value = row.get("value")
        if value not in (None, "") and (not isinstance(value, str) or value.strip().lower() not in self.allowed):
            choices = ", ".join(sorted(self.allowed))
            errors.append(RowError(line, "value", f"{value!r} is not a {self.project.kind} label; use {choices}"))
        note = row.get("note") or ""
        if not isinstance(note, str):
            errors.append(RowError(line, "note", f"wrong type: expected text, got {type_name(note)}"))
        elif len(note) > MAX_NOTE_CHARS:
            errors.append(RowError(line, "note", f"too long: {len(note):,} characters (at most {MAX_NOTE_CHARS:,})"))
        elif problem := text_problem(note):
            errors.append(RowError(line, "note", problem))
        created_at = None
        raw_when = row.get("created_at")
        if raw_when not in (None, ""):
            try:
                created_at = dt.datetime.fromisoformat(str(raw_when).strip()) if isinstance(raw_when, str) else None
            except ValueError:
                created_at = None
            if created_at is None:
                errors.append(
                    RowError(line, "created_at", "must be an ISO 8601 date and time, e.g. 2025-05-19T13:11:45Z")
                )
            elif timezone.is_naive(created_at):
                created_at = created_at.replace(tzinfo=dt.UTC)  # a time without a zone is taken as UTC
        if errors:
            return errors
        key = str(criterion).strip()
        return _LabelRow(
            line=line,
            external_id=external_id,
            annotator=str(annotator).strip(),
            criterion_id=self.criteria[key].pk,
            criterion_key=key,
            value=str(value).strip().lower(),
            note=note.strip(),
            created_at=created_at,
        )


class _LabelRun(_Run):
    def __init__(self, project: Project, *, update: bool, apply: bool, progress: Progress | None) -> None:
        super().__init__(ImportJob.Kind.LABELS, apply=apply, progress=progress)
        self.project = project
        self.update = update
        self.batch: list[_LabelRow] = []
        self.version_id: int = project.current_rubric_id or 0  # labels_import refuses a project without rubric
        # annotator name -> user id; None: to be created as this project's imported identity; -1: refused (too long)
        self.users: dict[str, int | None] = {}
        self.too_long: dict[str, int] = {}  # refused name -> the longest name an imported identity can have here
        self.written = False

    def feed(self, checker: _LabelChecker, line: int, row: dict[str, Any] | RowError) -> None:
        self.count_row()
        if isinstance(row, RowError):
            self.error(row)
            return
        checked = checker.check(line, row)
        if isinstance(checked, list):
            for problem in checked:
                self.error(problem)
            return
        key = (checked.external_id, checked.annotator, checked.criterion_key)
        first = self.duplicate_of(key, line)
        if first is not None:
            self.error(
                RowError(line, "", f"duplicate label for this item, annotator and criterion (first on line {first})")
            )
            return
        self.batch.append(checked)
        if len(self.batch) >= 2000:
            self.flush()

    def _resolve_users(self, names: set[str]) -> None:
        """Look the annotators up once. Whether a name exists outside this project never changes the outcome:

        - a name this project imported before is that same imported identity (so a re-import changes nothing);
        - else a member of this project is themselves;
        - any other name (staff, another project's member or imported name, a name nobody has) is this project's own
          imported identity, `imported:<project id>:<name>`, created when the import is applied. Such a username
          cannot be a real account's, so no label ever lands on an account outside the project.
        """
        wanted = names - self.users.keys()
        if not wanted:
            return
        pid = self.project.pk
        scoped = {imported_username(pid, name): name for name in wanted}
        members = Membership.objects.filter(project=self.project, user=OuterRef("pk"))
        imported_here = ImportedUser.objects.filter(user=OuterRef("pk"), project=self.project)
        found = (
            User.objects.filter(username__in=[*wanted, *scoped])
            .annotate(member=Exists(members), imp=Exists(imported_here))
            .values_list("username", "pk", "member", "imp")
        )
        mine: dict[str, int] = {}  # this project's imported identities, under their readable names
        member_ids: dict[str, int] = {}
        for username, pk, member, imp in found:
            if imp:
                # An identity of this project: namespaced, or a plain name an import created before namespacing.
                mine[scoped.get(username, username)] = pk
            elif member and username in wanted:
                member_ids[username] = pk
        limit = USERNAME_MAX_LENGTH - len(imported_username(pid, ""))
        for name in sorted(wanted):
            if name in mine:
                self.users[name] = mine[name]
            elif name in member_ids:
                self.users[name] = member_ids[name]
            elif len(name) > limit:
                self.users[name] = -1
                self.too_long[name] = limit
            else:
                self.users[name] = None
                self.report.users_created.append(name)

    def flush(self) -> None:
        batch, self.batch = self.batch, []
        if not batch:
            return
        items = dict(
            Item.objects.filter(project=self.project, external_id__in={r.external_id for r in batch}).values_list(
                "external_id", "pk"
            )
        )
        self._resolve_users({r.annotator for r in batch})
        good: list[_LabelRow] = []
        for row in batch:
            if row.external_id not in items:
                self.error(RowError(row.line, "external_id", f"no item {row.external_id!r} in this project"))
            elif self.users[row.annotator] == -1:
                self.error(
                    RowError(
                        row.line,
                        "annotator",
                        f"a name that is not a member of this project can be at most {self.too_long[row.annotator]} "
                        "characters long here",
                    )
                )
            else:
                good.append(row)
        if self.n_errors:
            return
        if self.apply:
            self._create_users()
        user_ids = {name: pk for name, pk in self.users.items() if pk is not None and pk > 0}
        existing: dict[tuple[int, int, int], Label] = {}
        for found in Label.objects.filter(
            item_id__in=[items[r.external_id] for r in good],
            rubric_version_id=self.version_id,
            annotator_id__in=[user_ids[r.annotator] for r in good if r.annotator in user_ids],
        ).only("id", "item_id", "annotator_id", "criterion_id", "value", "note", "revision"):
            existing[(found.item_id, found.annotator_id, found.criterion_id)] = found
        new: list[Label] = []
        changed: list[Label] = []
        now = timezone.now()
        for row in good:
            item_id = items[row.external_id]
            annotator_id = user_ids.get(row.annotator)
            label = existing.get((item_id, annotator_id, row.criterion_id)) if annotator_id else None
            if label is None:
                status = "new"
                new.append(
                    Label(
                        item_id=item_id,
                        criterion_id=row.criterion_id,
                        rubric_version_id=self.version_id,
                        # Unknown names have an id only once created, which a preview never does.
                        annotator_id=annotator_id or 0,
                        value=row.value,
                        note=row.note,
                        # The check constraint wants a display order on every pairwise label. Nobody saw an imported
                        # label's sides; "ab" (A on the left) is the canonical order, and values are canonical anyway.
                        shown_order=Label.Order.AB if self.project.is_pairwise else None,
                        created_at=row.created_at or now,
                    )
                )
            elif label.value == row.value and label.note == row.note:
                status = "unchanged"
                self.report.n_unchanged += 1
            else:
                status = "conflict"
                self.conflict(
                    {
                        "line": row.line,
                        "external_id": row.external_id,
                        "annotator": row.annotator,
                        "criterion": row.criterion_key,
                        "was": label.value,
                        "now": row.value,
                    }
                )
                if self.update:
                    label.value, label.note, label.revision, label.updated_at = (
                        row.value,
                        row.note,
                        label.revision + 1,
                        now,
                    )
                    changed.append(label)
            if len(self.report.preview) < PREVIEW_ROWS:
                self.report.preview.append(
                    {
                        "line": row.line,
                        "status": status,
                        "external_id": row.external_id,
                        "annotator": row.annotator,
                        "criterion": row.criterion_key,
                        "value": row.value,
                    }
                )
        self.report.n_new += len(new)
        if self.update:
            self.report.n_updated += len(changed)
        if self.apply and (new or changed):
            Label.objects.bulk_create(new, batch_size=1000)
            Label.objects.bulk_update(changed, ["value", "note", "revision", "updated_at"], batch_size=1000)
            self.written = True

    def _create_users(self) -> None:
        names = {imported_username(self.project.pk, name): name for name, pk in self.users.items() if pk is None}
        if not names:
            return
        users = []
        for username in names:
            user = User(username=username, is_active=False)
            user.set_unusable_password()
            users.append(user)
        User.objects.bulk_create(users, batch_size=500)
        ids = dict(User.objects.filter(username__in=list(names)).values_list("username", "pk"))
        ImportedUser.objects.bulk_create(
            [ImportedUser(user_id=ids[username], project=self.project) for username in names], batch_size=500
        )
        self.users.update({names[username]: pk for username, pk in ids.items()})


def labels_import(
    *,
    project: Project,
    rows: Iterable[tuple[int, dict[str, Any] | RowError]],
    tabular: bool = False,
    update: bool = False,
    apply: bool = True,
    progress: Progress | None = None,
    position: Callable[[], float] | None = None,
) -> ImportReport:
    """Check, compare and (with `apply`) write existing human labels, all or nothing. Idempotent.

    Labels go under the project's current rubric version and count exactly like labels given in the browser;
    annotator names that are not members become this project's own inactive imported users (see `_resolve_users`).
    Afterwards the queue's counters are recomputed.
    """
    if project.current_rubric_id is None:
        raise ImportRefused("This project has no criteria yet, so there is nothing to attach labels to.")
    run = _LabelRun(project, update=update, apply=apply, progress=progress)
    with transaction.atomic():
        if apply:
            lock_project_writes(project)
        every = _ProgressEvery(progress, position)
        checker: _LabelChecker | None = None
        for line, row in rows:
            if checker is None:
                header = row.get("__header__") if tabular and isinstance(row, dict) else None
                checker = _LabelChecker(project, tabular=tabular, header=header)
                if checker.header_errors:
                    raise ImportInvalid(checker.header_errors, len(checker.header_errors))
                if header is not None:
                    continue
            run.feed(checker, line, row)
            every.row(run.report.n_rows)
        run.flush()
        report = run.finish()
        if run.written:
            services.queue_counts_refresh(project=project)
    if progress is not None:
        progress(1.0, report.n_rows)
    return report


def file_import(
    *,
    project: Project,
    kind: str,
    path: Path,
    fmt: str | None = None,
    update: bool = False,
    apply: bool = True,
    progress: Progress | None = None,
) -> ImportReport:
    """Import an item or label file (what the command, the browser job and the API share). See items_import."""
    size = path.stat().st_size
    limit = int(settings.IMPORT_MAX_FILE_BYTES)
    if size > limit:
        raise ImportRefused(f"The file is too large: {size:,} bytes (at most {limit:,}).", status=413)
    with path.open("rb") as stream:
        head = stream.read(SNIFF_BYTES)
        if problem := content_problem(head):
            raise ImportRefused(problem, status=415)
        fmt = fmt or format_detect(path.name, head)
        stream.seek(0)
        rows = rows_read(stream, fmt=fmt)

        def position() -> float:
            return stream.tell() / size if size else 1.0

        if kind == ImportJob.Kind.ITEMS:
            return items_import(
                project=project,
                rows=rows,
                tabular=fmt == "csv",
                update=update,
                apply=apply,
                progress=progress,
                position=position,
            )
        return labels_import(
            project=project,
            rows=rows,
            tabular=fmt == "csv",
            update=update,
            apply=apply,
            progress=progress,
            position=position,
        )


# --- Import jobs (the browser's upload, preview and confirm) ---------------------------------------------------


# A full disk, a full quota, a file larger than the process may write.
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _upload_dir() -> Path:
    path = Path(settings.IMPORT_UPLOAD_DIR)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def import_job_path(job: ImportJob) -> Path:
    return _upload_dir() / job.stored_name


def import_job_create(*, project: Project, actor: Any, kind: str, upload: UploadedFile, fmt: str = "") -> ImportJob:
    """Store an uploaded file under a random name (never served) and open a job for it. Raises ImportRefused."""
    limit = int(settings.IMPORT_MAX_FILE_BYTES)
    size = upload.size or 0
    if size > limit:
        raise ImportRefused(f"The file is too large: {size:,} bytes (at most {limit:,}).", status=413)
    if not size:
        raise ImportRefused("The file is empty.")
    if kind not in ImportJob.Kind.values:
        raise ImportRefused(f"Unknown import kind {kind!r}.")
    head = next(upload.chunks(SNIFF_BYTES), b"")
    if problem := content_problem(head):
        raise ImportRefused(problem, status=415)
    fmt = fmt or format_detect(upload.name or "", head)
    stored_name = f"{secrets.token_hex(16)}.{fmt}"
    path = _upload_dir() / stored_name
    try:
        with path.open("xb") as out:
            path.chmod(0o600)
            for chunk in upload.chunks():
                out.write(chunk)
        return ImportJob.objects.create(
            project=project,
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
            kind=kind,
            filename=Path(upload.name or "upload").name[:255],
            stored_name=stored_name,
            size_bytes=size,
            file_format=fmt,
        )
    except BaseException as exc:
        # Nothing refers to a file without its job (the expiry sweep goes by jobs): never leave a partial one.
        path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
            log.error("import upload refused: %s has no room (%s)", path.parent, exc)
            raise ImportRefused(
                "The server has no room to store this file right now; nothing was stored. Try again later, or ask "
                "an administrator to free space in the upload folder.",
                status=507,
            ) from None
        raise


def import_job_runs_inline(job: ImportJob) -> bool:
    """Small files are checked and imported within the request; larger ones by the worker, with a progress bar."""
    return job.size_bytes <= int(settings.IMPORT_SYNC_MAX_BYTES)


def import_job_start_preview(*, job: ImportJob) -> None:
    if import_job_runs_inline(job):
        import_job_preview(job_id=job.pk)
    else:
        from annotate import tasks

        # robust: with the broker down the job stays pending and import_jobs_reconcile sends it when it is back.
        transaction.on_commit(lambda: tasks.import_job_preview.delay(job.pk), robust=True)


def import_job_confirm(*, job: ImportJob, update: bool) -> bool:
    """The lead confirms a checked file. False when the job is not waiting for confirmation (double submit)."""
    claimed = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.PREVIEWED).update(
        status=ImportJob.Status.QUEUED, update_conflicts=update
    )
    if not claimed:
        return False
    if import_job_runs_inline(job):
        import_job_apply(job_id=job.pk)
    else:
        from annotate import tasks

        # robust: with the broker down the job stays queued and import_jobs_reconcile sends it when it is back.
        transaction.on_commit(lambda: tasks.import_job_apply.delay(job.pk), robust=True)
    return True


def _progress_key(job_id: int) -> str:
    return f"import-job-progress:{job_id}"


def import_job_progress(job: ImportJob) -> dict[str, Any]:
    """How far a running job is: {"percent": 0-100, "rows": n}. Kept in the cache, since the run's own writes are
    invisible to the page until its transaction commits. Without the cache (Redis down) the page shows 0%."""
    try:
        return cache.get(_progress_key(job.pk)) or {"percent": 0, "rows": 0}
    except Exception:
        log.warning("import job %s: the cache is unavailable, progress not shown", job.pk, exc_info=True)
        return {"percent": 0, "rows": 0}


@contextlib.contextmanager
def _job_lock(job_id: int) -> Iterator[bool]:
    """Hold the job's advisory lock while working on it; yields False when another live session holds it."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_JOB_LOCK_NAMESPACE, job_id])
        held = bool(cursor.fetchone()[0])
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_JOB_LOCK_NAMESPACE, job_id])


def _claim(job_id: int, waiting: str, running: str) -> ImportJob | None:
    """Claim a job for this worker. Call holding _job_lock: then a job still marked running has no live worker (its
    worker died with the lock), and is taken over."""
    now = timezone.now()
    if connection.vendor == "postgresql":
        orphaned = Q(status=running)
    else:
        orphaned = Q(status=running, started_at__lt=now - _STALE_AFTER)
    claimed = ImportJob.objects.filter(Q(status=waiting) | orphaned, pk=job_id).update(status=running, started_at=now)
    return ImportJob.objects.select_related("project").get(pk=job_id) if claimed else None


def _cache_quietly(action: Callable[[], object]) -> None:
    # Progress in the cache is a convenience: a cache outage must not fail the import itself.
    try:
        action()
    except Exception:
        log.warning("import progress not written: the cache is unavailable", exc_info=True)


def _job_run(job: ImportJob, *, apply: bool) -> None:
    def progress(fraction: float, rows: int) -> None:
        value = {"percent": round(100 * fraction), "rows": rows}
        _cache_quietly(lambda: cache.set(_progress_key(job.pk), value, 3600))

    done = ImportJob.Status.DONE if apply else ImportJob.Status.PREVIEWED
    fields: dict[str, Any] = {}
    try:
        report = file_import(
            project=job.project,
            kind=job.kind,
            path=import_job_path(job),
            fmt=job.file_format,
            update=job.update_conflicts,
            apply=apply,
            progress=progress,
        )
    except ImportInvalid as exc:
        fields.update(status=ImportJob.Status.INVALID, n_errors=exc.n_errors, errors=[asdict(e) for e in exc.errors])
    except ImportRefused as exc:
        fields.update(status=ImportJob.Status.FAILED, message=exc.message)
    except Exception:
        log.exception("import job %s failed", job.pk)
        fields.update(status=ImportJob.Status.FAILED, message="An unexpected error stopped the import.")
    else:
        fields.update(status=done, report=report.as_dict())
    fields["finished_at"] = timezone.now()  # when the work ended, not when it began (started_at says that)
    ImportJob.objects.filter(pk=job.pk).update(**fields)
    if fields["status"] != ImportJob.Status.PREVIEWED:
        import_job_path(job).unlink(missing_ok=True)
    _cache_quietly(lambda: cache.delete(_progress_key(job.pk)))


def import_job_preview(*, job_id: int) -> None:
    """Check the file and compare it with the project, writing nothing. Safe to run twice (claims the job)."""
    with _job_lock(job_id) as held:
        job = _claim(job_id, ImportJob.Status.PENDING, ImportJob.Status.PREVIEWING) if held else None
        if job is not None:
            _job_run(job, apply=False)


def import_job_apply(*, job_id: int) -> None:
    """Import the confirmed file, all or nothing. Safe to run twice (claims the job; the import is idempotent)."""
    with _job_lock(job_id) as held:
        job = _claim(job_id, ImportJob.Status.QUEUED, ImportJob.Status.APPLYING) if held else None
        if job is not None:
            _job_run(job, apply=True)


def import_jobs_reconcile(*, now: dt.datetime | None = None, wait_seconds: int | None = None) -> int:
    """Send again each job that no worker is on (beat runs this every IMPORT_RECONCILE_SECONDS); return how many.

    A job marked checking or importing whose advisory lock is free lost its worker (killed mid-run: its transaction
    rolled back, nothing was written). A job waiting longer than `wait_seconds` for a worker may have lost its message
    (the broker was down when it was sent). A message too many is harmless: the task claims the job or does nothing.
    """
    now = now or timezone.now()
    wait = dt.timedelta(seconds=int(settings.IMPORT_RECONCILE_SECONDS if wait_seconds is None else wait_seconds))
    from annotate import tasks

    sent = 0
    running = {
        str(ImportJob.Status.PREVIEWING): tasks.import_job_preview,
        str(ImportJob.Status.APPLYING): tasks.import_job_apply,
    }
    waiting = {
        str(ImportJob.Status.PENDING): tasks.import_job_preview,
        str(ImportJob.Status.QUEUED): tasks.import_job_apply,
    }
    jobs = ImportJob.objects.filter(status__in=[*running, *waiting]).values_list("pk", "status", "created_at")
    for job_id, status, created_at in jobs:
        if status in running:
            if connection.vendor != "postgresql":
                continue  # the claim's own staleness rule (_STALE_AFTER) applies
            with _job_lock(job_id) as free:
                if not free:
                    continue  # a live worker holds it
        elif created_at >= now - wait:
            continue  # its message is most likely still on its way
        # At most one message per job per period, however long the workers take to get to it.
        if not cache.add(f"import-job-resent:{job_id}", 1, max(1, int(wait.total_seconds()))):
            continue
        (running | waiting)[status].delay(job_id)
        log.warning("import job %s (%s) had no worker: sent again", job_id, status)
        sent += 1
    return sent


def import_uploads_expire(*, now: dt.datetime | None = None) -> int:
    """Delete uploads nobody confirmed (or no worker picked up) within IMPORT_UPLOAD_TTL_SECONDS."""
    cutoff = (now or timezone.now()) - dt.timedelta(seconds=int(settings.IMPORT_UPLOAD_TTL_SECONDS))
    waiting = [ImportJob.Status.PREVIEWED, ImportJob.Status.PENDING]
    jobs = list(ImportJob.objects.filter(status__in=waiting, created_at__lt=cutoff))
    expired = 0
    for job in jobs:
        if ImportJob.objects.filter(pk=job.pk, status=job.status).update(status=ImportJob.Status.EXPIRED):
            import_job_path(job).unlink(missing_ok=True)
            expired += 1
    return expired


def api_rows(entries: Iterable[Any]) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """An API batch as rows: position i is the entry's index, so errors read `items.i.field`."""
    for i, entry in enumerate(entries):
        yield i, entry.model_dump(mode="json", exclude_none=True) if hasattr(entry, "model_dump") else dict(entry)
