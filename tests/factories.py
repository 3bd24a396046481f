"""Factories for the data model. Projects get their rubric through the service, as in real use."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from annotate import selectors
from annotate.models import Item, Label, Membership, Project
from annotate.services.items import item_build
from annotate.services.members import membership_set
from annotate.services.rubrics import rubric_set_criteria

User = get_user_model()

DEFAULT_CRITERIA = [
    {"key": "acceptable", "name": "Acceptable", "description": "A user would be satisfied with it as it is."},
    {"key": "follows_instructions", "name": "Follows the instruction", "description": "Does what was asked."},
    {
        "key": "factually_correct",
        "name": "Factually correct",
        "description": "No factual or arithmetic error.",
    },
]


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.django.Password("correct horse battery staple")


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project
        skip_postgeneration_save = True

    slug = factory.Sequence(lambda n: f"project-{n}")
    name = factory.Sequence(lambda n: f"Project {n}")
    kind = Project.Kind.BINARY
    overlap = 2

    @factory.post_generation
    def criteria(self, create, extracted, **kwargs):
        if create and extracted is not False:
            rubric_set_criteria(project=self, criteria=extracted or DEFAULT_CRITERIA)


class ItemFactory(factory.django.DjangoModelFactory):
    """Builds through services.item_build so split and content hash are what production computes."""

    class Meta:
        model = Item

    project = factory.SubFactory(ProjectFactory)
    input = factory.Sequence(lambda n: f"Rewrite sentence {n} without errors.")
    output = factory.Sequence(lambda n: f"Sentence {n}, rewritten.")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        project = kwargs.pop("project")
        external_id = kwargs.pop("external_id", None)
        item = item_build(project=project, fields=kwargs, external_id=external_id)
        item.save()
        return item


def membership(user, project, role=Membership.Role.ANNOTATOR) -> Membership:
    return membership_set(project=project, user=user, role=role)


def label(item: Item, annotator, key: str, value: str, **kwargs) -> Label:
    criterion = selectors.criteria_current(project=item.project).get(key=key)
    return Label.objects.create(
        item=item,
        criterion=criterion,
        rubric_version_id=criterion.rubric_version_id,
        annotator=annotator,
        value=value,
        shown_order=kwargs.pop("shown_order", "ab" if item.project.is_pairwise else None),
        created_at=kwargs.pop("created_at", timezone.now()),
        **kwargs,
    )


# The reference-kinds project (issue 15): per item of the "acceptable" criterion, its labels by three annotators, a
# lead's gold label, and the reference kind and label that stats.reference gives it. "WRONG" in an output makes the
# keyword stand-in judge fail it.
MIXED_REFERENCE = {
    "three-agree": ("ppp", None, "majority", "pass"),
    "three-two-one": ("ppf", None, "majority", "pass"),
    "two-agree": ("ff", None, "majority", "fail"),
    "two-split": ("pf", None, "unsettled", None),
    "one-fail": ("f", None, "single", "fail"),
    "one-pass": ("p", None, "single", "pass"),
    "gold-over-two": ("pp", "fail", "gold", "fail"),
    "gold-over-one": ("p", "fail", "gold", "fail"),
    "gold-only": ("", "pass", "gold", "pass"),
    "unlabeled": ("", None, None, None),
}


def mixed_reference_items(project: Project, annotators, lead) -> dict[str, Item]:
    """The MIXED_REFERENCE items (1, 2 and 3 labels per item, gold labels, an unlabeled item) in `project`."""
    from annotate.models import GoldLabel

    criterion = selectors.criteria_current(project=project).get(key="acceptable")
    items = {}
    for n, (name, (votes, gold, _kind, _reference)) in enumerate(MIXED_REFERENCE.items()):
        output = f"Answer {n}." if n % 2 else f"Answer {n}, WRONG."
        items[name] = item_build(
            project=project, fields={"input": f"Question {n}?", "output": output}, external_id=name
        )
        items[name].save()
        for user, vote in zip(annotators, votes, strict=False):
            label(items[name], user, "acceptable", {"p": "pass", "f": "fail"}[vote])
        if gold is not None:
            GoldLabel.objects.create(item=items[name], criterion=criterion, value=gold, set_by=lead)
    return items


def migrate_to_latest() -> None:
    """Apply every migration: a test that migrated the schema back leaves it whole for the tests after it."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
