"""The admin is for looking: no registered model of annotate or judges can be added, changed or deleted through it
(the services keep invariants the admin would bypass), while every list and row still opens for staff.

The tests walk `admin.site._registry`, so a model registered later with a writable admin fails them. Django's own
User and Group admins are left as Django ships them: they delete no user with memberships (Django's admin asks for the
delete permission on every related row), and deleting a project's only lead is refused by the model anyway
(annotate.models.cascade_unless_only_lead), for `manage.py shell` too.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.db.models import Model, ProtectedError
from django.forms.models import model_to_dict
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotate import tokens
from annotate.models import (
    ApiToken,
    Assignment,
    DailySample,
    ImportedUser,
    ImportJob,
    Item,
    Membership,
    ProductionRecord,
    Project,
    RubricVersion,
)
from judges.models import CachedCompletion, Judge, JudgeRun, JudgeVersion, Verdict
from tests.annotate.test_tasks import _lease
from tests.factories import ItemFactory, ProjectFactory, UserFactory, label, membership

OURS = {"annotate", "judges"}
# Actions an admin may offer, each of which calls a service (and is tested below).
SERVICE_ACTIONS = {ApiToken: {"revoke"}}


def _registered() -> list[tuple[type[Model], admin.ModelAdmin]]:
    """The admins of our apps' models (Django's User and Group admins and django-axes' lockout admins stay theirs)."""
    return [
        (model, model_admin) for model, model_admin in admin.site._registry.items() if model._meta.app_label in OURS
    ]


def _url(model: type[Model], view: str, *args: object) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _snapshot(obj: Model) -> dict[str, object]:
    obj.refresh_from_db()
    return model_to_dict(obj)


@pytest.fixture
def staff(db) -> User:
    return UserFactory(username="root-admin", is_staff=True, is_superuser=True)


@pytest.fixture
def staff_client(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def one_of_each(project, lead, annotator) -> Project:
    """At least one row of every model the admin shows, so each change page can be opened and posted to."""
    item = ItemFactory(project=project, external_id="item-1")
    rubric = RubricVersion.objects.filter(project=project).latest("number")
    label(item, annotator, "acceptable", "pass")
    Assignment.objects.create(
        item=ItemFactory(project=project),
        annotator=annotator,
        rubric_version=rubric,
        expires_at=timezone.now() + dt.timedelta(minutes=5),
    )
    tokens.token_create(user=lead, name="ci")
    ImportJob.objects.create(
        project=project, created_by=lead, kind="items", filename="items.jsonl", file_format="jsonl"
    )
    ImportedUser.objects.create(user=UserFactory(username="imported:rater-7"), project=project)
    now = timezone.now()
    today = timezone.localdate(now)
    ProductionRecord.objects.create(
        project=project, input="Q?", output="A.", content_hash="0" * 64, received_at=now, received_on=today
    )
    DailySample.objects.create(project=project, day=today, records_day=today - dt.timedelta(days=1), seed="s")
    judge = Judge.objects.create(project=project, criterion_key="acceptable", name="Acceptable judge", created_by=lead)
    version = JudgeVersion.objects.create(judge=judge, number=1, user_template="{input}", endpoint="standin", model="m")
    run = JudgeRun.objects.create(project=project, version=version, rubric_version=rubric, n_items=1, n_calls=1)
    Verdict.objects.create(run=run, item=item, order="one", status="ok", value="pass")
    CachedCompletion.objects.create(key="k" * 64, endpoint="standin", model="m", content="PASS")
    return project


def test_every_admin_list_and_row_opens_for_staff(staff_client, one_of_each):
    for model, _model_admin in _registered():
        obj = model._default_manager.first()
        assert obj is not None, f"one_of_each makes no {model.__name__}: add one, so its admin is tested"
        assert staff_client.get(_url(model, "changelist")).status_code == 200, model
        assert staff_client.get(_url(model, "changelist"), {"q": "x"}).status_code == 200, model
        page = staff_client.get(_url(model, "change", obj.pk))
        assert page.status_code == 200, model
        assert b'name="_save"' not in page.content, f"{model.__name__}'s page offers to save"


def test_no_admin_adds_changes_or_deletes_a_row(staff_client, one_of_each):
    for model, _model_admin in _registered():
        obj = model._default_manager.first()
        assert obj is not None
        before, count = _snapshot(obj), model._default_manager.count()
        data = {name: "changed" for name in before if isinstance(before[name], str)}
        assert staff_client.post(_url(model, "change", obj.pk), data).status_code == 403, model
        assert staff_client.post(_url(model, "add"), data).status_code == 403, model
        assert staff_client.get(_url(model, "delete", obj.pk)).status_code == 403, model
        assert staff_client.post(_url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403, model
        # The bulk delete action is not offered, so posting it deletes nothing.
        staff_client.post(
            _url(model, "changelist"), {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"}
        )
        assert _snapshot(obj) == before, model
        assert model._default_manager.count() == count, model


def test_no_admin_or_inline_grants_a_write_and_actions_call_services(rf, staff, one_of_each):
    request = rf.get("/admin/")
    request.user = staff
    for model, model_admin in _registered():
        obj = model._default_manager.first()
        assert not model_admin.has_add_permission(request), model
        assert not model_admin.has_change_permission(request, obj), model
        assert not model_admin.has_delete_permission(request, obj), model
        assert set(model_admin.get_actions(request)) <= SERVICE_ACTIONS.get(model, set()), model
        for inline in model_admin.get_inline_instances(request, obj):
            assert not inline.has_add_permission(request, obj), inline
            assert not inline.has_change_permission(request, obj), inline
            assert not inline.has_delete_permission(request, obj), inline


def test_the_project_page_shows_its_members_read_only(staff_client, one_of_each, lead):
    page = staff_client.get(_url(Project, "change", one_of_each.pk))
    assert page.status_code == 200
    assert lead.username.encode() in page.content
    for field in ("user", "role", "deactivated_at", "DELETE"):
        assert f'name="memberships-0-{field}"'.encode() not in page.content


def test_staff_revoke_a_token_through_the_users_own_revoke(staff_client, one_of_each, lead):
    token = ApiToken.objects.get(user=lead)
    response = staff_client.post(
        _url(ApiToken, "changelist"), {"action": "revoke", "_selected_action": [token.pk]}, follow=True
    )
    assert response.status_code == 200 and b"Revoked 1 token(s)." in response.content
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert tokens.token_authenticate(f"{tokens.TOKEN_PREFIX}_{token.prefix}_anything") is None


def test_deleting_the_only_lead_of_a_project_is_refused(staff_client, project, lead, annotator):
    with pytest.raises(ProtectedError, match=r"Membership\.user"):
        lead.delete()
    # Django's user admin refuses earlier: it deletes no user whose memberships the (read-only) admin cannot delete.
    page = staff_client.get(_url(User, "delete", lead.pk))
    assert page.status_code == 200 and b"Cannot delete user" in page.content
    staff_client.post(_url(User, "delete", lead.pk), {"post": "yes"})
    assert User.objects.filter(pk=lead.pk).exists()
    assert Membership.objects.filter(user=lead, project=project, role="lead").exists()


def test_a_lead_can_be_deleted_once_another_lead_remains(project, lead, annotator):
    membership(annotator, project, Membership.Role.LEAD)
    lead.delete()
    assert list(Membership.objects.filter(project=project, role="lead").values_list("user", flat=True)) == [
        annotator.pk
    ]


def test_deleting_both_leads_at_once_is_refused(project, lead):
    second = UserFactory(username="second-lead")
    membership(second, project, Membership.Role.LEAD)
    other = ProjectFactory(slug="other", name="Other")
    membership(second, other, Membership.Role.ANNOTATOR)
    with pytest.raises(ProtectedError):
        User.objects.filter(pk__in=[lead.pk, second.pk]).delete()
    assert Membership.objects.filter(project=project, role="lead").count() == 2


def test_deleting_a_user_releases_their_leases_so_the_items_counts_stay_right(project, items, annotator):
    lease = _lease(project, annotator, minutes=5)
    assert Item.objects.get(pk=lease.item_id).n_leased == 1
    annotator.delete()
    assert not Assignment.objects.exists()
    assert Item.objects.get(pk=lease.item_id).n_leased == 0
