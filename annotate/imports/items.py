"""Item runs: checked item rows compared with the project's items in batches and written (COPY on PostgreSQL)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import psycopg
from django.db import connection, transaction
from django.utils import timezone
from psycopg.copy import QueuedLibpqWriter
from psycopg.types.json import Jsonb

from annotate.imports.checking import (
    ItemChecker,
    ItemRow,
    RowError,
    external_id_checked,
)
from annotate.imports.report import ImportInvalid, ImportReport, Progress, _ProgressEvery
from annotate.imports.runs import PREVIEW_ROWS, _Run, _short, lock_project_writes
from annotate.models import ImportJob, Item, Label, Project

# Rows compared at once when nothing needs looking up (a first import, an API batch whose ids were looked up first):
# few enough that the server stores them while the next ones are checked.
_READY = 500

# Rows compared with the project's items per look-up. Into a project that has items, each batch's COPY stays open
# while the next batch is checked and ends only when the connection is needed again (its look-up, or the end).
# Not fewer: for a project the statistics do not know yet (a new one filled by API batches), PostgreSQL plans the
# look-up as a scan of all the project's items, so each look-up costs as much as the project is large.
BATCH = 5000


class _ItemRun(_Run):
    def __init__(self, project: Project, *, update: bool, apply: bool, progress: Progress | None) -> None:
        super().__init__(ImportJob.Kind.ITEMS, apply=apply, progress=progress)
        self.project = project
        self.update = update
        self.batch: list[ItemRow] = []
        # A project without items has nothing to compare with; under the write lock nobody can add any meanwhile.
        self.empty_at_start = False
        # Ids looked up before their rows were checked (an API batch: look_up_first), and what the project had of
        # them. A row with such an id is compared and written as soon as it is checked, not a batch later.
        self.looked_up: set[str] = set()
        self.found_first: dict[str, tuple[str, int]] = {}
        self.ready: list[ItemRow] = []
        # The lines of the first PREVIEW_ROWS rows that reach the comparison: rows looked up first are compared
        # before rows fed earlier that are not, and the preview stays the file's first rows all the same.
        self.preview_lines: set[int] = set()
        self.copy_stack: contextlib.ExitStack | None = None
        self.copy: Any = None

    def look_up_first(self, external_ids: Iterable[str]) -> None:
        """Look these ids up now, before their rows are checked. Call before feeding any row."""
        self.looked_up = set(external_ids)
        if self.looked_up and not self.empty_at_start:
            self.found_first = self._existing(list(self.looked_up))

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
            if len(self.preview_lines) < PREVIEW_ROWS:
                self.preview_lines.add(line)
            if self.empty_at_start or external_id in self.looked_up:
                # Nothing to look up: compared now, and written while the next rows are checked.
                self.ready.append(checked)
                if len(self.ready) >= _READY:
                    self._compare(self.ready, self.found_first)
                    self.ready = []
                return
            self.batch.append(checked)
            if len(self.batch) >= BATCH:
                self.flush()

    def flush(self) -> None:
        """Compare and write the rows fed so far."""
        ready, self.ready = self.ready, []
        batch, self.batch = self.batch, []
        if self.n_errors:
            return
        if ready:
            self._compare(ready, self.found_first)
        if not batch:
            return
        self.copy_end()  # the last batch's COPY: the look-up needs the connection
        self._compare(batch, self._existing([row.external_id for row in batch]))

    def _compare(self, batch: list[ItemRow], existing: dict[str, tuple[str, int]]) -> None:
        """Sort checked rows into new, unchanged and conflicting by what the project has (`existing`), and write."""
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
            if row.line in self.preview_lines:
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
                self.copy_end()
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
            # no items the COPY stays open for the whole file (no look-ups need the connection meanwhile); else until
            # the next batch's look-up (flush).
            self.copy_stack = contextlib.ExitStack()
            cursor = _psycopg_cursor(self.copy_stack.enter_context(connection.cursor()))
            self.copy = self.copy_stack.enter_context(
                cursor.copy(
                    f"COPY annotate_item ({_ITEM_COLUMNS}) FROM STDIN (FORMAT BINARY)",
                    writer=QueuedLibpqWriter(cursor),
                )
            )
            self.copy.set_types(_ITEM_TYPES)
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
                    Jsonb(row.metadata_json, _as_is),
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
# The binary COPY format: texts go as their UTF-8 bytes, where the text format escaped and the server unescaped them
# (about 1.3 µs less per row here and 1 µs less in the server, of 4.6 and 6.6). Each value in its column's type.
_ITEM_TYPES = (
    "int8",
    "varchar",
    "text",
    "text",
    "text",
    "text",
    "jsonb",
    "varchar",
    "varchar",
    "varchar",
    "int8",
    "int2",
    "int2",
    "int2",
    "date",
    "timestamptz",
)


def _as_is(text: str) -> str:
    """Metadata's JSON text, already made by the row check: the jsonb dumper sends it as it is."""
    return text


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
    look_up_first: bool = False,
) -> ImportReport:
    """Check, compare and (with `apply`) write items from `rows`, all or nothing. Idempotent.

    Raises ImportInvalid (every bad row, nothing written) or ImportRefused. An item whose external_id exists with
    other content is a conflict: reported and left alone, or with `update` given the new content (its labels stay).
    A CSV row set (`tabular`) starts with its header: {"__header__": [...]}.

    `look_up_first`: `rows` is a list (an API batch, in memory) whose ids are looked up before any row is checked,
    so that each row is written as soon as it is checked, while the server stores the rows before it (else an API
    batch would be checked whole, then looked up, then written, with the server idle until the end).
    """
    with transaction.atomic(), _ItemRun(project, update=update, apply=apply, progress=progress) as run:
        if apply:
            lock_project_writes(project)
        run.empty_at_start = apply and not Item.objects.filter(project=project).exists()
        postgresql = connection.vendor == "postgresql"
        planned = _planned_items(project) if apply and postgresql and not run.empty_at_start else 0
        if look_up_first:
            rows = list(rows)
            run.look_up_first(_given_ids(rows))
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
        report.preview.sort(key=lambda entry: entry["line"])
        report.conflicts.sort(key=lambda entry: entry["line"])
        if apply and report.n_new and postgresql and _statistics_stale(report.n_new, planned):
            transaction.on_commit(_items_analyze)
    if progress is not None:
        progress(1.0, report.n_rows)
    return report


def _given_ids(rows: Iterable[tuple[int, dict[str, Any] | RowError]]) -> Iterator[str]:
    """The ids that rows give as their external_id, as the checks will read them (a row without one has its content
    hash as its id, known only once checked; a bad one is an error anyway)."""
    for _line, row in rows:
        if isinstance(row, dict):
            external_id, problem = external_id_checked(row.get("external_id"))
            if external_id and not problem:
                yield external_id


# After this many new rows, refresh the planner's statistics: with the old ones, PostgreSQL takes a large project
# for a small one and looks ids up by scanning all its items (80 ms instead of 6 ms per batch of 5,000).
_ANALYZE_AFTER = 10_000


def _planned_items(project: Project) -> int:
    """How many items PostgreSQL's planner believes the project has (its estimate, from the statistics).

    Asked before the import writes: the planner scales its estimates by the table's current size, which the import's
    own rows would grow."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) SELECT 1 FROM annotate_item WHERE project_id = %s", [project.pk])
        (plan,) = cursor.fetchone()
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def _statistics_stale(n_new: int, planned: int) -> bool:
    """Whether an import changed the project enough for the planner's statistics to mislead it: many rows, or a
    fifth or more of the project's items as the planner saw them before the import (`planned`: 0 for a project
    that had none). A new project (the statistics do not know it yet) is analyzed after each import until it is
    well known: otherwise its first 2,000 items were claimed through a bitmap scan and a sort of every candidate
    (50 ms a submit), and API batches into it looked ids up by scanning the project.

    The planner's own estimate, not a count: counting even a bounded number of the project's items read each of them
    (their pages hold rows too new for the visibility map), 50 ms per API batch of 5,000 into a growing project. An
    estimate that is too high only delays a refresh that changes no plan (a project taken for larger than it is
    still has its ids looked up through the unique index); one that is too low, as for a new project, refreshes."""
    return n_new >= _ANALYZE_AFTER or n_new * 4 >= planned


# Only the columns queries filter or sort on: the statistics of the long text columns (input, outputs, metadata) are
# never used, and gathering them read every sampled row's text back (most of this ANALYZE's time).
_ANALYZE_COLUMNS = "project_id, external_id, split, n_submitted, priority, order_key, sampled_on, content_hash"


# A sample of 3,000 rows instead of the default 30,000: at 1.4 kB a row, 30,000 sampled rows read nearly every page of a
# 100,000-item table (0.35-0.4 s after each such import, synchronous, in the command's time); 3,000 take 30 ms. What
# these statistics must get right after an import is coarse (the table's size, that external_id is unique, which
# projects are large), and a 3,000-row sample gets it right: the look-ups still use item_external_id_unique (EXPLAIN in
# test_import_analyze). Autovacuum's own ANALYZE, at the default resolution, replaces them when it next runs.
_ANALYZE_STATISTICS_TARGET = 10


def _items_analyze() -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL default_statistics_target = {_ANALYZE_STATISTICS_TARGET}")
        cursor.execute(f"ANALYZE annotate_item ({_ANALYZE_COLUMNS})")
