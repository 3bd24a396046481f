"""Label runs: label rows checked (annotator, criterion, value, note), compared with the project's labels, written."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from annotate import selectors
from annotate.guards import text_problem
from annotate.imports.checking import (
    RowError,
    external_id_checked,
    type_name,
)
from annotate.imports.report import ImportInvalid, ImportRefused, ImportReport, Progress, _ProgressEvery
from annotate.imports.runs import PREVIEW_ROWS, _Run, lock_project_writes
from annotate.models import ImportedUser, ImportJob, Item, Label, Membership, Project, imported_username
from annotate.services.leases import queue_counts_refresh

User = get_user_model()
USERNAME_MAX_LENGTH: int = User._meta.get_field("username").max_length or 150
MAX_NOTE_CHARS = 10_000  # as for a note written in the browser (services.label_submit)
_USERNAME = re.compile(r"^[\w.@+-]{1,150}\Z")


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
            queue_counts_refresh(project=project)
    if progress is not None:
        progress(1.0, report.n_rows)
    return report
