"""People: invite links, adding by e-mail address, deactivating members, staff accounts and set-password links."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotate import invites, people
from annotate.models import Assignment, Invite, Item, Label, Membership
from annotate.services.projects import project_set_status
from annotate.services.queue import queue_fill
from tests.conftest import PASSWORD
from tests.factories import ItemFactory, UserFactory, label, membership

pytestmark = pytest.mark.django_db
User = get_user_model()
NEW_PASSWORD = "plum orchard 1987 lantern"


def _members_url(project) -> str:
    return reverse("project_members", args=[project.slug])


def _link(html: str) -> str:
    match = re.search(r'value="(http://testserver/invite/[^"]+/)"', html)
    assert match, "no invite link on the page"
    return match.group(1).removeprefix("http://testserver")


def _signup(client: Client, path: str, username: str) -> object:
    return client.post(path, {"username": username, "email": "", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD})


def _mail_server(settings) -> None:
    """What EMAIL_HOST turns on (annotate/settings.py), with Django's in-memory backend standing in for SMTP."""
    settings.EMAIL_CONFIGURED = True
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}


# --- Invites --------------------------------------------------------------------------------------------------


def test_a_lead_invites_an_annotator_who_signs_up_once_with_the_link(client, project, lead):
    client.force_login(lead)
    response = client.post(_members_url(project), {"action": "invite", "email": "", "role": "annotator"})
    assert response.status_code == 200
    path = _link(response.content.decode())
    secret = path.rstrip("/").rsplit("/", 1)[-1]
    invite = Invite.objects.get(project=project)
    # Only a hash is stored; the page that showed the link does not show it again.
    assert invite.token_hash == hashlib.sha256(secret.encode()).hexdigest() and secret not in str(invite.__dict__)
    assert secret not in client.get(_members_url(project)).content.decode()
    assert abs(invite.expires_at - invite.created_at - dt.timedelta(days=7)) < dt.timedelta(seconds=5)

    newcomer = Client()
    page = newcomer.get(path)
    assert page.status_code == 200 and "Join Support bot answers" in page.content.decode()
    response = _signup(newcomer, path, "nora-new")
    assert response.status_code == 302 and response.url == reverse("project_detail", args=[project.slug])
    user = User.objects.get(username="nora-new")
    assert user.check_password(NEW_PASSWORD)
    assert Membership.objects.get(project=project, user=user).role == "annotator"
    assert newcomer.get(reverse("label_queue", args=[project.slug])).status_code == 200

    # The link worked once: a second person gets the one refusal page and no account.
    other = Client()
    assert other.get(path).status_code == 404
    assert _signup(other, path, "second-comer").status_code == 404
    assert not User.objects.filter(username="second-comer").exists()
    invite.refresh_from_db()
    assert invite.used_by == user and invite.used_at is not None


def test_expired_withdrawn_and_unknown_links_get_the_same_refusal(client, project, lead):
    expired, expired_secret = invites.invite_create(project=project, role="annotator", created_by=lead)
    now = timezone.now()
    Invite.objects.filter(pk=expired.pk).update(
        created_at=now - dt.timedelta(days=8), expires_at=now - dt.timedelta(seconds=1)
    )
    withdrawn, withdrawn_secret = invites.invite_create(project=project, role="annotator", created_by=lead)
    assert invites.invite_revoke(project=project, invite_id=withdrawn.pk)
    pages = set()
    for secret in (expired_secret, withdrawn_secret, "never-made"):
        response = client.get(reverse("invite_open", args=[secret]))
        assert response.status_code == 404
        assert "Support bot answers" not in response.content.decode()
        pages.add(re.sub(r'"X-CSRFToken": "[^"]*"', "", response.content.decode()))
        assert _signup(client, reverse("invite_open", args=[secret]), f"u{len(pages)}").status_code == 404
    assert len(pages) == 1
    assert not User.objects.filter(username__startswith="u").exists()


def test_a_logged_in_user_joins_and_never_loses_a_higher_role(client, project, lead, outsider, annotator):
    _invite, secret = invites.invite_create(project=project, role="annotator", created_by=lead)
    client.force_login(outsider)
    path = reverse("invite_open", args=[secret])
    assert "Join the project" in client.get(path).content.decode()
    assert not Membership.objects.filter(project=project, user=outsider).exists()  # opening the link changes nothing
    assert client.post(path).status_code == 302
    assert Membership.objects.get(project=project, user=outsider).role == "annotator"
    # A lead joining with an annotator invite stays lead; an annotator invited as lead becomes lead.
    _invite, secret = invites.invite_create(project=project, role="annotator", created_by=lead)
    invites.invite_accept(secret=secret, user=lead)
    assert Membership.objects.get(project=project, user=lead).role == "lead"
    _invite, secret = invites.invite_create(project=project, role="lead", created_by=lead)
    invites.invite_accept(secret=secret, user=annotator)
    assert Membership.objects.get(project=project, user=annotator).role == "lead"


def test_only_a_lead_may_invite_and_never_above_their_own_role(project, lead, annotator, outsider):
    for user, role in ((annotator, "annotator"), (annotator, "lead"), (outsider, "annotator")):
        with pytest.raises(ValidationError, match="cannot invite"):
            invites.invite_create(project=project, role=role, created_by=user)
    with pytest.raises(ValidationError, match="cannot invite"):
        invites.invite_create(project=project, role="admin", created_by=lead)
    assert not Invite.objects.exists()
    staff = UserFactory(username="sid-staff", is_staff=True)
    invites.invite_create(project=project, role="lead", created_by=staff)
    assert Invite.objects.count() == 1


def test_a_link_read_as_open_by_two_requests_at_once_admits_only_one(project, lead, monkeypatch):
    invite, secret = invites.invite_create(project=project, role="annotator", created_by=lead)
    first, second = UserFactory(username="first"), UserFactory(username="second")
    stale = Invite.objects.select_related("project").get(pk=invite.pk)
    invites.invite_accept(secret=secret, user=first)
    # The second request read the invite before the first one used it: the conditional update still refuses it.
    monkeypatch.setattr(invites, "invite_find", lambda _secret: stale)
    with pytest.raises(invites.InviteError):
        invites.invite_accept(secret=secret, user=second)
    assert not Membership.objects.filter(project=project, user=second).exists()


def test_adding_by_email_answers_the_same_for_no_one_or_several_accounts(client, project, lead):
    UserFactory(username="solo", email="solo@example.org")
    UserFactory(username="twin-a", email="twin@example.org")
    UserFactory(username="twin-b", email="TWIN@example.org")
    client.force_login(lead)
    answers = set()
    addresses = ("nobody@example.org", "solo@example.org", "twin@example.org")
    for address in addresses:
        response = client.post(_members_url(project), {"action": "add", "identifier": address, "role": "annotator"})
        html = response.content.decode()
        assert response.status_code == 200
        for shown in addresses:  # the open invites list shows the addresses, never the accounts that have them
            html = html.replace(shown, "")
        assert not re.search(r"\b(solo|twin-a|twin-b)\b", html)
        notice = re.search(r'<div class="notice" role="status">(.*?)</div>', response.content.decode()).group(1)
        answers.add(notice.replace(address, "ADDRESS"))
    assert answers == {
        "Invite link for ADDRESS as annotator created. Copy it now and send it yourself: it is shown only once."
    }
    assert Membership.objects.filter(project=project).count() == 1
    assert Invite.objects.filter(project=project).count() == 3


def test_an_invite_for_an_address_is_emailed_when_a_server_is_configured(client, project, lead, settings, mailoutbox):
    _mail_server(settings)
    client.force_login(lead)
    response = client.post(_members_url(project), {"action": "invite", "email": "kim@example.org", "role": "lead"})
    assert "It was also e-mailed." in response.content.decode()
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["kim@example.org"]
    assert _link(response.content.decode()) in mailoutbox[0].body


def test_the_members_card_answers_an_htmx_invite_with_the_card_and_its_link(client, project, lead):
    client.force_login(lead)
    response = client.post(
        _members_url(project), {"action": "invite", "role": "annotator"}, headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html and 'id="members"' in html
    assert "/invite/" in html
    response = client.post(
        _members_url(project),
        {"action": "invite", "email": "not an address", "role": "annotator"},
        headers={"HX-Request": "true"},
    )
    assert "valid email" in response.content.decode() and Invite.objects.count() == 1


def test_a_lead_withdraws_an_invite_and_cannot_withdraw_another_projects(client, project, lead, outsider):
    mine, secret = invites.invite_create(project=project, role="annotator", created_by=lead)
    other_project = outsider.memberships.get().project
    theirs, _ = invites.invite_create(project=other_project, role="annotator", created_by=outsider)
    client.force_login(lead)
    client.post(_members_url(project), {"action": "withdraw", "invite": theirs.pk})
    client.post(_members_url(project), {"action": "withdraw", "invite": mine.pk})
    assert Invite.objects.get(pk=theirs.pk).revoked_at is None
    assert Invite.objects.get(pk=mine.pk).revoked_at is not None
    assert invites.invite_find(secret) is None


def test_a_refused_signup_keeps_the_link_usable_and_says_why(client, project, lead, annotator):
    invite, secret = invites.invite_create(project=project, role="annotator", created_by=lead)
    path = reverse("invite_open", args=[secret])
    response = _signup(client, path, annotator.username.upper())
    assert response.status_code == 422 and "already exists" in response.content.decode()
    response = client.post(path, {"username": "newbie", "password1": "123", "password2": "123"})
    assert response.status_code == 422 and "too short" in response.content.decode()
    assert 'value="newbie"' in response.content.decode()
    assert invites.invite_find(secret) is not None and not User.objects.filter(username="newbie").exists()
    assert _signup(client, path, "newbie").status_code == 302
    invite.refresh_from_db()
    assert invite.used_by.username == "newbie"


# --- Deactivating members -------------------------------------------------------------------------------------


def test_deactivating_a_member_frees_their_leases_keeps_labels_and_stops_labeling(client, project, lead, annotator):
    project_set_status(project=project, status="active")
    project.refresh_from_db()
    items = [ItemFactory(project=project) for _ in range(4)]
    label(items[0], annotator, "acceptable", "pass")
    queue_fill(project=project, annotator=annotator, rubric_version_id=project.current_rubric_id)
    assert Assignment.objects.filter(annotator=annotator).count() == 2
    client.force_login(lead)
    theirs = Membership.objects.get(project=project, user=annotator)
    response = client.post(_members_url(project), {"action": "deactivate", "membership": theirs.pk}, follow=True)
    assert "Deactivated ada-annotator. Their 1 label stays in the project." in response.content.decode()
    assert "deactivated" in response.content.decode()
    assert Membership.objects.get(pk=theirs.pk).deactivated_at is not None
    assert Label.objects.filter(annotator=annotator).count() == 1
    assert not Assignment.objects.filter(annotator=annotator).exists()
    assert sum(Item.objects.filter(project=project).values_list("n_leased", flat=True)) == 0

    annotator_client = Client()
    annotator_client.force_login(annotator)
    for name in ("project_detail", "label_queue"):
        assert annotator_client.get(reverse(name, args=[project.slug])).status_code == 404
    assert "Support bot answers" not in annotator_client.get(reverse("home")).content.decode()

    client.post(_members_url(project), {"action": "reactivate", "membership": theirs.pk})
    assert annotator_client.get(reverse("label_queue", args=[project.slug])).status_code == 200


def test_the_last_active_lead_cannot_be_deactivated(client, project, lead):
    client.force_login(lead)
    own = Membership.objects.get(project=project, user=lead)
    response = client.post(_members_url(project), {"action": "deactivate", "membership": own.pk})
    assert response.status_code == 422 and "only lead" in response.content.decode()
    second = membership(UserFactory(username="second-lead"), project, "lead")
    people.member_deactivate(project=project, membership_id=second.pk)
    # A deactivated lead does not count: the first lead is still the only one.
    with pytest.raises(ValidationError, match="only lead"):
        people.member_deactivate(project=project, membership_id=own.pk)


def test_a_lead_cannot_deactivate_a_member_of_another_project(client, project, lead, outsider):
    theirs = outsider.memberships.get()
    client.force_login(lead)
    response = client.post(_members_url(project), {"action": "deactivate", "membership": theirs.pk})
    assert response.status_code == 422
    assert Membership.objects.get(pk=theirs.pk).deactivated_at is None


# --- Staff: accounts and set-password links ---------------------------------------------------------------------


def test_staff_create_an_account_whose_set_password_link_works_once(client, db):
    staff = UserFactory(username="sid-staff", is_staff=True)
    client.force_login(staff)
    response = client.post(reverse("people"), {"action": "create", "username": "nadia", "email": ""})
    html = response.content.decode()
    assert response.status_code == 200 and "Created nadia" in html
    path = re.search(r'value="http://testserver(/reset/[^"]+/)"', html).group(1)
    user = User.objects.get(username="nadia")
    assert not user.has_usable_password()

    owner = Client()
    response = owner.get(path)  # Django moves the token out of the URL into the session, then asks for a password
    assert response.status_code == 302
    form_url = response.url
    assert "Set your password" in owner.get(form_url).content.decode()
    response = owner.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert response.status_code == 302 and response.url == reverse("password_reset_complete")
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    # Once: the same link no longer works.
    again = Client().get(path, follow=True)
    assert "cannot be used" in again.content.decode()


def test_a_password_link_is_refused_to_anyone_but_staff(client, lead, annotator):
    for user in (lead, annotator):
        client.force_login(user)
        assert client.get(reverse("people")).status_code == 403
        assert client.post(reverse("people"), {"action": "create", "username": "sneaky"}).status_code == 403
        assert client.post(reverse("people"), {"action": "link", "user": annotator.pk}).status_code == 403
        with pytest.raises(PermissionDenied):
            people.password_link(actor=user, user=annotator)
    assert not User.objects.filter(username="sneaky").exists()


def test_account_creation_refuses_a_taken_or_malformed_username(client, annotator):
    staff = UserFactory(username="sid-staff", is_staff=True)
    client.force_login(staff)
    for username, message in (("ADA-annotator", "is taken"), ("has space", "letters, digits")):
        response = client.post(reverse("people"), {"action": "create", "username": username})
        assert response.status_code == 422 and message in response.content.decode()
    assert User.objects.count() == 2


def test_a_password_link_is_emailed_when_a_server_is_configured(client, annotator, settings, mailoutbox):
    _mail_server(settings)
    staff = UserFactory(username="sid-staff", is_staff=True)
    client.force_login(staff)
    response = client.post(reverse("people"), {"action": "link", "user": annotator.pk})
    assert "It was also e-mailed." in response.content.decode()
    assert mailoutbox[0].to == [annotator.email] and "/reset/" in mailoutbox[0].body
    assert annotator.check_password(PASSWORD)  # the old password works until the new one is set


def test_staff_deactivate_an_account_which_frees_its_leases_everywhere_and_keeps_labels(client, project, annotator):
    project_set_status(project=project, status="active")
    project.refresh_from_db()
    items = [ItemFactory(project=project) for _ in range(3)]
    label(items[0], annotator, "acceptable", "pass")
    queue_fill(project=project, annotator=annotator, rubric_version_id=project.current_rubric_id)
    assert Assignment.objects.filter(annotator=annotator).exists()
    staff = UserFactory(username="sid-staff", is_staff=True)
    client.force_login(staff)
    response = client.post(reverse("people"), {"action": "deactivate", "user": annotator.pk})
    assert "Deactivated ada-annotator: 2 held item(s) went back to the queue" in response.content.decode()
    annotator.refresh_from_db()
    assert not annotator.is_active
    assert not Assignment.objects.filter(annotator=annotator).exists()
    assert sum(Item.objects.filter(project=project).values_list("n_leased", flat=True)) == 0
    assert Label.objects.filter(annotator=annotator).count() == 1
    response = Client().post(reverse("login"), {"username": annotator.username, "password": PASSWORD})
    assert response.status_code == 200 and "_auth_user_id" not in response.client.session
    response = client.post(reverse("people"), {"action": "deactivate", "user": staff.pk})
    assert response.status_code == 422 and "your own account" in response.content.decode()
    client.post(reverse("people"), {"action": "activate", "user": annotator.pk})
    annotator.refresh_from_db()
    assert annotator.is_active


def test_a_username_taken_between_the_form_and_the_signup_is_refused_and_the_link_kept(project, lead, annotator):
    _invite, secret = invites.invite_create(project=project, role="annotator", created_by=lead)
    with pytest.raises(ValidationError, match="already exists"):
        invites.invite_signup(secret=secret, username="ADA-annotator", email="", password=NEW_PASSWORD)
    assert invites.invite_find(secret) is not None
