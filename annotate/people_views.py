"""People pages: a project's members and invites (leads), the invite link itself (anyone holding it), and accounts
with set-password links (staff).

Who may do what:
- `project_members`: leads only, through `annotate.selectors.project_for_user(..., role="lead")`; anyone else gets
  the 404 of a project that does not exist.
- `invite_open`: whoever holds a usable link sees the project's name and its role, and may sign up or join; any other
  link (unknown, used, expired, withdrawn) gets one and the same 404 page.
- `people`: staff only (403 for anyone else: it belongs to no project, there is nothing to hide).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, F, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from django_htmx.http import HttpResponseClientRedirect

from annotate import invites, people, selectors, visibility
from annotate.forms import AccountCreateForm, AnnotatorFieldsForm, InviteForm, MemberAddForm, MemberRoleForm, SignupForm
from annotate.http import AuthedRequest, wants_partial
from annotate.models import Membership, Project
from annotate.services.members import member_add, member_remove, member_set_role

LEAD = Membership.Role.LEAD


def _status(request: AuthedRequest, *, failed: bool) -> int:
    """422 for a refused plain POST; 200 for htmx, which swaps only 2xx answers in and the error is in the swap."""
    return 422 if failed and not wants_partial(request) else 200


# --- A project's members (leads) -------------------------------------------------------------------------------


@never_cache  # a fresh invite link is on the page once: no cache may keep it
@require_http_methods(["GET", "POST"])
@login_required
def project_members(request: AuthedRequest, slug: str) -> HttpResponse:
    """Invite (a link, optionally for an e-mail address), add by username, change a role, deactivate or reactivate,
    remove; and choose what annotators see of each item. Removing and deactivating keep the person's labels."""
    project, _role = selectors.project_for_user(request.user, slug, role=LEAD)
    add_form, invite_form = MemberAddForm(), InviteForm()
    error = notice = ""
    new_link = ""
    if request.method == "POST":
        action = request.POST.get("action", "")
        try:
            if action == "add" and "@" in request.POST.get("identifier", ""):
                # An address always becomes an invite, whoever has it: the answer never says which account that is.
                invite_form = InviteForm(
                    {"email": request.POST["identifier"].strip(), "role": request.POST.get("role")}
                )
                notice, new_link = _invite(request, project, invite_form)
                invite_form = InviteForm()
            elif action == "invite":
                invite_form = InviteForm(request.POST)
                notice, new_link = _invite(request, project, invite_form)
                invite_form = InviteForm()
            elif action == "add":
                add_form = MemberAddForm(request.POST)
                if not add_form.is_valid():
                    raise ValidationError("Enter a username or an email address, and a role.")
                membership = member_add(
                    project=project,
                    identifier=add_form.cleaned_data["identifier"],
                    role=add_form.cleaned_data["role"],
                )
                add_form = MemberAddForm()
                notice = f"Added {membership.user.get_username()} as {membership.get_role_display().lower()}."
            elif action == "withdraw":
                if not invites.invite_revoke(project=project, invite_id=_int(request.POST.get("invite"))):
                    raise ValidationError("That invite is no longer open.")
                notice = "Invite withdrawn: its link no longer works."
            elif action == "fields":
                fields_form = AnnotatorFieldsForm(request.POST)
                if not fields_form.is_valid():
                    raise ValidationError("List at most 20 field names.")
                fields = visibility.fields_parse(fields_form.cleaned_data["annotator_fields"])
                visibility.project_set_annotator_fields(project=project, fields=fields)
                notice = (
                    f"Annotators now see: {', '.join(fields)}." if fields else "Annotators now see only the item text."
                )
            elif action in {"role", "remove", "deactivate", "reactivate"}:
                notice = _member_action(request, project, action, _int(request.POST.get("membership")))
            else:
                raise ValidationError("Unknown action.")
        except ValidationError as exc:
            error = " ".join(exc.messages)
        role = selectors.project_role(request.user, project) if not error else LEAD
        if role != LEAD:
            # The lead removed themselves or stepped down: this page is no longer theirs.
            messages.success(request, notice)
            away = reverse("project_detail", args=[project.slug]) if role else reverse("home")
            return HttpResponseClientRedirect(away) if wants_partial(request) else redirect(away)
        if not wants_partial(request) and not error and not new_link:
            messages.success(request, notice)
            return redirect("project_members", slug=project.slug)
    context = {
        "project": project,
        "add_form": add_form,
        "invite_form": invite_form,
        "members": _members(project),
        "invites": invites.invites_open(project=project),
        "roles": Membership.Role.choices,
        "fields": ", ".join(project.annotator_fields or []),
        "known_keys": visibility.metadata_keys(project),
        "error": error,
        "notice": notice,
        "new_link": new_link,
        "invite_days": settings.INVITE_EXPIRY_DAYS,
    }
    template = "annotate/setup/members.html" + ("#members" if wants_partial(request) else "")
    return render(request, template, context, status=_status(request, failed=bool(error)))


def _invite(request: AuthedRequest, project: Project, form: InviteForm) -> tuple[str, str]:
    if not form.is_valid():
        raise ValidationError(" ".join(str(e) for errors in form.errors.values() for e in errors))
    invite, secret = invites.invite_create(
        project=project,
        role=form.cleaned_data["role"],
        created_by=request.user,
        email=form.cleaned_data["email"] or "",
    )
    link = request.build_absolute_uri(reverse("invite_open", args=[secret]))
    sent = invites.invite_send(invite=invite, url=link)
    whom = f" for {invite.email}" if invite.email else ""
    how = " It was also e-mailed." if sent else " Copy it now and send it yourself: it is shown only once."
    return f"Invite link{whom} as {invite.get_role_display().lower()} created.{how}", link


def _member_action(request: AuthedRequest, project: Project, action: str, membership_id: int) -> str:
    name = _member_name(project, membership_id)
    if action == "role":
        role_form = MemberRoleForm(request.POST)
        if not role_form.is_valid():
            raise ValidationError("Choose lead or annotator.")
        membership = member_set_role(project=project, membership_id=membership_id, role=role_form.cleaned_data["role"])
        return f"{name} is now {membership.get_role_display().lower()}."
    if action == "reactivate":
        people.member_reactivate(project=project, membership_id=membership_id)
        return f"{name} is active again."
    kept = (
        member_remove(project=project, membership_id=membership_id)
        if action == "remove"
        else people.member_deactivate(project=project, membership_id=membership_id)
    )
    labels = f"{kept} label stays" if kept == 1 else f"{kept} labels stay"
    done = "Removed" if action == "remove" else "Deactivated"
    return f"{done} {name}. Their {labels} in the project. The items they held are free again."


def _int(value: str | None) -> int:
    try:
        return int(value or "")
    except ValueError:
        raise ValidationError("That person is not a member of this project.") from None


def _member_name(project: Project, membership_id: int) -> str:
    username = (
        Membership.objects.filter(project=project, pk=membership_id).values_list("user__username", flat=True).first()
    )
    return username or "the member"


def _members(project: Project) -> list[Membership]:
    """Members with how many labels each gave in the project (all rubric versions): active leads first."""
    return list(
        project.memberships.select_related("user")
        .annotate(n_labels=Count("user__labels", filter=Q(user__labels__item__project=project)))
        .order_by(F("deactivated_at").asc(nulls_first=True), "-role", "user__username")
    )


# --- The invite link (anyone holding it) ------------------------------------------------------------------------


@never_cache
@require_http_methods(["GET", "POST"])
def invite_open(request: HttpRequest, secret: str) -> HttpResponse:
    """Sign up with the invite, or join with it when logged in. The page is the same for every unusable link."""
    invite = invites.invite_find(secret)
    if invite is None:
        return render(request, "annotate/invite.html", {"unusable": invites.UNUSABLE}, status=404)
    form = SignupForm(initial={"email": invite.email})
    error = ""
    if request.method == "POST":
        try:
            if request.user.is_authenticated:
                invites.invite_accept(secret=secret, user=request.user)
                messages.success(request, f"You joined {invite.project.name}.")
                return redirect("project_detail", slug=invite.project.slug)
            form = SignupForm(request.POST)
            if form.is_valid():
                user, _membership = invites.invite_signup(
                    secret=secret,
                    username=form.cleaned_data["username"],
                    email=form.cleaned_data.get("email") or "",
                    password=form.cleaned_data["password1"],
                )
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
                messages.success(request, f"Welcome, {user.get_username()}: you joined {invite.project.name}.")
                return redirect("project_detail", slug=invite.project.slug)
        except invites.InviteError as exc:
            return render(request, "annotate/invite.html", {"unusable": " ".join(exc.messages)}, status=404)
        except ValidationError as exc:
            error = " ".join(exc.messages)
    context = {"invite": invite, "form": form, "error": error, "login_next": request.get_full_path()}
    failed = request.method == "POST"
    return render(request, "annotate/invite.html", context, status=422 if failed else 200)


# --- Accounts (staff) -------------------------------------------------------------------------------------------


@never_cache  # a set-password link is on the page once
@require_http_methods(["GET", "POST"])
@login_required
def people_page(request: AuthedRequest) -> HttpResponse:
    """Create accounts and make one-time set-password links. No e-mail server needed: the link is shown here."""
    if not request.user.is_staff:
        raise PermissionDenied("Only staff manage accounts; a project's lead invites people from its Members page.")
    form = AccountCreateForm()
    error = notice = link = ""
    if request.method == "POST":
        action = request.POST.get("action", "")
        try:
            if action == "create":
                form = AccountCreateForm(request.POST)
                if not form.is_valid():
                    raise ValidationError(" ".join(str(e) for errors in form.errors.values() for e in errors))
                user = people.account_create(
                    actor=request.user,
                    username=form.cleaned_data["username"],
                    email=form.cleaned_data["email"] or "",
                )
                form = AccountCreateForm()
                notice, link = _password_link(request, user, "Created")
            elif action in {"link", "deactivate", "activate"}:
                account = User.objects.filter(pk=_int(request.POST.get("user")), imported__isnull=True).first()
                if account is None:
                    raise ValidationError("No such account.")
                if action == "link":
                    notice, link = _password_link(request, account, "Made a set-password link for")
                else:
                    freed = people.account_set_active(
                        actor=request.user,
                        user=account,
                        active=action == "activate",
                    )
                    notice = (
                        f"Reactivated {account.get_username()}."
                        if action == "activate"
                        else f"Deactivated {account.get_username()}: {freed} held item(s) went back to the queue; "
                        "their labels stay."
                    )
            else:
                raise ValidationError("Unknown action.")
        except ValidationError as exc:
            error = " ".join(exc.messages)
    context = {
        "form": form,
        "accounts": people.accounts_list(),
        "error": error,
        "notice": notice,
        "link": link,
        "reset_hours": settings.PASSWORD_RESET_TIMEOUT // 3600,
    }
    return render(request, "annotate/people.html", context, status=422 if error else 200)


def _password_link(request: AuthedRequest, user: User, done: str) -> tuple[str, str]:
    link = request.build_absolute_uri(people.password_link(actor=request.user, user=user))
    sent = people.password_link_send(user=user, url=link)
    how = " It was also e-mailed." if sent else " Copy it now and hand it over: it is shown only once."
    return f"{done} {user.get_username()}: their link sets a password, once.{how}", link
