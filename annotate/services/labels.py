"""Labels: checking a value, a submit from the labeling page (the hottest write), edits, bulk inserts."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User as AuthUser
from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.db.models import F
from django.utils import timezone

from annotate import selectors
from annotate.models import Assignment, Criterion, Item, Label, Project
from annotate.rawsql import columns
from annotate.services.errors import ItemNotNeeded, QueueError
from annotate.services.leases import queue_counts_refresh
from annotate.services.queue import queue_next
from annotate.splits import shown_order


def label_validate_value(*, project: Project, value: str, shown_order: str | None) -> None:
    allowed = Label.PAIRWISE_VALUES if project.is_pairwise else Label.BINARY_VALUES
    if value not in allowed:
        raise ValidationError(f"{value!r} is not a {project.kind} label; use one of {', '.join(sorted(allowed))}.")
    if value == Label.Value.TIE and not project.allow_tie:
        raise ValidationError("This project does not allow ties.")
    if project.is_pairwise and shown_order not in Label.Order.values:
        raise ValidationError("A pairwise label records the order shown (ab or ba).")
    if not project.is_pairwise and shown_order is not None:
        raise ValidationError("A binary label has no display order.")


def labels_bulk_import(*, project: Project, labels: Sequence[Label]) -> int:
    """Insert already-built labels, skipping any (item, criterion, annotator, version) that exists. Idempotent."""
    for label in labels:
        label_validate_value(project=project, value=label.value, shown_order=label.shown_order)
        if label.created_at is None:
            label.created_at = timezone.now()
    before = Label.objects.filter(item__project=project).count()
    Label.objects.bulk_create(labels, ignore_conflicts=True, batch_size=1000)
    created = Label.objects.filter(item__project=project).count() - before
    if created:
        queue_counts_refresh(project=project)
    return created


@dataclass(frozen=True)
class SubmitOutcome:
    item: Item
    duplicate: bool  # True when this exact form had already been saved: nothing was written this time.


def label_values_from_form(
    *, project: Project, criteria: Sequence[Criterion], data: Any, shown: str | None
) -> tuple[dict[str, str], list[str]]:
    """Read one value per criterion from submitted form data; pairwise left/right become canonical a/b.

    Returns (values by criterion key, problems). A problem names the criterion, for the annotator.
    """
    values: dict[str, str] = {}
    problems: list[str] = []
    for criterion in criteria:
        raw = (data.get(f"c-{criterion.key}") or "").strip().lower()
        if not raw:
            problems.append(f"Choose a value for “{criterion.name}”.")
            continue
        if project.is_pairwise:
            sides = {"left": "a", "right": "b"} if shown == Label.Order.AB else {"left": "b", "right": "a"}
            value = sides.get(raw, raw if raw == "tie" else "")
            if value == "tie" and not project.allow_tie:
                value = ""
        else:
            value = raw if raw in Label.BINARY_VALUES else ""
        if not value:
            problems.append(f"“{raw[:20]}” is not a choice for “{criterion.name}”.")
            continue
        values[criterion.key] = value
    return values, problems


def _needs_note(project: Project, values: dict[str, str], shown: str | None) -> bool:
    """A failing binary criterion, or (pairwise) any criterion not a tie, when the project asks for a note."""
    if not project.require_note_on_fail:
        return False
    if project.is_pairwise:
        return any(v in {"a", "b"} for v in values.values())
    return any(v == "fail" for v in values.values())


# The label counts read this item's labels by item id alone, the annotator and the version being FILTERs: statistics
# taken before the annotator or the version had labels cannot then make PostgreSQL read all of theirs (services.queue).
_SUBMIT_LOCK_SQL = """
SELECT {item_columns}, a.state AS my_state, a.expires_at AS my_expiry,
    (SELECT count(*) FILTER (WHERE l.annotator_id = %(user)s AND l.rubric_version_id = %(version)s)
     FROM annotate_label l WHERE l.item_id = i.id) AS my_n,
    (SELECT count(*) FILTER (WHERE l.annotator_id = %(user)s AND l.rubric_version_id = %(version)s
                               AND l.submission_key = %(key)s AND l.submission_key <> '')
     FROM annotate_label l WHERE l.item_id = i.id) AS my_dup,
    (SELECT count(*) FILTER (WHERE l.annotator_id = %(user)s AND l.rubric_version_id = %(version)s
                               AND l.criterion_id IN ({criteria}))
     FROM annotate_label l WHERE l.item_id = i.id) AS my_clash
FROM annotate_item i
LEFT JOIN annotate_assignment a ON a.item_id = i.id AND a.annotator_id = %(user)s
WHERE i.project_id = %(project)s AND i.id = %(item)s
""".replace("{item_columns}", columns(Item, "i"))


def _from_db(model: type[models.Model], field_name: str, value: Any) -> Any:
    """`value`, read by raw SQL under another name than its model field's, converted as the ORM converts that field.

    A raw query converts only the columns of the model it returns; an extra column comes back as the database driver
    hands it over: an aware datetime from PostgreSQL, a naive one (in UTC) from SQLite, which cannot be compared
    with `timezone.now()`. The field's own converters make it the same value on both.
    """
    field = model._meta.get_field(field_name)
    if not isinstance(field, models.Field):
        raise TypeError(f"{model.__name__}.{field_name} is a relation, not a column")
    column = field.get_col(model._meta.db_table)
    for converter in [*connection.ops.get_db_converters(column), *field.get_db_converters(connection)]:
        value = converter(value, column, connection)
    return value


_SUBMIT_WRITE_SQL = """
WITH labels AS (
    INSERT INTO annotate_label (item_id, criterion_id, rubric_version_id, annotator_id, value, note, shown_order,
                                time_spent_ms, revision, submission_key, created_at, updated_at)
    SELECT %(item)s, c.criterion_id, %(version)s, %(user)s, c.value, %(note)s, %(shown)s, %(time)s, 1, %(key)s,
           %(now)s, %(now)s
    FROM unnest(%(criteria)s::bigint[], %(values)s::text[]) AS c(criterion_id, value)
), counts AS (
    UPDATE annotate_item SET n_submitted = n_submitted + %(complete)s, n_leased = n_leased - %(released)s
    WHERE id = %(item)s
)
DELETE FROM annotate_assignment WHERE item_id = %(item)s AND annotator_id = %(user)s
"""


def label_submit(
    *,
    project: Project,
    annotator: AuthUser,
    item_id: int,
    criteria: Sequence[Criterion],
    values: dict[str, str],
    note: str = "",
    time_spent_ms: int | None = None,
    submission_key: str = "",
    _within: bool = False,
) -> SubmitOutcome:
    """Save one annotator's labels for an item, at once: every criterion of the version they have no label on yet
    (all of them, or only the added or redefined ones when their other labels were carried over a rubric change:
    carry.criteria_missing). Idempotent per `submission_key`.

    A repeated submit of the same form (double click, retry after a timeout) is recognised and answered as saved.
    A submit after the lease expired is still saved while the item wants labels; otherwise ItemNotNeeded says so.
    """
    if not criteria:
        raise QueueError("This project has no criteria yet.")
    version_id = criteria[0].rubric_version_id
    missing = [c.name for c in criteria if c.key not in values]
    if missing:
        raise QueueError("Choose a value for " + ", ".join(f"“{m}”" for m in missing) + ".")
    shown = shown_order(annotator.pk, item_id) if project.is_pairwise else None
    for value in values.values():
        try:
            label_validate_value(project=project, value=value, shown_order=shown)
        except ValidationError as exc:
            raise QueueError(" ".join(exc.messages)) from None
    note = note.strip()
    if len(note) > 10_000:
        raise QueueError("The note is too long (at most 10,000 characters).")
    if not note and _needs_note(project, values, shown):
        raise QueueError("This project asks for a note whenever something fails: say why.")
    now = timezone.now()
    # `_within`: label_submit_then_next's transaction holds this one (no savepoint of its own: two statements less).
    with nullcontext() if _within else transaction.atomic():
        # Raw SQL on the hottest path: the ORM's compile time for this query was a fifth of the request.
        lock = " FOR UPDATE OF i" if connection.vendor == "postgresql" else ""
        # The criteria ids are integers from the database, so formatting them into the statement is safe.
        sql = _SUBMIT_LOCK_SQL.replace("{criteria}", ", ".join(str(int(c.pk)) for c in criteria))
        item = next(
            iter(
                Item.objects.raw(
                    sql + lock,
                    {
                        "user": annotator.pk,
                        "version": version_id,
                        "project": project.pk,
                        "item": item_id,
                        "key": submission_key[:64],
                    },
                )
            ),
            None,
        )
        if item is None:
            raise QueueError("That item is not in this project.")
        if item.my_dup:  # type: ignore[attr-defined]
            return SubmitOutcome(item=item, duplicate=True)
        if item.my_clash:  # type: ignore[attr-defined]
            raise QueueError(
                "You have already labeled this item (perhaps in another tab). Open it from your history to change it."
            )
        # The annotator's submission is complete once they have a label on every criterion of the version.
        complete = 1 if item.my_n + len(criteria) >= len(selectors.criteria_of_version(version_id)) else 0  # type: ignore[attr-defined]
        holds_lease = item.my_state == Assignment.State.LEASED  # type: ignore[attr-defined]
        expiry = _from_db(Assignment, "expires_at", item.my_expiry)  # type: ignore[attr-defined]
        live = holds_lease and expiry is not None and expiry > now
        others = item.n_leased - (1 if holds_lease else 0)
        if not live and item.n_submitted + others >= project.overlap:
            if holds_lease:
                _release(item, annotator)
            raise ItemNotNeeded(
                "Your time on this item ran out and it has since got all the labels it needs, so your labels for it "
                "were not saved. Here is the next item."
            )
        if connection.vendor == "postgresql":
            # One statement for the three writes (labels, the item's counts, the lease): the hottest write path.
            with connection.cursor() as cursor:
                cursor.execute(
                    _SUBMIT_WRITE_SQL,
                    {
                        "item": item.pk,
                        "criteria": [c.pk for c in criteria],
                        "values": [values[c.key] for c in criteria],
                        "version": version_id,
                        "user": annotator.pk,
                        "note": note,
                        "shown": shown,
                        "time": time_spent_ms,
                        "key": submission_key[:64],
                        "now": now,
                        "complete": complete,
                        "released": 1 if holds_lease else 0,
                    },
                )
        else:
            Label.objects.bulk_create(
                Label(
                    item_id=item.pk,
                    criterion=criterion,
                    rubric_version_id=version_id,
                    annotator=annotator,
                    value=values[criterion.key],
                    note=note,
                    shown_order=shown,
                    time_spent_ms=time_spent_ms,
                    submission_key=submission_key[:64],
                    created_at=now,
                )
                for criterion in criteria
            )
            Item.objects.filter(pk=item.pk).update(
                n_submitted=F("n_submitted") + complete, n_leased=F("n_leased") - (1 if holds_lease else 0)
            )
            Assignment.objects.filter(item_id=item.pk, annotator=annotator).delete()
    return SubmitOutcome(item=item, duplicate=False)


def label_submit_then_next(
    *,
    project: Project,
    annotator: AuthUser,
    item_id: int,
    criteria: Sequence[Criterion],
    values: dict[str, str],
    holding: Collection[int] | None,
    note: str = "",
    time_spent_ms: int | None = None,
    submission_key: str = "",
) -> tuple[SubmitOutcome, Item | None]:
    """`label_submit`, then the labeling page's next item (`queue_next`, which may lease one), in one transaction.

    One commit instead of two: each commit waits for PostgreSQL to flush its WAL to disk, and the lease's own commit
    was the slowest step of the annotator's round trip. A lease is only written with the labels that precede it.
    """
    with transaction.atomic():
        outcome = label_submit(
            project=project,
            annotator=annotator,
            item_id=item_id,
            criteria=criteria,
            values=values,
            note=note,
            time_spent_ms=time_spent_ms,
            submission_key=submission_key,
            _within=True,
        )
        item = queue_next(
            project=project,
            annotator=annotator,
            rubric_version_id=project.current_rubric_id,  # type: ignore[arg-type]
            holding=holding,
        )
    return outcome, item


def _release(item: Item, annotator: AuthUser) -> None:
    deleted, _ = Assignment.objects.filter(item=item, annotator=annotator, state=Assignment.State.LEASED).delete()
    if deleted:
        Item.objects.filter(pk=item.pk).update(n_leased=F("n_leased") - deleted)


@transaction.atomic
def label_edit(
    *,
    project: Project,
    annotator: AuthUser,
    item_id: int,
    criteria: Sequence[Criterion],
    values: dict[str, str],
    revisions: dict[str, int],
    note: str = "",
) -> list[Label]:
    """Change an annotator's own labels on an item (Undo, history). Compare-and-swap on each label's revision."""
    labels = {
        label.criterion.key: label
        for label in Label.objects.select_for_update(of=("self",))
        .select_related("criterion")
        .filter(item__project=project, item_id=item_id, annotator=annotator, criterion__in=list(criteria))
    }
    if not labels:
        raise QueueError("You have no labels on that item under the current rubric.")
    shown = shown_order(annotator.pk, item_id) if project.is_pairwise else None
    note = note.strip()
    if len(note) > 10_000:  # the same cap as a new label's note (label_submit)
        raise QueueError("The note is too long (at most 10,000 characters).")
    if not note and _needs_note(project, values, shown):
        raise QueueError("This project asks for a note whenever something fails: say why.")
    changed = []
    for key, label in labels.items():
        if key not in values:
            raise QueueError(f"Choose a value for “{label.criterion.name}”.")
        if revisions.get(key) != label.revision:
            raise QueueError("These labels were changed elsewhere since you opened them. Reload to see the latest.")
        if label.value != values[key] or label.note != note:
            label.value, label.note, label.revision = values[key], note, label.revision + 1
            label.updated_at = timezone.now()
            changed.append(label)
    Label.objects.bulk_update(changed, ["value", "note", "revision", "updated_at"])
    return changed
