"""Blind annotation: labelers never receive an item's external id or metadata unless the lead listed the field."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from annotate import reports, tokens, visibility
from annotate.demo import demo_load
from annotate.models import Item, Membership, Project
from annotate.services.items import item_build
from annotate.services.projects import project_set_status
from tests.factories import ProjectFactory, UserFactory, label, membership

pytestmark = pytest.mark.django_db

# The demo's pairwise ids and metadata named the models an annotator compared: none of this may reach them.
HIDDEN = ("chatgpt", "tulu_65B", "-vs-", "tulu1-human-eval", "q7/")


@pytest.fixture
def pairwise(db):
    project = ProjectFactory(slug="prefs", name="Preferences", kind=Project.Kind.PAIRWISE)
    project_set_status(project=project, status="active")
    project.refresh_from_db()
    for n in range(3):
        item_build(
            project=project,
            fields={"input": f"Question {n}?", "output_a": f"First answer {n}.", "output_b": f"Second answer {n}."},
            external_id=f"q7/{n}/chatgpt-vs-tulu_65B",
            metadata={"model_a": "chatgpt", "model_b": "tulu_65B", "dataset": "tulu1-human-eval"},
        ).save()
    return project


@pytest.fixture
def people(pairwise):
    lead, annotator, other = UserFactory(username="lee"), UserFactory(username="ann"), UserFactory(username="oli")
    membership(lead, pairwise, Membership.Role.LEAD)
    membership(annotator, pairwise, Membership.Role.ANNOTATOR)
    membership(other, pairwise, Membership.Role.ANNOTATOR)
    return lead, annotator, other


def _assert_blind(html: str, where: str) -> None:
    for secret in HIDDEN:
        assert secret not in html, f"{where} shows {secret!r}"


def test_annotators_never_receive_hidden_ids_or_metadata_in_html(client, pairwise, people):
    _lead, annotator, _other = people
    client.force_login(annotator)
    queue = client.get(reverse("label_queue", args=[pairwise.slug]))
    assert queue.status_code == 200 and "Question" in queue.content.decode()
    _assert_blind(queue.content.decode(), "the labeling page")
    nxt = client.post(reverse("label_next", args=[pairwise.slug]), headers={"HX-Request": "true"})
    assert nxt.status_code == 200
    _assert_blind(nxt.content.decode(), "the prefetched item")
    item = Item.objects.filter(project=pairwise).first()
    for key in ("acceptable", "follows_instructions", "factually_correct"):
        label(item, annotator, key, "a")
    history = client.get(reverse("label_history", args=[pairwise.slug]))
    assert "Question" in history.content.decode()
    _assert_blind(history.content.decode(), "the history page")
    edit = client.get(reverse("label_edit", args=[pairwise.slug, item.pk]))
    assert edit.status_code == 200 and item.input in edit.content.decode()
    _assert_blind(edit.content.decode(), "the edit page")
    shown = queue.context["current"].item
    assert client.post(reverse("label_skip", args=[pairwise.slug, shown.pk])).status_code in {200, 302}
    skipped = client.get(reverse("label_skipped", args=[pairwise.slug]))
    assert skipped.status_code == 200 and "Reopen" in skipped.content.decode()
    _assert_blind(skipped.content.decode(), "the skipped list")


def test_annotators_never_receive_hidden_ids_or_metadata_from_the_api(client, pairwise, people):
    _lead, annotator, _other = people
    _row, raw = tokens.token_create(user=annotator, name="script")
    headers = {"Authorization": f"Bearer {raw}"}
    for path in ("/api/v1/projects", f"/api/v1/projects/{pairwise.slug}", f"/api/v1/projects/{pairwise.slug}/progress"):
        response = client.get(path, headers=headers)
        assert response.status_code == 200, path
        _assert_blind(response.content.decode(), path)
    # Items leave the API only through the lead's export.
    response = client.get(f"/api/v1/projects/{pairwise.slug}/export", headers=headers)
    assert response.status_code == 404
    _assert_blind(response.content.decode(), "the export")


def test_a_lead_lists_the_fields_annotators_see_and_only_those_appear(client, pairwise, people):
    lead, annotator, _other = people
    client.force_login(lead)
    url = reverse("project_members", args=[pairwise.slug])
    page = client.get(url).content.decode()
    assert "dataset, model_a, model_b" in page  # the keys found on the items, to choose from
    client.post(url, {"action": "fields", "annotator_fields": "dataset"})
    assert Project.objects.get(pk=pairwise.pk).annotator_fields == ["dataset"]
    client.force_login(annotator)
    html = client.get(reverse("label_queue", args=[pairwise.slug])).content.decode()
    assert "tulu1-human-eval" in html
    assert "chatgpt" not in html and "-vs-" not in html
    client.force_login(lead)
    client.post(url, {"action": "fields", "annotator_fields": "external_id"})
    client.force_login(annotator)
    html = client.get(reverse("label_queue", args=[pairwise.slug])).content.decode()
    assert "/chatgpt-vs-tulu_65B" in html and "tulu1-human-eval" not in html


def test_a_bad_field_list_is_refused_and_changes_nothing(client, pairwise, people):
    lead, _annotator, _other = people
    client.force_login(lead)
    url = reverse("project_members", args=[pairwise.slug])
    response = client.post(url, {"action": "fields", "annotator_fields": "dataset, <script>"})
    assert response.status_code == 422 and "&lt;script&gt;" in response.content.decode()
    assert Project.objects.get(pk=pairwise.pk).annotator_fields == []
    with pytest.raises(ValidationError):
        visibility.project_set_annotator_fields(project=pairwise, fields=[f"f{n}" for n in range(21)])


def test_a_metadata_value_is_escaped_when_shown(client, pairwise, people):
    _lead, annotator, _other = people
    Item.objects.filter(project=pairwise).update(metadata={"note": "<img src=x onerror=alert(1)>"})
    visibility.project_set_annotator_fields(project=pairwise, fields=["note"])
    client.force_login(annotator)
    html = client.get(reverse("label_queue", args=[pairwise.slug])).content.decode()
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<img src=x" not in html


def test_the_leads_adjudication_page_still_shows_the_external_id(client, pairwise, people):
    lead, annotator, other = people
    item = Item.objects.filter(project=pairwise).first()
    label(item, annotator, "acceptable", "a")
    label(item, other, "acceptable", "b")
    reports.report_refresh(project=pairwise, force=True, n_boot=50)
    client.force_login(lead)
    html = client.get(reverse("adjudicate", args=[pairwise.slug, "acceptable"])).content.decode()
    assert item.external_id in html


@pytest.mark.slow
def test_the_demo_hides_which_models_annotators_compare(client, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    demo_load()
    project = Project.objects.get(slug="tulu-preference")
    assert project.annotator_fields == ["dataset"]
    client.force_login(Membership.objects.get(project=project, user__username="annotator1").user)
    html = client.get(reverse("label_queue", args=[project.slug])).content.decode()
    assert "Overall preference" in html and "tulu1-human-eval" in html
    assert "-vs-" not in html
    for external_id, metadata in Item.objects.filter(project=project).values_list("external_id", "metadata"):
        assert external_id not in html
        assert f"{metadata['model_a']}-vs-" not in html


def test_a_lead_sets_the_fields_annotators_see_through_the_api_and_a_bad_list_changes_nothing(client, pairwise, people):
    lead, annotator, _other = people
    url = f"/api/v1/projects/{pairwise.slug}"
    lead_headers = {"Authorization": f"Bearer {tokens.token_create(user=lead, name='ci')[1]}"}
    response = client.patch(
        url, '{"annotator_fields": ["dataset"]}', content_type="application/json", headers=lead_headers
    )
    assert response.status_code == 200 and response.json()["annotator_fields"] == ["dataset"]
    bad = '{"annotator_fields": ["model_a", "no spaces"], "sample_size": 7}'
    response = client.patch(url, bad, content_type="application/json", headers=lead_headers)
    assert response.status_code == 400 and "no spaces" in response.json()["detail"]
    pairwise.refresh_from_db()
    assert pairwise.annotator_fields == ["dataset"] and pairwise.sample_size != 7
    annotator_headers = {"Authorization": f"Bearer {tokens.token_create(user=annotator, name='me')[1]}"}
    response = client.patch(
        url, '{"annotator_fields": ["model_a"]}', content_type="application/json", headers=annotator_headers
    )
    assert response.status_code == 404
    assert Project.objects.get(pk=pairwise.pk).annotator_fields == ["dataset"]
