"""People: deactivating project members, and the staff's accounts and set-password links.

Set-password links use Django's PasswordResetTokenGenerator: the token is signed over the account's password hash
and last login, so it works once (setting the password changes the hash) and expires after
settings.PASSWORD_RESET_TIMEOUT. Nothing about it is stored. No e-mail server is needed: the link is shown to the
staff member, who hands it over; with EMAIL_HOST set it is e-mailed to the account's address too.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.tokens import default_token_generator
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from annotate.models import Assignment, Label, Membership, Project
from annotate.services.members import member_leases_release


def _membership_locked(project: Project, membership_id: int) -> Membership:
    # The project row first, as services.member_set_role and member_remove lock it: lead changes serialise.
    Project.objects.select_for_update().filter(pk=project.pk).first()
    membership = Membership.objects.select_related("user").filter(project=project, pk=membership_id).first()
    if membership is None:
        raise ValidationError("That person is not a member of this project.")
    return membership


@transaction.atomic
def member_deactivate(*, project: Project, membership_id: int) -> int:
    """Deactivate a member: they can no longer open or label the project, their leases are freed at once for
    others, their labels stay (agreement, exports). The last active lead cannot be deactivated. Returns how many
    labels they keep."""
    membership = _membership_locked(project, membership_id)
    if not membership.is_active:
        return Label.objects.filter(item__project=project, annotator=membership.user).count()
    if membership.role == Membership.Role.LEAD:
        others = (
            Membership.objects.filter(
                project=project, role=Membership.Role.LEAD, deactivated_at__isnull=True, user__is_active=True
            )
            .exclude(pk=membership.pk)
            .exists()
        )
        if not others:
            raise ValidationError(
                f"{membership.user.get_username()} is the project's only lead: make someone else lead first."
            )
    membership.deactivated_at = timezone.now()
    membership.save(update_fields=["deactivated_at"])
    member_leases_release(project=project, user=membership.user)
    return Label.objects.filter(item__project=project, annotator=membership.user).count()


@transaction.atomic
def member_reactivate(*, project: Project, membership_id: int) -> Membership:
    membership = _membership_locked(project, membership_id)
    if not membership.user.is_active:
        raise ValidationError(f"The account “{membership.user.get_username()}” is inactive: ask an administrator.")
    if not membership.is_active:
        membership.deactivated_at = None
        membership.save(update_fields=["deactivated_at"])
    return membership


# --- Staff: accounts and set-password links --------------------------------------------------------------------


def _require_staff(actor: User) -> None:
    if not (actor.is_active and actor.is_staff):
        raise PermissionDenied("Only staff manage accounts.")


@transaction.atomic
def account_create(*, actor: User, username: str, email: str = "") -> User:
    """A new active account without a password: its owner sets one through `password_link`."""
    _require_staff(actor)
    username = username.strip()
    email = email.strip()
    if not username:
        raise ValidationError("Enter a username.")
    try:
        UnicodeUsernameValidator()(username)
    except ValidationError:
        raise ValidationError(
            "A username may contain only letters, digits and @ . + - _ (up to 150 characters)."
        ) from None
    if len(username) > 150:
        raise ValidationError("A username may have at most 150 characters.")
    if email:
        try:
            validate_email(email)
        except ValidationError:
            raise ValidationError(f"“{email[:254]}” is not an e-mail address.") from None
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationError(f"The username “{username}” is taken; choose another.")
    user = User(username=username, email=email)
    user.set_unusable_password()
    user.save()
    return user


@transaction.atomic
def account_set_active(*, actor: User, user: User, active: bool) -> int:
    """Deactivate (or reactivate) an account. A deactivated account cannot log in or use its API tokens, and the
    items it held in every project go back to the queue at once; its labels and memberships stay. Staff cannot
    deactivate themselves. Returns how many leased items were freed."""
    _require_staff(actor)
    if user.pk == actor.pk and not active:
        raise ValidationError("You cannot deactivate your own account.")
    User.objects.filter(pk=user.pk).update(is_active=active)
    user.is_active = active
    if active:
        return 0
    project_ids = set(Assignment.objects.filter(annotator=user).values_list("item__project_id", flat=True).distinct())
    return sum(
        member_leases_release(project=project, user=user)
        for project in Project.objects.filter(pk__in=project_ids).order_by("pk")
    )


def password_link(*, actor: User, user: User) -> str:
    """The path of a one-time link that lets `user` choose a new password (their current one keeps working until
    then). Staff only."""
    _require_staff(actor)
    if not user.is_active:
        raise ValidationError(f"The account “{user.get_username()}” is inactive: activate it first.")
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    return reverse("password_reset_confirm", args=[uid, default_token_generator.make_token(user)])


def password_link_send(*, user: User, url: str) -> bool:
    """E-mail the link to the account's address when an e-mail server is configured. True when sent."""
    if not (settings.EMAIL_CONFIGURED and user.email):
        return False
    hours = settings.PASSWORD_RESET_TIMEOUT // 3600
    send_mail(
        subject="Set your annotate password",
        message=(
            f"Open this link to choose a password for the account “{user.get_username()}” "
            f"(it works once, within {hours} hours):\n{url}\n"
        ),
        from_email=None,
        recipient_list=[user.email],
    )
    return True


def accounts_list() -> list[User]:
    """Every account that can log in, or could (imported identities are not accounts), with its project count."""
    return list(
        User.objects.filter(imported__isnull=True)
        .annotate(n_projects=Count("memberships", filter=Q(memberships__deactivated_at__isnull=True)))
        .order_by("username")[:1000]
    )
