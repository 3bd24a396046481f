"""Labels that outlive a rubric change.

A criterion keeps its identity across rubric versions by its key. When a new version keeps a criterion's name and
definition, the labels given under the previous version still answer the same question: the rubric change copies
them into the new version (`rubric_labels_carry`, in the transaction that makes the version), so every read that
loads one version's labels (agreement, judge calibration, exports, the queue's counts) sees them without knowing about
versions. Only criteria that were added or redefined in the current version (`Criterion.defined_in` is that version)
need new labels, and the labeling form asks an annotator only for the criteria they lack on an item
(`criteria_missing`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Count

from annotate import selectors
from annotate.models import AgreementReport, Criterion, GoldLabel, Label, RubricVersion

# Every column of the label but its id, its version and its criterion, copied as it is: the annotator, value, note and
# the time it was first given stay the annotator's own. `carried` keeps the copy out of the throughput counts.
_CARRY_LABELS_SQL = """
INSERT INTO annotate_label (item_id, criterion_id, rubric_version_id, annotator_id, value, note, shown_order,
                            time_spent_ms, revision, submission_key, created_at, updated_at, carried)
SELECT l.item_id, nc.id, nc.rubric_version_id, l.annotator_id, l.value, l.note, l.shown_order,
       l.time_spent_ms, l.revision, l.submission_key, l.created_at, l.updated_at, %(carried)s
FROM annotate_label l
JOIN annotate_criterion oc ON oc.id = l.criterion_id
JOIN annotate_criterion nc ON nc.rubric_version_id = %(new)s AND nc.key = oc.key
WHERE l.rubric_version_id = %(old)s AND nc.defined_in_id <> %(new)s
"""

_CARRY_GOLD_SQL = """
INSERT INTO annotate_goldlabel (item_id, criterion_id, value, note, set_by_id, created_at, updated_at)
SELECT g.item_id, nc.id, g.value, g.note, g.set_by_id, g.created_at, g.updated_at
FROM annotate_goldlabel g
JOIN annotate_criterion oc ON oc.id = g.criterion_id AND oc.rubric_version_id = %(old)s
JOIN annotate_criterion nc ON nc.rubric_version_id = %(new)s AND nc.key = oc.key
WHERE nc.defined_in_id <> %(new)s
"""


def definition(name: str, description: str) -> tuple[str, str]:
    """What a criterion means, for comparing versions: surrounding blanks are not a change."""
    return name.strip(), description.strip()


def rubric_labels_carry(*, old: RubricVersion, new: RubricVersion) -> int:
    """Copy the labels and gold labels of `old` into `new` for every criterion whose definition `new` keeps.

    Call in the transaction that creates `new` (its criteria and their `defined_in` already written), before anyone
    can label under it. One INSERT … SELECT per table, on PostgreSQL and SQLite alike. Returns the labels copied.
    """
    params = {"old": old.pk, "new": new.pk, "carried": True}
    with connection.cursor() as cursor:
        cursor.execute(_CARRY_LABELS_SQL, params)
        n = cursor.rowcount
        cursor.execute(_CARRY_GOLD_SQL, params)
    return max(n, 0)


def report_seed(*, old: RubricVersion, new: RubricVersion, n_carried: int) -> AgreementReport | None:
    """Give `new` the stored agreement figures of `old` for the criteria it kept, until its own report is computed.

    Their labels are the same rows, so the figures are the same; the seed is marked stale (no `last_label_at`), so
    the refresh that the rubric change asks for, or the next beat pass, replaces it with a computed report.
    """
    stored = AgreementReport.objects.filter(rubric_version=old).first()
    if stored is None:
        return None
    kept = {c.key for c in Criterion.objects.filter(rubric_version=new).exclude(defined_in=new)}
    data = dict(stored.data)
    data["criteria"] = {k: v for k, v in stored.data.get("criteria", {}).items() if k in kept}
    data["rubric_version"] = new.number
    return AgreementReport.objects.create(
        project_id=new.project_id,
        rubric_version=new,
        data=data,
        n_labels=n_carried,
        last_label_at=None,
        n_gold=0,
        computed_at=stored.computed_at,
        seconds=0,
    )


def criteria_missing(
    *, criteria: Sequence[Criterion], annotator: User, item_ids: Iterable[int]
) -> dict[int, tuple[Criterion, ...]]:
    """For each item, the criteria of `criteria` (one rubric version's) this annotator has no label on yet.

    One query over the label_one_per_annotator index. An item the annotator has not labeled at all needs every
    criterion; one whose labels were carried over a rubric change needs only the added or redefined ones.
    """
    ids = list(item_ids)
    version_id = criteria[0].rubric_version_id if criteria else None
    if not ids or all(c.defined_in_id == version_id for c in criteria):
        # No criterion of this version dates from an earlier one, so no label was carried into it: labels of an item
        # come all at once with a submit, and the queue serves only items this annotator has not labeled. No query.
        return {i: tuple(criteria) for i in ids}
    have: dict[int, set[int]] = {}
    for item_id, criterion_id in Label.objects.filter(
        item_id__in=ids, annotator=annotator, rubric_version_id=version_id
    ).values_list("item_id", "criterion_id"):
        have.setdefault(item_id, set()).add(criterion_id)
    return {i: tuple(c for c in criteria if c.pk not in have.get(i, ())) for i in ids}


@dataclass(frozen=True)
class CriterionConsequence:
    key: str
    name: str
    needs_labels: bool  # added or redefined: its labels start from zero
    n_labels: int  # labels it keeps (0 when it needs new ones)
    n_needed: int  # labels it needs for every item to reach the overlap


@dataclass(frozen=True)
class RubricConsequence:
    criteria: list[CriterionConsequence]

    @property
    def relabeled(self) -> list[CriterionConsequence]:
        return [c for c in self.criteria if c.needs_labels]

    @property
    def kept(self) -> list[CriterionConsequence]:
        return [c for c in self.criteria if not c.needs_labels]

    @property
    def sentence(self) -> str:
        """ "“Factually correct” will need 481 new labels; the other 2 criteria keep their 725 labels"."""
        parts = [f"“{c.name}” will need {_n(c.n_needed, 'new label')}" for c in self.relabeled]
        kept = self.kept
        n_kept = _n(sum(c.n_labels for c in kept), "label")
        if len(kept) == 1:
            parts.append(f"“{kept[0].name}” keeps its {n_kept}")
        elif kept:
            whom = f"the other {len(kept)} criteria" if self.relabeled else f"all {len(kept)} criteria"
            parts.append(f"{whom} keep their {n_kept}")
        return "; ".join(parts)


def _n(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def rubric_consequence(*, current: RubricVersion | None, new: Sequence[tuple[str, str, str]]) -> RubricConsequence:
    """What saving the criteria `new` ((key, name, description) each) does to the labels of the `current` version.

    A kept criterion keeps the labels it has now. One that is added or redefined needs one new label from each
    annotator on each item they have labeled so far: the work the re-label queue will ask for.
    """
    before = {c.key: c for c in selectors.criteria_of_version(current.pk)} if current is not None else {}
    counts: dict[int, int] = {}
    n_pairs = 0
    if current is not None:
        labels = Label.objects.filter(rubric_version=current)
        counts = dict(
            labels.values_list("criterion_id").annotate(n=Count("id")).values_list("criterion_id", "n").order_by()
        )
        n_pairs = labels.values("item_id", "annotator_id").distinct().count()
    out = []
    for key, name, description in new:
        prev = before.get(key)
        kept = prev is not None and definition(prev.name, prev.description) == definition(name, description)
        out.append(
            CriterionConsequence(
                key=key,
                name=name,
                needs_labels=not kept,
                n_labels=counts.get(prev.pk, 0) if kept and prev is not None else 0,
                n_needed=0 if kept else n_pairs,
            )
        )
    return RubricConsequence(criteria=out)


def no_labels_warning(*, rubric_version: RubricVersion, key: str) -> str:
    """Why a judge run on criterion `key` under `rubric_version` can have no judge–human figures, or "".

    A criterion added or redefined in a version has no human labels until annotators give them: a run then judges
    every item but compares none, and this says so before it starts and on its report. A lead's gold label is a
    human reference too (judges.run_reference.human_reference counts it even on an item nobody labeled), so a
    criterion with gold labels gets no warning.
    """
    criterion = next((c for c in selectors.criteria_of_version(rubric_version.pk) if c.key == key), None)
    if criterion is None:
        return ""
    if Label.objects.filter(criterion=criterion).exists() or GoldLabel.objects.filter(criterion=criterion).exists():
        return ""
    since = RubricVersion.objects.filter(pk=criterion.defined_in_id).values_list("number", flat=True).first()
    return (
        f"“{criterion.name}” has no human labels under its current definition (since rubric v{since}): its "
        "figures will be empty, with no labels to compare the verdicts with, until annotators label it."
    )
