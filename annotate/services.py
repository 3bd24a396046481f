"""Writes. Views, commands, tasks and the API all call these; nothing else writes these models."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, TypedDict

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User as AuthUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from annotate import selectors
from annotate.models import Assignment, Criterion, Item, Label, Membership, Project, RubricVersion
from annotate.specs import ProjectSpec, SpecError
from annotate.splits import content_hash, split_for

User = get_user_model()


class CriterionData(TypedDict):
    key: str
    name: str
    description: str


# --- Projects and rubrics -------------------------------------------------------------------------------------


def rubric_set_criteria(
    *,
    project: Project,
    criteria: Sequence[CriterionData],
    actor: AuthUser | None = None,
    note: str = "",
) -> RubricVersion | None:
    """Make `criteria` the project's rubric. Returns the new version, or None when nothing changed.

    A change never edits the current version: it creates version n+1, so labels keep the rubric they were given
    under and criteria drift stays visible.
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
        Criterion.objects.bulk_create(
            Criterion(rubric_version=version, key=key, name=name, description=description, position=i)
            for i, (key, name, description) in enumerate(wanted)
        )
    return version


def project_set_status(*, project: Project, status: str) -> Project:
    """Change a project's status. Activation needs a rubric of at least MIN_CRITERIA_TO_ACTIVATE criteria."""
    if status not in Project.Status.values:
        raise ValidationError(f"Unknown status {status!r}.")
    if status == Project.Status.ACTIVE:
        n = selectors.criteria_current(project=project).count()
        if n < Project.MIN_CRITERIA_TO_ACTIVATE:
            raise ValidationError(
                f"A project needs at least {Project.MIN_CRITERIA_TO_ACTIVATE} measurable criteria before it can "
                f"be activated; this one has {n}. Add criteria first."
            )
    project.status = status
    project.save(update_fields=["status", "updated_at"])
    return project


def project_apply_spec(*, spec: ProjectSpec, actor: AuthUser | None = None) -> tuple[Project, bool, bool]:
    """Create or update a project from a validated spec. Returns (project, created, rubric_changed).

    All or nothing: an unknown member or an invalid state writes nothing.
    """
    users = {u.get_username(): u for u in User.objects.filter(username__in=[m.username for m in spec.members])}
    missing = [(i, m.username) for i, m in enumerate(spec.members) if m.username not in users]
    if missing:
        raise SpecError([f"members.{i}.username: no user named {name!r}" for i, name in missing])

    with transaction.atomic():
        project = Project.objects.select_for_update().filter(slug=spec.slug).first()
        created = project is None
        fields = {
            "name": spec.name,
            "instructions": spec.instructions,
            "overlap": spec.overlap,
            "allow_tie": spec.allow_tie,
            "require_note_on_fail": spec.require_note_on_fail,
        }
        if project is None:
            project = Project.objects.create(slug=spec.slug, kind=spec.kind, status=Project.Status.DRAFT, **fields)
        else:
            if project.kind != spec.kind:
                raise SpecError([f"kind: project {spec.slug!r} is {project.kind}; the kind cannot change"])
            for name, value in fields.items():
                setattr(project, name, value)
            project.save()
        try:
            version = rubric_set_criteria(
                project=project,
                criteria=[CriterionData(key=c.key, name=c.name, description=c.description) for c in spec.criteria],
                actor=actor,
                note="from spec" if created else "criteria changed in spec",
            )
            if spec.status is not None and project.status != spec.status:
                project_set_status(project=project, status=spec.status)
        except ValidationError as exc:
            raise SpecError([f"criteria: {m}" for m in exc.messages]) from None
        for member in spec.members:
            Membership.objects.update_or_create(
                user=users[member.username], project=project, defaults={"role": member.role}
            )
    return project, created, version is not None and not created


def membership_set(*, project: Project, user: AuthUser, role: str) -> Membership:
    if role not in Membership.Role.values:
        raise ValidationError(f"Unknown role {role!r}.")
    membership, _ = Membership.objects.update_or_create(user=user, project=project, defaults={"role": role})
    return membership


# --- Items and labels -----------------------------------------------------------------------------------------


def item_content(*, project: Project, fields: dict[str, Any]) -> dict[str, str]:
    """The content fields of an item of this project's kind, in canonical form (what the content hash covers)."""
    if project.is_pairwise:
        return {
            "input": fields.get("input", ""),
            "output_a": fields.get("output_a", ""),
            "output_b": fields.get("output_b", ""),
        }
    return {"input": fields.get("input", ""), "output": fields.get("output", "")}


def item_build(
    *,
    project: Project,
    fields: dict[str, Any],
    external_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    source: str = Item.Source.IMPORT,
    split: str | None = None,
) -> Item:
    """An unsaved item with its content hash, external id (default: the hash) and deterministic split."""
    content = item_content(project=project, fields=fields)
    digest = content_hash(content)
    external_id = external_id or digest
    return Item(
        project=project,
        external_id=external_id,
        metadata=metadata or {},
        source=source,
        split=split or split_for(project.slug, external_id),
        content_hash=digest,
        **content,
    )


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
    return Label.objects.filter(item__project=project).count() - before


# --- Leases ---------------------------------------------------------------------------------------------------


def assignments_expire(*, now: dt.datetime | None = None) -> int:
    """Delete leases that have run out, so their items go back to the queue. Safe to run any number of times."""
    deleted, _ = Assignment.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted
