"""History: the values and note you gave, filtered by value and date, edited in place through the same service as
the change-your-labels page (so its note cap, note rule and revision check hold)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from annotate.models import Label
from annotate.services.labels import label_edit
from annotate.splits import shown_order
from tests.factories import ItemFactory, ProjectFactory, UserFactory, label, membership

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}
KEYS = ("acceptable", "follows_instructions", "factually_correct")


def _label_item(item, who, values, note="", days_ago=0):
    when = timezone.now() - dt.timedelta(days=days_ago)
    for key, value in zip(KEYS, values, strict=True):
        label(item, who, key, value, note=note, created_at=when)


@pytest.fixture
def labeled(project, annotator, other_annotator):
    """Three items labeled by the annotator (one failing, one old), and the other annotator's labels on the first."""
    items = [ItemFactory(project=project, input=f"Question {i} <b>bold?</b>") for i in range(3)]
    _label_item(items[0], annotator, ("pass", "pass", "pass"), note="")
    _label_item(items[1], annotator, ("pass", "fail", "pass"), note="Ignores the word limit.", days_ago=1)
    _label_item(items[2], annotator, ("pass", "pass", "pass"), note="Fine.", days_ago=10)
    _label_item(items[0], other_annotator, ("fail", "fail", "fail"), note="OTHER-PERSONS-NOTE")
    return items


def _rows(body: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr id="row-(\d+)"', body)]


def test_each_row_shows_the_values_and_note_you_gave_and_nobody_elses(client, project, annotator, labeled):
    client.force_login(annotator)
    body = client.get(reverse("label_history", args=[project.slug])).content.decode()
    assert _rows(body) == [labeled[0].pk, labeled[1].pk, labeled[2].pk]  # newest first
    row = body[body.index(f'<tr id="row-{labeled[1].pk}"') :].split("</tr>")[0]
    assert re.findall(r'class="value value-(\w+)"', row) == ["pass", "fail", "pass"]
    assert "Ignores the word limit." in row
    assert "OTHER-PERSONS-NOTE" not in body and "value-fail" not in body.split(f'id="row-{labeled[1].pk}"')[0]
    assert "&lt;b&gt;bold?&lt;/b&gt;" in body  # the item's text, escaped


def test_pairwise_values_are_the_sides_you_saw_and_filter_by_them():
    project = ProjectFactory(kind="pairwise", allow_tie=True)
    who = UserFactory()
    membership(who, project)
    items = [ItemFactory(project=project, output="", output_a=f"A{i}", output_b=f"B{i}") for i in range(3)]
    for item, chosen in zip(items, ("left", "right", "tie"), strict=True):
        order = shown_order(who.pk, item.pk)
        stored = "tie" if chosen == "tie" else ("a" if (chosen == "left") == (order == "ab") else "b")
        for key in KEYS:
            label(item, who, key, stored, shown_order=order)
    from django.test import Client

    client = Client()
    client.force_login(who)
    url = reverse("label_history", args=[project.slug])
    body = client.get(url).content.decode()
    for item, chosen in zip(items, ("left", "right", "tie"), strict=True):
        row = body[body.index(f'<tr id="row-{item.pk}"') :].split("</tr>")[0]
        assert re.findall(r'class="value value-(\w+)"', row) == [chosen] * 3
    assert ">A is better<" not in body and 'value="left"' in body  # the filter offers sides, never A/B
    for chosen, item in zip(("left", "right", "tie"), items, strict=True):
        assert _rows(client.get(url, {"value": chosen}).content.decode()) == [item.pk]


def test_filters_by_value_and_date_range_and_keep_them_across_pages(client, project, annotator, labeled):
    client.force_login(annotator)
    url = reverse("label_history", args=[project.slug])
    assert _rows(client.get(url, {"value": "fail"}).content.decode()) == [labeled[1].pk]
    today = timezone.localdate()
    recent = client.get(url, {"since": str(today - dt.timedelta(days=2))}).content.decode()
    assert _rows(recent) == [labeled[0].pk, labeled[1].pk]
    old = client.get(url, {"until": str(today - dt.timedelta(days=5))}).content.decode()
    assert _rows(old) == [labeled[2].pk]
    one_day = {"since": str(today - dt.timedelta(days=1)), "until": str(today - dt.timedelta(days=1))}
    assert _rows(client.get(url, one_day).content.decode()) == [labeled[1].pk]
    none = client.get(url, {"value": "fail", "since": str(today)}).content.decode()
    assert _rows(none) == [] and "None of your labels match these filters." in none
    # The other annotator's failing labels on item 0 never make it match.
    assert labeled[0].pk not in _rows(client.get(url, {"value": "fail"}).content.decode())


def test_bad_filters_say_why_and_show_everything(client, project, annotator, labeled):
    client.force_login(annotator)
    url = reverse("label_history", args=[project.slug])
    bad = client.get(url, {"value": "maybe", "since": "yesterday"})
    body = bad.content.decode()
    assert bad.status_code == 400 and "Not filtered" in body and "Enter a valid date" in body
    assert len(_rows(body)) == 3
    backwards = client.get(url, {"since": "2026-05-02", "until": "2026-05-01"}).content.decode()
    assert "The start date is after the end date." in backwards


def test_filtering_with_htmx_swaps_the_results_only(client, project, annotator, labeled):
    client.force_login(annotator)
    response = client.get(reverse("label_history", args=[project.slug]), {"value": "fail"}, headers=HX)
    body = response.content.decode()
    assert response.status_code == 200 and body.lstrip().startswith('<div id="history-results">')
    assert "<html" not in body and _rows(body) == [labeled[1].pk]


def test_a_row_is_edited_in_place_and_comes_back_with_the_new_values(client, project, annotator, labeled):
    client.force_login(annotator)
    item = labeled[1]
    edit_url = reverse("history_row_edit", args=[project.slug, item.pk])
    form = client.get(edit_url, headers=HX).content.decode()
    assert form.lstrip().startswith(f'<tr id="row-{item.pk}"') and 'class="editing"' in form
    assert re.search(r'name="c-follows_instructions" value="fail" checked', form)
    assert "Ignores the word limit." in form
    revs = dict(re.findall(r'name="rev-(\w+)" value="(\d+)"', form))
    data = {f"rev-{k}": v for k, v in revs.items()} | {f"c-{k}": "pass" for k in KEYS} | {"note": "Fixed on review."}
    saved = client.post(edit_url, data, headers=HX).content.decode()
    assert saved.lstrip().startswith(f'<tr id="row-{item.pk}"') and "editing" not in saved
    assert re.findall(r'class="value value-(\w+)"', saved) == ["pass", "pass", "pass"]
    assert "Fixed on review." in saved and "Saved" in saved
    mine = Label.objects.filter(item=item, annotator=annotator)
    assert set(mine.values_list("value", "note", "revision")) == {("pass", "Fixed on review.", 2)}
    # Cancel: the row as it is, without the form.
    row = client.get(reverse("history_row", args=[project.slug, item.pk]), headers=HX).content.decode()
    assert "history-edit" not in row and "Fixed on review." in row


def test_an_in_place_edit_keeps_the_edit_rules_and_loses_nothing_when_refused(client, project, annotator, labeled):
    client.force_login(annotator)
    item = labeled[1]
    edit_url = reverse("history_row_edit", args=[project.slug, item.pk])
    revs = {f"rev-{k}": "1" for k in KEYS}
    choices = {"c-acceptable": "fail", "c-follows_instructions": "fail", "c-factually_correct": "pass"}
    too_long = client.post(edit_url, revs | choices | {"note": "x" * 10_001}, headers=HX).content.decode()
    assert "The note is too long" in too_long and 'class="editing"' in too_long
    assert re.search(r'name="c-acceptable" value="fail" checked', too_long)  # the choices are kept
    # Edited elsewhere since the form was opened: the revision check refuses.
    label_edit(
        project=project,
        annotator=annotator,
        item_id=item.pk,
        criteria=list(project.current_rubric.criteria.order_by("position")),
        values=dict.fromkeys(KEYS, "pass"),
        revisions=dict.fromkeys(KEYS, 1),
        note="From the other tab.",
    )
    stale = client.post(edit_url, revs | choices | {"note": "Mine."}, headers=HX).content.decode()
    assert "changed elsewhere" in stale and "Mine." in stale
    project.require_note_on_fail = True
    project.save(update_fields=["require_note_on_fail"])
    current = {f"rev-{k}": "2" for k in KEYS}
    no_note = client.post(edit_url, current | choices | {"note": ""}, headers=HX).content.decode()
    assert "asks for a note" in no_note
    assert set(Label.objects.filter(item=item, annotator=annotator).values_list("note", flat=True)) == {
        "From the other tab."
    }


def test_without_javascript_edit_opens_the_change_your_labels_page(client, project, annotator, labeled):
    client.force_login(annotator)
    item = labeled[0]
    edit_url = reverse("history_row_edit", args=[project.slug, item.pk])
    page_url = reverse("label_edit", args=[project.slug, item.pk]) + "?next=history"
    assert client.get(edit_url).url == page_url
    body = client.get(reverse("label_history", args=[project.slug])).content.decode()
    assert f'hx-get="{edit_url}"' in body and f'href="{page_url}"' in body
    done = client.post(edit_url, {f"rev-{k}": "1" for k in KEYS} | {f"c-{k}": "fail" for k in KEYS} | {"note": "n"})
    assert done.status_code == 302 and done.url == reverse("label_history", args=[project.slug])
    refused = client.post(edit_url, {"c-acceptable": "pass"})
    assert refused.url == page_url
    assert client.get(reverse("history_row", args=[project.slug, item.pk])).status_code == 302


def test_someone_elses_item_is_a_404_in_place_too(client, project, annotator, other_annotator, labeled):
    client.force_login(other_annotator)
    mine_only = labeled[1]  # labeled by `annotator` alone
    for name in ("history_row", "history_row_edit"):
        url = reverse(name, args=[project.slug, mine_only.pk])
        assert client.get(url, headers=HX).status_code == 404
        assert client.post(url, {f"c-{k}": "fail" for k in KEYS}, headers=HX).status_code in {404, 405}
    given = Label.objects.filter(item=mine_only).order_by("criterion__position").values_list("annotator", "value")
    assert list(given) == [(annotator.pk, "pass"), (annotator.pk, "fail"), (annotator.pk, "pass")]


def test_the_history_page_reads_a_fixed_number_of_queries(client, project, annotator, django_assert_max_num_queries):
    items = [ItemFactory(project=project) for _ in range(60)]
    for i, item in enumerate(items):
        _label_item(item, annotator, ("pass", "fail" if i % 3 else "pass", "pass"), note=f"note {i}")
    client.force_login(annotator)
    with django_assert_max_num_queries(10):
        body = client.get(reverse("label_history", args=[project.slug]), {"value": "fail"}).content.decode()
    assert len(_rows(body)) == 40 and "Page 1 of 1 · 40 items" in body
    with django_assert_max_num_queries(10):
        body = client.get(reverse("label_history", args=[project.slug])).content.decode()
    assert len(_rows(body)) == 50 and "?page=2" in body


def test_rows_and_their_in_place_form_show_the_external_id_only_when_the_project_shows_it(
    client, project, annotator, labeled
):
    from annotate.visibility import project_set_annotator_fields

    client.force_login(annotator)
    item = labeled[1]
    page_url = reverse("label_history", args=[project.slug])
    edit_url = reverse("history_row_edit", args=[project.slug, item.pk])
    assert item.external_id[:20] not in client.get(page_url).content.decode()  # blind by default
    assert item.external_id[:20] not in client.get(edit_url, headers=HX).content.decode()
    project_set_annotator_fields(project=project, fields=["external_id"])
    assert item.external_id[:20] in client.get(page_url).content.decode()
    assert item.external_id[:20] in client.get(edit_url, headers=HX).content.decode()
