"""Rubric versions: setting a project's criteria (a new version when they change) and the edit diff."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

from django.contrib.auth.models import User as AuthUser
from django.core.exceptions import ValidationError
from django.db import transaction

from annotate import carry, enqueue, selectors
from annotate.models import Assignment, Criterion, Project, RubricVersion
from annotate.services.leases import queue_counts_refresh


class CriterionData(TypedDict):
    key: str
    name: str
    description: str


def rubric_set_criteria(
    *,
    project: Project,
    criteria: Sequence[CriterionData],
    actor: AuthUser | None = None,
    note: str = "",
) -> RubricVersion | None:
    """Make `criteria` the project's rubric. Returns the new version, or None when nothing changed.

    A change never edits the current version: it creates version n+1, so labels keep the rubric they were given
    under and criteria drift stays visible. Labels of every criterion whose name and definition version n+1 keeps
    are carried into it (annotate.carry), so only added or redefined criteria need new labels.
    """
    wanted = [(c["key"], c["name"], c["description"]) for c in criteria]
    keys = [key for key, _, _ in wanted]
    if len(set(keys)) != len(keys):
        raise ValidationError("Criterion keys must be unique within a rubric.")
    if not wanted:
        raise ValidationError("A rubric needs at least one criterion.")
    if project.status == Project.Status.ACTIVE and len(wanted) < Project.MIN_CRITERIA_TO_ACTIVATE:
        raise ValidationError(
            f"An active project needs at least {Project.MIN_CRITERIA_TO_ACTIVATE} criteria; "
            f"set it back to draft first to use fewer."
        )
    with transaction.atomic():
        # Lock the project row so two editors cannot both create version n+1.
        Project.objects.select_for_update().filter(pk=project.pk).first()
        current = selectors.rubric_current(project=project)
        if current is not None:
            have = [(c.key, c.name, c.description) for c in current.criteria.all()]
            if have == wanted:
                return None
        version = RubricVersion.objects.create(
            project=project,
            number=(current.number + 1) if current else 1,
            note=note[:500],
            created_by=actor if actor is not None and actor.is_authenticated else None,
        )
        before = {c.key: c for c in current.criteria.all()} if current is not None else {}
        Criterion.objects.bulk_create(
            Criterion(
                rubric_version=version,
                key=key,
                name=name,
                description=description,
                position=i,
                defined_in_id=_defined_in(before.get(key), name, description, version),
            )
            for i, (key, name, description) in enumerate(wanted)
        )
        Project.objects.filter(pk=project.pk).update(current_rubric=version)
        project.current_rubric = version
        # Leases and skips were for the old rubric: everyone starts the new version from a full queue.
        Assignment.objects.filter(item__project=project).delete()
        if current is not None:
            # Labels of the criteria the new version keeps still hold: they move along, and only the added or
            # redefined criteria wait for labels (annotate.carry).
            n_carried = carry.rubric_labels_carry(old=current, new=version)
            if n_carried:
                carry.report_seed(old=current, new=version, n_carried=n_carried)
                enqueue.after_commit("annotate.tasks.agreement_report_compute", project.pk)
            queue_counts_refresh(project=project)
    return version


def _defined_in(previous: Criterion | None, name: str, description: str, version: RubricVersion) -> int:
    """The version a criterion's definition dates from: the previous one's when it reads the same, else `version`."""
    if previous is not None and carry.definition(previous.name, previous.description) == carry.definition(
        name, description
    ):
        return previous.defined_in_id
    return version.pk


@dataclass(frozen=True)
class RubricChange:
    """One line of "v4 will: …": what saving the edited criteria does to the current rubric."""

    action: str  # add, remove, rename, define, move
    text: str


def rubric_diff(*, old: Sequence[CriterionData], new: Sequence[CriterionData]) -> list[RubricChange]:
    """The changes that turn the `old` criteria into the `new` ones, matched by key; [] when they are the same.

    A move is reported only for criteria whose order relative to the others changed: the kept criteria that form
    the longest run in their old order stay put, every other kept criterion "moves".
    """
    old_by_key = {c["key"]: c for c in old}
    new_by_key = {c["key"]: c for c in new}
    changes = [RubricChange("add", f"add “{c['name']}”") for c in new if c["key"] not in old_by_key]
    changes += [RubricChange("remove", f"remove “{c['name']}”") for c in old if c["key"] not in new_by_key]
    for c in new:
        before = old_by_key.get(c["key"])
        if before is None:
            continue
        if before["name"] != c["name"]:
            changes.append(RubricChange("rename", f"rename “{before['name']}” to “{c['name']}”"))
        if before["description"] != c["description"]:
            changes.append(RubricChange("define", f"change the definition of “{c['name']}”"))
    old_rank = {c["key"]: i for i, c in enumerate(c for c in old if c["key"] in new_by_key)}
    kept = [c for c in new if c["key"] in old_rank]
    staying = _longest_increasing(
        [old_rank[c["key"]] for c in kept],
    )
    for i, c in enumerate(kept):
        if i not in staying:
            position = next(n for n, x in enumerate(new, start=1) if x["key"] == c["key"])
            changes.append(RubricChange("move", f"move “{c['name']}” to position {position}"))
    return changes


def _longest_increasing(values: list[int]) -> set[int]:
    """Indexes of one longest strictly increasing subsequence of `values` (O(n²): rubrics are short)."""
    if not values:
        return set()
    best = [1] * len(values)
    prev = [-1] * len(values)
    for i in range(len(values)):
        for j in range(i):
            if values[j] < values[i] and best[j] + 1 > best[i]:
                best[i], prev[i] = best[j] + 1, j
    # Among equally long runs, the one ending last: after swapping two neighbours, the one that went up "moved".
    i = max(range(len(values)), key=lambda k: (best[k], k))
    chosen = set()
    while i != -1:
        chosen.add(i)
        i = prev[i]
    return chosen


def rubric_save_edit(
    *, project: Project, criteria: Sequence[CriterionData], base_number: int, actor: AuthUser
) -> RubricVersion | None:
    """Save criteria a lead reviewed against rubric version `base_number` (0: no rubric yet).

    Refuses when the rubric moved on since the review, so nobody confirms a summary that no longer describes
    what will be written. None when nothing changed (no version is made).
    """
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        current = selectors.rubric_current(project=project)
        if (current.number if current else 0) != base_number:
            raise ValidationError(
                f"Someone saved rubric v{current.number if current else 0} while you were editing: "
                "review your changes against it again."
            )
        project.refresh_from_db(fields=["status"])
        return rubric_set_criteria(project=project, criteria=criteria, actor=actor, note="edited in the browser")
