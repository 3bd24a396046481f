"""Project members: roles, adding people by username, and the last-lead rule."""

from __future__ import annotations

from collections import Counter

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User as AuthUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F

from annotate.models import Assignment, Item, Label, Membership, Project

User = get_user_model()


def membership_set(*, project: Project, user: AuthUser, role: str) -> Membership:
    if role not in Membership.Role.values:
        raise ValidationError(f"Unknown role {role!r}.")
    membership, _ = Membership.objects.update_or_create(user=user, project=project, defaults={"role": role})
    return membership


def member_find(*, identifier: str) -> AuthUser:
    """The active user with this username (case-insensitive). ValidationError names what was not found.

    Not by e-mail address: the answer would tell a lead which account an address belongs to, or that several share
    it. A lead who knows only an address sends an invite instead (annotate.invites.invite_create).
    """
    identifier = identifier.strip()
    if not identifier:
        raise ValidationError("Enter a username or an email address.")
    user = User.objects.filter(username__iexact=identifier).first()
    if user is None:
        raise ValidationError(f"No user has the username “{identifier}”.")
    if not user.is_active:
        raise ValidationError(f"The account “{user.get_username()}” is inactive and cannot be a member.")
    return user


@transaction.atomic
def member_add(*, project: Project, identifier: str, role: str) -> Membership:
    """Add a user, found by username or email, to the project with `role`. Refuses a user who is a member."""
    if role not in Membership.Role.values:
        raise ValidationError(f"Unknown role {role!r}: choose lead or annotator.")
    user = member_find(identifier=identifier)
    existing = Membership.objects.filter(project=project, user=user).first()
    if existing is not None and not existing.is_active:
        # A deactivated member added again is reactivated with the role asked for; their labels were kept.
        existing.role, existing.deactivated_at = role, None
        existing.save(update_fields=["role", "deactivated_at"])
        return existing
    if existing is not None:
        raise ValidationError(
            f"{user.get_username()} is already {existing.get_role_display().lower()} of this project; "
            "change their role in the list instead."
        )
    return Membership.objects.create(project=project, user=user, role=role)


def _lead_count_other_than(project: Project, membership: Membership) -> int:
    return (
        Membership.objects.filter(
            project=project, role=Membership.Role.LEAD, user__is_active=True, deactivated_at__isnull=True
        )
        .exclude(pk=membership.pk)
        .count()
    )


def _membership_locked(project: Project, membership_id: int) -> Membership:
    """The membership, with the project row locked: role changes and removals serialise per project, so two
    leads demoting each other at once cannot leave the project without one."""
    Project.objects.select_for_update().filter(pk=project.pk).first()
    membership = Membership.objects.select_related("user").filter(project=project, pk=membership_id).first()
    if membership is None:
        raise ValidationError("That person is not a member of this project.")
    return membership


@transaction.atomic
def member_set_role(*, project: Project, membership_id: int, role: str) -> Membership:
    """Change a member's role. The last lead cannot be made an annotator."""
    if role not in Membership.Role.values:
        raise ValidationError(f"Unknown role {role!r}: choose lead or annotator.")
    membership = _membership_locked(project, membership_id)
    if membership.role == role:
        return membership
    if membership.role == Membership.Role.LEAD and not _lead_count_other_than(project, membership):
        raise ValidationError(
            f"{membership.user.get_username()} is the project's only lead: make someone else lead first."
        )
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def member_remove(*, project: Project, membership_id: int) -> int:
    """Remove a member. Their labels stay (they count in agreement and exports); their leases are released so
    others can take those items at once. The last lead cannot be removed. Returns how many labels they keep."""
    membership = _membership_locked(project, membership_id)
    if membership.role == Membership.Role.LEAD and not _lead_count_other_than(project, membership):
        raise ValidationError(
            f"{membership.user.get_username()} is the project's only lead: make someone else lead first."
        )
    member_leases_release(project=project, user=membership.user)
    membership.delete()
    return Label.objects.filter(item__project=project, annotator=membership.user).count()


def member_leases_release(*, project: Project, user: AuthUser) -> int:
    """Drop every lease (and skip) the user holds in the project, so others can take those items at once. Call in a
    transaction. Returns how many items were leased."""
    leases = Assignment.objects.filter(item__project=project, annotator=user)
    # Items before leases, in id order, as the queue and the sweep lock them: no deadlock with annotators at work.
    item_ids = sorted(set(leases.filter(state=Assignment.State.LEASED).values_list("item_id", flat=True)))
    list(Item.objects.select_for_update().filter(pk__in=item_ids).order_by("pk").values_list("pk", flat=True))
    held = Counter(leases.filter(state=Assignment.State.LEASED).values_list("item_id", flat=True))
    leases.delete()
    for item_id, n in held.items():
        Item.objects.filter(pk=item_id).update(n_leased=F("n_leased") - n)
    return len(held)


def user_leases_release(*, user: AuthUser) -> int:
    """Release every lease the user holds, in every project: run before the user is deleted (a pre_delete receiver,
    annotate.apps), since the cascade would delete their leases without lowering the items' n_leased. Django's admin
    deletes no user who holds leases; this covers `manage.py shell`. Returns how many items were leased."""
    project_ids = set(Assignment.objects.filter(annotator=user).values_list("item__project_id", flat=True))
    return sum(
        member_leases_release(project=project, user=user) for project in Project.objects.filter(pk__in=project_ids)
    )
