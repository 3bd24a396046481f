"""The invariants the database itself holds: forms and services are not the last line."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from annotate import selectors
from annotate.models import Assignment, Criterion, Item, Label, Membership, Project, RubricVersion
from annotate.services.labels import label_validate_value
from annotate.services.projects import project_set_status
from annotate.services.rubrics import rubric_set_criteria
from tests.factories import DEFAULT_CRITERIA, ItemFactory, ProjectFactory, UserFactory, label

pytestmark = pytest.mark.django_db


def _write_and_check(fn) -> None:
    with transaction.atomic():
        fn()
        # Deferred constraints are checked at commit; make them fire inside this savepoint.
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def _refused(fn) -> None:
    with pytest.raises(IntegrityError):
        _write_and_check(fn)


def test_the_database_refuses_a_second_label_for_the_same_item_criterion_annotator_and_version(items, annotator):
    label(items[0], annotator, "acceptable", "pass")
    _refused(lambda: label(items[0], annotator, "acceptable", "fail"))
    assert Label.objects.count() == 1


def test_the_same_annotator_may_label_the_same_item_again_under_a_new_rubric_version(project, items, annotator):
    first = label(items[0], annotator, "acceptable", "pass")
    reworded = {**DEFAULT_CRITERIA[0], "description": "A demanding user would be satisfied with it as it is."}
    rubric_set_criteria(project=project, criteria=[reworded, *DEFAULT_CRITERIA[1:]])
    second = label(items[0], annotator, "acceptable", "fail")
    assert first.rubric_version.number == 1
    assert second.rubric_version.number == 2
    assert Label.objects.filter(item=items[0], annotator=annotator).count() == 2


def test_the_database_refuses_a_label_whose_criterion_belongs_to_another_rubric_version(project, items, annotator):
    old = selectors.criteria_current(project=project).get(key="acceptable")
    new_version = rubric_set_criteria(
        project=project,
        criteria=[*DEFAULT_CRITERIA[:2], {"key": "safe", "name": "Safe", "description": "Nothing harmful."}],
    )
    assert new_version is not None
    _refused(
        lambda: Label.objects.create(
            item=items[0],
            criterion=old,
            rubric_version=new_version,
            annotator=annotator,
            value="pass",
            created_at=timezone.now(),
        )
    )


@pytest.mark.parametrize(
    ("value", "shown_order"),
    [("maybe", None), ("pass", "ab"), ("a", None), ("tie", "xy"), ("", None)],
)
def test_the_database_refuses_impossible_label_values(items, annotator, value, shown_order):
    criterion = selectors.criteria_current(project=items[0].project).first()
    _refused(
        lambda: Label.objects.create(
            item=items[0],
            criterion=criterion,
            rubric_version_id=criterion.rubric_version_id,
            annotator=annotator,
            value=value,
            shown_order=shown_order,
            created_at=timezone.now(),
        )
    )


def test_the_database_refuses_an_overlap_outside_one_to_fifty(db):
    _refused(lambda: Project.objects.create(slug="zero", name="Zero", kind="binary", overlap=0))
    _refused(lambda: Project.objects.create(slug="many", name="Many", kind="binary", overlap=51))


def test_the_database_refuses_unknown_kinds_statuses_and_roles(project):
    _refused(lambda: Project.objects.create(slug="x", name="X", kind="ranking"))
    _refused(lambda: Project.objects.filter(pk=project.pk).update(status="deleted"))
    _refused(lambda: Membership.objects.create(user=UserFactory(), project=project, role="owner"))


def test_the_database_refuses_a_duplicate_external_id_in_a_project_but_not_across_projects(project):
    ItemFactory(project=project, external_id="ticket-1")
    _refused(lambda: ItemFactory(project=project, external_id="ticket-1", input="different"))
    ItemFactory(project=ProjectFactory(), external_id="ticket-1")
    assert Item.objects.filter(external_id="ticket-1").count() == 2


def test_the_database_refuses_an_unknown_split(project):
    _refused(
        lambda: (
            Item.objects.filter(project=project).update(split="holdout")
            or Item.objects.create(project=project, external_id="x", input="i", split="holdout", content_hash="h")
        )
    )


def test_the_database_refuses_a_second_membership_and_a_duplicate_rubric_number(project, annotator):
    _refused(lambda: Membership.objects.create(user=annotator, project=project, role="lead"))
    _refused(lambda: RubricVersion.objects.create(project=project, number=1))


def test_the_database_refuses_two_leases_on_one_item_for_one_annotator(items, annotator):
    version = selectors.rubric_current(project=items[0].project)
    expires = timezone.now() + timezone.timedelta(minutes=10)
    Assignment.objects.create(item=items[0], annotator=annotator, rubric_version=version, expires_at=expires)
    _refused(
        lambda: Assignment.objects.create(
            item=items[0], annotator=annotator, rubric_version=version, expires_at=expires
        )
    )


def test_editing_criteria_makes_a_new_rubric_version_and_keeps_the_old_one(project, lead):
    v1 = selectors.rubric_current(project=project)
    unchanged = rubric_set_criteria(project=project, criteria=DEFAULT_CRITERIA, actor=lead)
    assert unchanged is None
    edited = [dict(c) for c in DEFAULT_CRITERIA]
    edited[0]["description"] = "Would you ship it to the user unchanged?"
    v2 = rubric_set_criteria(project=project, criteria=edited, actor=lead, note="sharper wording")
    assert v2 is not None and v2.number == 2 and v2.created_by == lead
    assert Criterion.objects.filter(rubric_version=v1).count() == 3
    assert selectors.criteria_current(project=project).first().description.startswith("Would you ship")


def test_a_project_cannot_be_activated_with_fewer_than_three_criteria(db):
    project = ProjectFactory(criteria=DEFAULT_CRITERIA[:2])
    with pytest.raises(Exception, match="at least 3"):
        project_set_status(project=project, status="active")
    project.refresh_from_db()
    assert project.status == "draft"
    rubric_set_criteria(project=project, criteria=DEFAULT_CRITERIA)
    project_set_status(project=project, status="active")
    assert Project.objects.get(pk=project.pk).status == "active"


def test_an_active_project_cannot_drop_below_three_criteria(project):
    project_set_status(project=project, status="active")
    with pytest.raises(Exception, match="at least 3"):
        rubric_set_criteria(project=project, criteria=DEFAULT_CRITERIA[:2])
    assert selectors.rubric_current(project=project).number == 1


def test_labels_store_canonical_pairwise_values_with_the_order_shown(db):
    project = ProjectFactory(kind="pairwise")
    item = ItemFactory(project=project, output="", output_a="first", output_b="second")
    user = UserFactory()
    stored = label(item, user, "acceptable", "a", shown_order="ba")
    assert (stored.value, stored.shown_order) == ("a", "ba")
    with pytest.raises(Exception, match="not a pairwise label"):
        label_validate_value(project=project, value="pass", shown_order="ab")
