"""Invite links: how a lead adds a person who may not have an account yet.

A lead makes a link for one person and one role; it is shown once (only a SHA-256 of its secret is stored, as for
API tokens), expires after settings.INVITE_EXPIRY_DAYS and works once: `invite_accept` claims it with a conditional
update, so two people opening the same link at once cannot both join. Whoever opens it signs up (choosing a
password) or, already logged in, simply joins.

Adding someone by e-mail address always makes an invite for that address, whether no account, one or several have
it: the lead's answer is the same in every case, so it never tells which username an address belongs to.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotate import selectors
from annotate.models import Invite, Membership, Project

# Open invites per project: enough for any team, and a bound on what a compromised lead account can mint.
MAX_OPEN_INVITES = 200
_RANK: dict[str, int] = {Membership.Role.ANNOTATOR.value: 0, Membership.Role.LEAD.value: 1}


class InviteError(ValidationError):
    """The link cannot be used (unknown, used, expired or withdrawn). One message for all: see `UNUSABLE`."""


UNUSABLE = "This invite link cannot be used: it was already used, it expired or it was withdrawn. Ask for a new one."


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def invite_create(*, project: Project, role: str, created_by: User, email: str = "") -> tuple[Invite, str]:
    """A new invite and its secret (for the link `/invite/<secret>/`), which is never stored and shown only now.

    Only a lead of the project (or staff) may invite, and never with more rights than they have themselves.
    """
    # Only leads invite (annotators never reach the members page); the rank check keeps "never above your own role"
    # true should another role ever be added.
    creator_role = selectors.project_role(created_by, project)
    if creator_role != Membership.Role.LEAD or _RANK.get(role, 99) > _RANK[creator_role]:
        raise ValidationError("You cannot invite people to this project with that role.")
    if role not in Membership.Role.values:
        raise ValidationError(f"Unknown role {role!r}: choose lead or annotator.")
    email = email.strip()
    if email:
        try:
            validate_email(email)
        except ValidationError:
            raise ValidationError(f"“{email[:254]}” is not an e-mail address.") from None
    now = timezone.now()
    if Invite.objects.filter(project=project, used_at=None, revoked_at=None, expires_at__gt=now).count() >= (
        MAX_OPEN_INVITES
    ):
        raise ValidationError(f"This project has {MAX_OPEN_INVITES} open invites: withdraw some first.")
    secret = secrets.token_urlsafe(32)
    invite = Invite.objects.create(
        project=project,
        role=role,
        email=email,
        token_hash=_digest(secret),
        created_by=created_by,
        expires_at=now + dt.timedelta(days=settings.INVITE_EXPIRY_DAYS),
    )
    return invite, secret


def invite_send(*, invite: Invite, url: str) -> bool:
    """E-mail the link to the invite's address when an e-mail server is configured. True when sent."""
    if not (settings.EMAIL_CONFIGURED and invite.email):
        return False
    inviter = invite.created_by.get_username() if invite.created_by else "A lead"
    send_mail(
        subject=f"Invitation to {invite.project.name}",
        message=(
            f"{inviter} invites you to label in “{invite.project.name}” as {invite.get_role_display().lower()}.\n\n"
            f"Open this link to join (it works once, until {invite.expires_at:%Y-%m-%d %H:%M} UTC):\n{url}\n"
        ),
        from_email=None,
        recipient_list=[invite.email],
    )
    return True


def invite_find(secret: str) -> Invite | None:
    """The open invite this secret names, with its project; None for anything else."""
    if not secret or len(secret) > 100:
        return None
    invite = Invite.objects.select_related("project").filter(token_hash=_digest(secret)).first()
    if invite is None or invite.state != "open":
        return None
    return invite


@transaction.atomic
def invite_accept(*, secret: str, user: User) -> Membership:
    """Use the invite for `user`: they become a member with its role (a member keeps a higher role they have, and a
    deactivated member is reactivated). Raises InviteError when the link cannot be used."""
    invite = invite_find(secret)
    if invite is None or not user.is_active:
        raise InviteError(UNUSABLE)
    now = timezone.now()
    # The claim: one conditional update, so the link works exactly once even when opened twice at the same moment.
    claimed = Invite.objects.filter(pk=invite.pk, used_at=None, revoked_at=None, expires_at__gt=now).update(
        used_at=now, used_by=user
    )
    if claimed != 1:
        raise InviteError(UNUSABLE)
    membership = Membership.objects.select_for_update().filter(project=invite.project, user=user).first()
    if membership is None:
        return Membership.objects.create(project=invite.project, user=user, role=invite.role)
    if not membership.is_active or _RANK[invite.role] > _RANK[membership.role]:
        membership.role, membership.deactivated_at = invite.role, None
        membership.save(update_fields=["role", "deactivated_at"])
    return membership


@transaction.atomic
def invite_signup(*, secret: str, username: str, email: str, password: str) -> tuple[User, Membership]:
    """Create an account from an invite and use the invite for it, together: a link that cannot be used creates no
    account. Call with values a UserCreationForm has checked (username free, password validated)."""
    if invite_find(secret) is None:
        raise InviteError(UNUSABLE)
    if User.objects.filter(username__iexact=username).exists():
        # The form checked; someone took the name since. Said plainly rather than as a database error.
        raise ValidationError("A user with that username already exists.")
    try:
        with transaction.atomic():
            user = User.objects.create_user(username=username, email=email, password=password)
    except IntegrityError:
        raise ValidationError("A user with that username already exists.") from None
    return user, invite_accept(secret=secret, user=user)


def invite_revoke(*, project: Project, invite_id: int) -> bool:
    """Withdraw an open invite of this project (another project's invite id finds nothing). True when withdrawn."""
    return bool(
        Invite.objects.filter(project=project, pk=invite_id, used_at=None, revoked_at=None).update(
            revoked_at=timezone.now()
        )
    )


def invites_open(*, project: Project) -> list[Invite]:
    """The project's invites that can still be used, newest first."""
    return list(
        Invite.objects.filter(project=project, used_at=None, revoked_at=None, expires_at__gt=timezone.now())
        .select_related("created_by")
        .order_by("-created_at")[:MAX_OPEN_INVITES]
    )
