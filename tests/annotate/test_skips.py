"""Skipped items come back: after the project's delay, at the end of the annotator's queue; listed and reopened from
the Skipped page; counted by the empty queue. Runs on PostgreSQL and again on SQLite (make test-sqlite)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse
from django.utils import timezone

from annotate import selectors, skips, specs, tokens
from annotate.models import Assignment, Item, Project
from annotate.services.errors import ItemNotNeeded, QueueError
from annotate.services.labels import label_submit
from annotate.services.projects import project_apply_spec, project_set_status
from annotate.services.queue import queue_claim, queue_skip
from tests.factories import ItemFactory, migrate_to_latest

pytestmark = pytest.mark.django_db

VALUES = {"acceptable": "pass", "follows_instructions": "pass", "factually_correct": "fail"}
FORM = {f"c-{key}": value for key, value in VALUES.items()} | {"note": ""}


@pytest.fixture
def active(project):
    project_set_status(project=project, status="active")
    project.refresh_from_db()
    return project


def _claim(project, user):
    return queue_claim(project=project, annotator=user, rubric_version_id=project.current_rubric_id)


def _submit(project, user, item):
    return label_submit(
        project=project,
        annotator=user,
        item_id=item.pk,
        criteria=selectors.criteria_of_version(project.current_rubric_id),
        values=VALUES,
        submission_key=f"k{item.pk}-{user.pk}",
    )


def _age_skip(user, item, minutes: float) -> None:
    """Pretend the skip was made `minutes` ago."""
    Assignment.objects.filter(annotator=user, item=item, state="skipped").update(
        skipped_at=timezone.now() - dt.timedelta(minutes=minutes)
    )


def _n_leased_is_true(project) -> None:
    for item in Item.objects.filter(project=project):
        assert item.n_leased == Assignment.objects.filter(item=item, state="leased").count(), item.external_id


def test_a_skipped_item_comes_back_after_the_delay_and_only_after_every_fresh_item(active, annotator):
    first, second, third = (ItemFactory(project=active) for _ in range(3))
    Item.objects.filter(pk=first.pk).update(priority=2)  # claimed first
    assert _claim(active, annotator).pk == first.pk
    queue_skip(project=active, annotator=annotator, item_id=first.pk)
    _age_skip(annotator, first, 61)  # due already: it still waits behind the fresh items
    fresh = {_claim(active, annotator).pk, _claim(active, annotator).pk}
    assert fresh == {second.pk, third.pk}
    back = _claim(active, annotator)
    assert back is not None and back.pk == first.pk
    assert Assignment.objects.get(annotator=annotator, item=first).state == "leased"
    assert _claim(active, annotator) is None
    _n_leased_is_true(active)
    _submit(active, annotator, back)
    assert not Assignment.objects.filter(annotator=annotator, item=first).exists()
    _n_leased_is_true(active)


def test_a_skipped_item_stays_out_until_the_delay_the_lead_set_has_passed(active, annotator):
    only = ItemFactory(project=active)
    active.skip_return_minutes = 30
    active.save()
    _claim(active, annotator)
    queue_skip(project=active, annotator=annotator, item_id=only.pk)
    _age_skip(annotator, only, 29)
    assert _claim(active, annotator) is None
    _age_skip(annotator, only, 31)
    assert _claim(active, annotator).pk == only.pk


def test_a_delay_of_zero_brings_a_skipped_item_back_at_once_behind_fresh_ones(active, annotator):
    active.skip_return_minutes = 0
    active.save()
    skipped, fresh = ItemFactory(project=active), ItemFactory(project=active)
    Item.objects.filter(pk=skipped.pk).update(priority=2)  # claimed first
    assert _claim(active, annotator).pk == skipped.pk
    queue_skip(project=active, annotator=annotator, item_id=skipped.pk)
    assert _claim(active, annotator).pk == fresh.pk
    assert _claim(active, annotator).pk == skipped.pk


def test_a_skipped_item_others_have_filled_does_not_come_back(active, annotator, other_annotator):
    active.overlap = 1
    active.save()
    only = ItemFactory(project=active)
    _claim(active, annotator)
    queue_skip(project=active, annotator=annotator, item_id=only.pk)
    _submit(active, other_annotator, _claim(active, other_annotator))
    _age_skip(annotator, only, 120)
    assert _claim(active, annotator) is None
    summary = skips.skip_summary(project=active, annotator=annotator)
    assert (summary.n_skipped, summary.n_coming_back, summary.first_return) == (1, 0, None)
    with pytest.raises(ItemNotNeeded, match="all the labels it needs"):
        skips.skip_reopen(project=active, annotator=annotator, item_id=only.pk)


def test_a_skip_while_the_item_waits_for_others_keeps_its_first_time(active, annotator):
    only = ItemFactory(project=active)
    _claim(active, annotator)
    queue_skip(project=active, annotator=annotator, item_id=only.pk)
    _age_skip(annotator, only, 10)
    before = Assignment.objects.get(annotator=annotator, item=only).skipped_at
    queue_skip(project=active, annotator=annotator, item_id=only.pk)  # a second click, another tab
    assert Assignment.objects.get(annotator=annotator, item=only).skipped_at == before
    _n_leased_is_true(active)


def test_reopen_leases_a_skipped_item_now_whatever_the_delay_and_only_for_its_skipper(
    active, annotator, other_annotator
):
    only = ItemFactory(project=active)
    _claim(active, annotator)
    queue_skip(project=active, annotator=annotator, item_id=only.pk)
    with pytest.raises(QueueError, match="not among your skipped items"):
        skips.skip_reopen(project=active, annotator=other_annotator, item_id=only.pk)
    assert skips.skip_reopen(project=active, annotator=annotator, item_id=only.pk).pk == only.pk
    assert skips.skip_reopen(project=active, annotator=annotator, item_id=only.pk).pk == only.pk  # twice: one lease
    assert Item.objects.get(pk=only.pk).n_leased == 1
    assert Assignment.objects.get(annotator=annotator, item=only).state == "leased"
    _n_leased_is_true(active)


def test_a_skip_without_its_time_is_refused_by_the_database(active, annotator):
    only = ItemFactory(project=active)
    _claim(active, annotator)
    with pytest.raises(IntegrityError), transaction.atomic():
        Assignment.objects.filter(annotator=annotator, item=only).update(state="skipped")


# --- Pages ----------------------------------------------------------------------------------------------------


def _skip_current(client, project):
    page = client.get(reverse("label_queue", args=[project.slug]))
    item = page.context["current"].item
    client.post(reverse("label_skip", args=[project.slug, item.pk]))
    return item


def test_the_empty_queue_counts_skipped_items_and_says_when_they_come_back(client, active, annotator):
    only = ItemFactory(project=active)
    client.force_login(annotator)
    assert _skip_current(client, active).pk == only.pk
    skipped_at = Assignment.objects.get(annotator=annotator, item=only).skipped_at
    back = timezone.localtime(skipped_at + dt.timedelta(minutes=60)).strftime("%H:%M")
    page = client.get(reverse("label_queue", args=[active.slug])).content.decode()
    assert f"No items left for you; 1 skipped item comes back after {back}" in page
    assert reverse("label_skipped", args=[active.slug]) in page
    # The htmx answer that finds the queue empty says the same.
    part = client.post(reverse("label_next", args=[active.slug]), {"page_items": []}, headers={"HX-Request": "true"})
    assert f"1 skipped item comes back after {back}" in part.content.decode()


def test_the_skipped_list_shows_my_skips_and_reopen_puts_one_first_on_the_labeling_page(
    client, active, annotator, other_annotator
):
    for _ in range(4):
        ItemFactory(project=active)
    client.force_login(annotator)
    skipped = _skip_current(client, active)
    listing = client.get(reverse("label_skipped", args=[active.slug]))
    assert listing.status_code == 200
    html = listing.content.decode()
    assert skipped.input in html and "Reopen" in html
    client.force_login(other_annotator)
    assert skipped.input not in client.get(reverse("label_skipped", args=[active.slug])).content.decode()
    refused = client.post(reverse("label_reopen", args=[active.slug, skipped.pk]), follow=True)
    assert "not among your skipped items" in refused.content.decode()
    assert Assignment.objects.get(annotator=annotator, item=skipped).state == "skipped"
    client.force_login(annotator)
    response = client.post(reverse("label_reopen", args=[active.slug, skipped.pk]))
    assert response.status_code == 302 and response.url.endswith(f"?item={skipped.pk}")
    page = client.get(response.url)
    assert page.context["current"].item.pk == skipped.pk
    assert skipped.pk not in {card.item.pk for card in page.context["upcoming"]}
    _n_leased_is_true(active)


def test_the_skipped_pages_are_404_for_an_outsider(client, active, annotator, outsider):
    only = ItemFactory(project=active)
    client.force_login(annotator)
    _skip_current(client, active)
    client.force_login(outsider)
    assert client.get(reverse("label_skipped", args=[active.slug])).status_code == 404
    assert client.post(reverse("label_reopen", args=[active.slug, only.pk])).status_code == 404
    assert Assignment.objects.get(annotator=annotator, item=only).state == "skipped"


def test_reopen_is_a_post_only(client, active, annotator):
    client.force_login(annotator)
    assert client.get(reverse("label_reopen", args=[active.slug, 1])).status_code == 405


# --- The delay as a setting -----------------------------------------------------------------------------------


def test_the_lead_sets_the_delay_on_the_settings_page_and_bad_values_are_refused(client, project, lead):
    client.force_login(lead)
    url = reverse("project_settings", args=[project.slug])
    assert 'name="skip_return_minutes" value="60"' in client.get(url).content.decode()
    base = {"form": "settings", "name": project.name, "kind": project.kind, "overlap": project.overlap}
    assert client.post(url, base | {"skip_return_minutes": "15"}).status_code == 302
    project.refresh_from_db()
    assert project.skip_return_minutes == 15
    response = client.post(url, base | {"skip_return_minutes": "-1"})
    assert response.status_code == 422
    assert client.post(url, base).status_code == 302  # omitted: unchanged
    project.refresh_from_db()
    assert project.skip_return_minutes == 15


def test_the_project_spec_carries_the_delay(db, lead):
    data = {
        "slug": "with-delay",
        "name": "With delay",
        "kind": "binary",
        "skip_return_minutes": 5,
        "criteria": [{"key": "ok", "name": "OK", "description": "Fine."}],
    }
    project, _created, _changed = project_apply_spec(spec=specs.spec_parse(data), actor=lead)
    assert project.skip_return_minutes == 5
    with pytest.raises(specs.SpecError, match="skip_return_minutes"):
        specs.spec_parse(data | {"skip_return_minutes": 10_081})


def test_the_lead_sets_the_delay_through_the_api_and_nobody_else_can(client, project, lead, annotator):
    url = "/api/v1/projects/support-bot"

    def patch(user, body):
        _row, raw = tokens.token_create(user=user, name="pipeline")
        headers = {"Authorization": f"Bearer {raw}"}
        return client.patch(url, json.dumps(body), content_type="application/json", headers=headers)

    assert patch(annotator, {"skip_return_minutes": 5}).status_code == 404
    response = patch(lead, {"skip_return_minutes": 5})
    assert response.status_code == 200 and response.json()["skip_return_minutes"] == 5
    for bad in (-1, 10_081, "5"):
        assert patch(lead, {"skip_return_minutes": bad}).status_code == 400, bad
    project.refresh_from_db()
    assert project.skip_return_minutes == 5


@pytest.mark.postgres(reason="migrates the schema back and forth; the SQLite variant would rebuild every table")
@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_skips_made_before_it_the_time_of_their_lease(project, annotator):
    def migrate(target):
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate([target])

    project_set_status(project=project, status="active")
    project.refresh_from_db()
    only = ItemFactory(project=project)
    _claim(project, annotator)
    queue_skip(project=project, annotator=annotator, item_id=only.pk)
    lease_made = Assignment.objects.get(item=only).created_at
    migrate(("annotate", "0008_people_invites_visibility"))
    migrate(("annotate", "0009_skips_skip_return"))
    skipped_at = Assignment.objects.get(item=only).skipped_at
    return_minutes = Project.objects.get(pk=project.pk).skip_return_minutes
    migrate_to_latest()  # later migrations, so the tests after this one find the whole schema
    assert skipped_at == lease_made
    assert return_minutes == 60
