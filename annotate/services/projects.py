"""Projects: creating and updating them (from a spec file or the browser), status and sampling."""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth.models import User as AuthUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from annotate import selectors, skips
from annotate.models import Item, Label, Membership, Project
from annotate.services.members import User
from annotate.services.rubrics import CriterionData, rubric_set_criteria
from annotate.specs import ProjectSpec, SpecError


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
        # Omitted: a new project takes the defaults and an existing one keeps its daily sample settings.
        fields |= {
            name: value
            for name, value in (
                ("sample_size", spec.sample_size),
                ("sample_hour", spec.sample_hour),
                ("skip_return_minutes", spec.skip_return_minutes),
            )
            if value is not None
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


# --- Setting projects up in the browser ------------------------------------------------------------------------


def project_may_create(user: AuthUser | Any) -> bool:
    """Who may create projects: staff, and users granted the `annotate.add_project` permission (in the admin).

    Everyone else is refused (403 on the page): creating a project is an installation-level decision, not a
    project-level one, so no project role grants it.
    """
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return bool(user.is_staff or user.has_perm("annotate.add_project"))


_SLUG_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # the spec's rule (annotate.specs.Slug)


def _project_fields_check(*, name: str, overlap: int) -> None:
    if not name.strip():
        raise ValidationError("Give the project a name.")
    if not 1 <= overlap <= Project.MAX_OVERLAP:
        raise ValidationError(f"Overlap must be between 1 and {Project.MAX_OVERLAP} annotators per item.")


def _sampling_check(*, sample_size: int | None, sample_hour: int | None) -> None:
    if sample_size is not None and not 0 <= sample_size <= Project.MAX_SAMPLE_SIZE:
        raise ValidationError(f"The daily sample size must be between 0 (off) and {Project.MAX_SAMPLE_SIZE:,}.")
    if sample_hour is not None and not 0 <= sample_hour <= 23:
        raise ValidationError("The sample hour must be between 0 and 23.")


@transaction.atomic
def project_set_sampling(
    *, project: Project, sample_size: int | None = None, sample_hour: int | None = None
) -> Project:
    """Change the daily production sample: its size (0 turns it off) and the local hour it is taken from. None
    leaves a setting as it is. A change applies from the next sample job; a day already sampled stays as it is."""
    _sampling_check(sample_size=sample_size, sample_hour=sample_hour)
    locked = Project.objects.select_for_update().get(pk=project.pk)
    for field, value in (("sample_size", sample_size), ("sample_hour", sample_hour)):
        if value is not None:
            setattr(locked, field, value)
            setattr(project, field, value)
    locked.save(update_fields=["sample_size", "sample_hour", "updated_at"])
    return project


@transaction.atomic
def project_create(
    *,
    creator: AuthUser,
    slug: str,
    name: str,
    kind: str,
    instructions: str = "",
    overlap: int = 2,
    allow_tie: bool = True,
    require_note_on_fail: bool = False,
    sample_size: int | None = None,
    sample_hour: int | None = None,
    skip_return_minutes: int | None = None,
) -> Project:
    """Create a draft project with the creator as its lead. It has no rubric yet: criteria come next."""
    if not project_may_create(creator):
        raise ValidationError("You may not create projects; ask an administrator.")
    if kind not in Project.Kind.values:
        raise ValidationError(f"Unknown kind {kind!r}: choose binary or pairwise.")
    _project_fields_check(name=name, overlap=overlap)
    _sampling_check(sample_size=sample_size, sample_hour=sample_hour)
    skips.skip_return_check(skip_return_minutes)
    sampling = {
        name: value
        for name, value in (
            ("sample_size", sample_size),
            ("sample_hour", sample_hour),
            ("skip_return_minutes", skip_return_minutes),
        )
        if value is not None
    }
    if not _SLUG_RE.fullmatch(slug):
        raise ValidationError(
            "Choose an address of lowercase letters, digits, dashes and underscores, starting with a letter or digit."
        )
    taken = ValidationError(f"The address “{slug}” is taken by another project; choose another.")
    if Project.objects.filter(slug=slug).exists():
        raise taken
    try:
        # A savepoint, so a concurrent create of the same slug is reported like any other taken address.
        with transaction.atomic():
            project = Project.objects.create(
                slug=slug,
                name=name.strip(),
                kind=kind,
                instructions=instructions,
                overlap=overlap,
                allow_tie=allow_tie,
                require_note_on_fail=require_note_on_fail,
                status=Project.Status.DRAFT,
                **sampling,
            )
    except IntegrityError:
        raise taken from None
    Membership.objects.create(user=creator, project=project, role=Membership.Role.LEAD)
    return project


def project_kind_locked(*, project: Project) -> bool:
    """The kind cannot change once items (and so possibly labels) exist: their fields and values depend on it."""
    return Item.objects.filter(project=project).exists() or Label.objects.filter(item__project=project).exists()


@transaction.atomic
def project_update(
    *,
    project: Project,
    name: str,
    kind: str,
    instructions: str,
    overlap: int,
    allow_tie: bool,
    require_note_on_fail: bool,
    sample_size: int | None = None,
    sample_hour: int | None = None,
    skip_return_minutes: int | None = None,
) -> Project:
    """Change a project's settings. The kind can change only while the project has no items or labels. A sample
    setting or the skip delay left None stays as it is."""
    locked = Project.objects.select_for_update().get(pk=project.pk)
    _project_fields_check(name=name, overlap=overlap)
    _sampling_check(sample_size=sample_size, sample_hour=sample_hour)
    skips.skip_return_check(skip_return_minutes)
    if kind != locked.kind:
        if kind not in Project.Kind.values:
            raise ValidationError(f"Unknown kind {kind!r}: choose binary or pairwise.")
        if project_kind_locked(project=locked):
            raise ValidationError(
                f"The kind cannot change: this project already has items, which are {locked.get_kind_display()}."
            )
    for field, value in {
        "name": name.strip(),
        "kind": kind,
        "instructions": instructions,
        "overlap": overlap,
        "allow_tie": allow_tie,
        "require_note_on_fail": require_note_on_fail,
        "sample_size": locked.sample_size if sample_size is None else sample_size,
        "sample_hour": locked.sample_hour if sample_hour is None else sample_hour,
        "skip_return_minutes": locked.skip_return_minutes if skip_return_minutes is None else skip_return_minutes,
    }.items():
        setattr(locked, field, value)
        setattr(project, field, value)
    locked.save()
    return project
