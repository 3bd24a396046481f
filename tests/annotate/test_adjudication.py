"""Adjudication: one disputed item at a time (real Tülu preference labels), each annotator's labels and notes, gold per
criterion, Enter saves and opens the next unresolved item, a saved item leaves the list at once."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from annotate import adjudication, reports
from annotate.demo import demo_load
from annotate.keymap import keymap
from annotate.models import GoldLabel, Label, Membership, Project
from annotate.services.gold import gold_set
from annotate.services.projects import project_set_status
from tests.factories import ItemFactory, ProjectFactory, UserFactory, label, membership

pytestmark = pytest.mark.django_db


@pytest.fixture
def tulu(settings, tmp_path):
    """The demo's pairwise project (real Tülu human preferences), its report computed, and a lead."""
    settings.VAR_DIR = tmp_path
    demo_load()
    project = Project.objects.select_related("current_rubric").get(slug="tulu-preference")
    lead = UserFactory(username="tulu-lead")
    membership(lead, project, Membership.Role.LEAD)
    report = reports.report_refresh(project=project, n_boot=50)
    return project, lead, report


def _listed(report) -> dict[int, list[str]]:
    """Item id -> criteria keys the stored report says need adjudication, in rubric order."""
    out: dict[int, list[str]] = {}
    for key in ("overall", "helpfulness", "correctness"):
        for pk in report.data["criteria"][key]["consensus"]["needs_adjudication"]:
            out.setdefault(pk, []).append(key)
    return out


def _shown_item(body: str) -> int:
    return int(re.search(r'<form class="item-form adjudicate-form"[^>]*data-item="(\d+)"', body).group(1))


def test_the_lead_sees_one_disputed_item_with_every_annotators_labels_and_notes(client, tulu):
    project, lead, report = tulu
    listed = _listed(report)
    assert len(listed) > 3  # real data: the annotators disagree on several items
    client.force_login(lead)
    body = client.get(reverse("adjudicate_queue", args=[project.slug])).content.decode()
    first = min(listed)
    assert _shown_item(body) == first and body.count('class="item-form') == 1
    assert f"{len(listed)} unresolved" in body
    # Exactly the criteria this item is unresolved on get a gold choice, A/B as stored (not the annotators' sides).
    assert re.findall(r'<fieldset class="criterion" data-key="([\w-]+)"', body) == listed[first]
    assert 'value="a"' in body and "Output A" in body
    for given in Label.objects.filter(item_id=first, criterion__key__in=listed[first]).select_related("annotator"):
        assert given.annotator.username in body or given.annotator.username.split(":")[-1] in body
        if given.note:
            assert given.note[:30] in body


def test_enter_saves_gold_per_criterion_and_the_item_leaves_the_list_before_the_report_refreshes(client, tulu):
    project, lead, report = tulu
    listed = _listed(report)
    first, second = sorted(listed)[:2]
    client.force_login(lead)
    form = {"item": first, "note": "Both answers are fine; A is more direct."}
    form |= {f"c-{key}": "a" for key in listed[first]}
    response = client.post(reverse("adjudicate_queue", args=[project.slug]), form)
    assert response.status_code == 302 and response.url.endswith(f"?after={first}")
    gold = dict(GoldLabel.objects.filter(item_id=first).values_list("criterion__key", "value"))
    assert gold == dict.fromkeys(listed[first], "a")
    assert GoldLabel.objects.filter(item_id=first).first().set_by == lead
    # The stored report is unchanged, but the list is not: the saved item is gone, the next one is shown.
    nxt = client.get(response.url).content.decode()
    assert _shown_item(nxt) == second
    assert f"{len(listed) - 1} unresolved" in nxt
    assert first not in adjudication.unresolved(project=project, report=report, criteria=_criteria(project)).items


def _criteria(project):
    from annotate import selectors

    return selectors.criteria_of_version(project.current_rubric_id)


def test_a_refused_save_stores_nothing_and_keeps_the_leads_choices_and_note(client, split):
    project, lead, items = split
    item = items[2].pk  # disputed on two criteria
    client.force_login(lead)
    url = reverse("adjudicate_queue", args=[project.slug])
    partial = client.post(url, {"item": item, "c-acceptable": "fail", "note": "Kept, please."})
    body = partial.content.decode()
    assert partial.status_code == 400 and "Choose a gold value for “Factually correct”" in body
    assert _shown_item(body) == item and "Kept, please." in body
    assert re.search(r'name="c-acceptable" value="fail" checked', body)
    bad = client.post(url, {"item": item, "c-acceptable": "a", "c-factually_correct": "pass"})
    assert bad.status_code == 400 and "not a binary label" in bad.content.decode()
    both = {"c-acceptable": "pass", "c-factually_correct": "pass"}
    too_long = client.post(url, {"item": item, **both, "note": "x" * 10_001})
    assert too_long.status_code == 400 and "too long" in too_long.content.decode()
    assert not GoldLabel.objects.filter(item_id=item).exists()


def test_an_item_settled_meanwhile_is_not_saved_twice_and_the_lead_moves_on(client, tulu):
    project, lead, report = tulu
    first = min(_listed(report))
    for key in _listed(report)[first]:
        gold_set(project=project, item_id=first, criterion_key=key, value="tie", note="", actor=lead)
    client.force_login(lead)
    response = client.post(reverse("adjudicate_queue", args=[project.slug]), {"item": first, "c-overall": "a"})
    assert response.status_code == 302
    assert set(GoldLabel.objects.filter(item_id=first).values_list("value", flat=True)) == {"tie"}
    assert "already settled" in client.get(response.url).content.decode()


@pytest.fixture
def split():
    """A binary project, two annotators: item 0 split on "acceptable", item 1 on "factually_correct", item 2 on both,
    item 3 agreed."""
    project = ProjectFactory(slug="split", overlap=2)
    project_set_status(project=project, status="active")
    lead, ann_a, ann_b = UserFactory(), UserFactory(), UserFactory()
    membership(lead, project, Membership.Role.LEAD)
    items = [ItemFactory(project=project) for _ in range(4)]
    disputes = (("acceptable",), ("factually_correct",), ("acceptable", "factually_correct"), ())
    for item, split_on in zip(items, disputes, strict=True):
        for who, verdict in ((ann_a, "pass"), (ann_b, "fail")):
            for key in ("acceptable", "follows_instructions", "factually_correct"):
                label(item, who, key, verdict if key in split_on else "pass", note=f"{who.username} on {item.pk}")
    reports.report_refresh(project=project, n_boot=20)
    return project, lead, items


def test_one_criterion_pages_only_that_criterions_disputes(client, split):
    project, lead, items = split
    report = reports.report_refresh(project=project)
    every = adjudication.unresolved(project=project, report=report, criteria=_criteria(project))
    assert every.items == {
        items[0].pk: ["acceptable"],
        items[1].pk: ["factually_correct"],
        items[2].pk: ["acceptable", "factually_correct"],
    }
    assert every.next_after(items[0].pk) == items[1].pk and every.next_after(items[2].pk) == items[0].pk
    assert every.next_after(None) == items[0].pk

    client.force_login(lead)
    url = reverse("adjudicate", args=[project.slug, "factually_correct"])
    scoped = client.get(url).content.decode()
    assert _shown_item(scoped) == items[1].pk and "2 unresolved" in scoped
    assert re.findall(r'<fieldset class="criterion" data-key="([\w-]+)"', scoped) == ["factually_correct"]
    annotators = Label.objects.filter(item=items[1]).values_list("annotator__username", flat=True).distinct()
    assert all(f"{name} on {items[1].pk}" in scoped for name in annotators)  # every annotator's note
    assert f'href="{url}?after={items[1].pk}" class="next-unresolved"' in scoped
    client.post(url, {"item": items[1].pk, "c-factually_correct": "fail"})
    last = client.get(f"{url}?after={items[1].pk}").content.decode()
    assert _shown_item(last) == items[2].pk and "1 unresolved" in last
    assert 'class="next-unresolved"' not in last  # alone in the list: no link to itself
    client.post(url, {"item": items[2].pk, "c-factually_correct": "pass"})
    assert "Nothing to adjudicate on this criterion" in client.get(url).content.decode()
    # On every criterion, item 2 still waits for its "acceptable" gold.
    everything = client.get(reverse("adjudicate_queue", args=[project.slug])).content.decode()
    assert "2 unresolved" in everything
    assert client.get(reverse("adjudicate", args=[project.slug, "nope"])).status_code == 404


def test_annotators_and_outsiders_get_404(client, tulu):
    project, _lead, report = tulu
    annotator = UserFactory()
    membership(annotator, project, Membership.Role.ANNOTATOR)
    item = min(_listed(report))
    for user in (annotator, UserFactory()):
        client.force_login(user)
        url = reverse("adjudicate_queue", args=[project.slug])
        assert client.get(url).status_code == 404
        assert client.post(url, {"item": item, "c-overall": "a"}).status_code == 404
    assert not GoldLabel.objects.filter(item__project=project).exists()


def test_without_a_report_the_page_says_so():
    project = ProjectFactory(slug="fresh")
    lead = UserFactory()
    membership(lead, project, Membership.Role.LEAD)
    from django.test import Client

    client = Client()
    client.force_login(lead)
    body = client.get(reverse("adjudicate_queue", args=[project.slug])).content.decode()
    assert "0 unresolved" in body and "the agreement report has not been computed" in body


def test_the_adjudication_page_hands_the_labeling_keys_to_the_script(client, tulu):
    project, lead, _report = tulu
    client.force_login(lead)
    body = client.get(reverse("adjudicate_queue", args=[project.slug])).content.decode()
    data = json.loads(re.search(r'<script id="keymap" type="application/json">(.*?)</script>', body, re.S).group(1))
    assert data == [b.as_data() for b in keymap(page="adjudicate", kind="pairwise", allow_tie=True)]
    assert [b["action"] for b in data] == [
        "next", "prev", "choose:0", "choose:1", "choose:2", "note", "submit", "next-unresolved", "help"
    ]  # fmt: skip
    queue = keymap(page="queue", kind="pairwise", allow_tie=True)
    assert [b["keys"] for b in data][2:5] == [list(b.keys) for b in queue][2:5]  # the same keys as labeling
    assert [b["label"] for b in data][2:4] == ["Output A is better", "Output B is better"]


def test_the_adjudication_page_reads_a_fixed_number_of_queries(client, tulu, django_assert_max_num_queries):
    project, lead, report = tulu
    client.force_login(lead)
    url = reverse("adjudicate_queue", args=[project.slug])
    # Whatever the number of disputed items (real data: dozens) and of labels on the one shown.
    with django_assert_max_num_queries(10):
        body = client.get(url, {"after": min(_listed(report))}).content.decode()
    assert _shown_item(body) == sorted(_listed(report))[1]
