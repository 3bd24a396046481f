"""Error analysis (issue 21): reviews with notes, failure modes and their grouping operations, counts and drift,
promotion to a criterion, access, escaping, the API and the failure_modes export."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotate import selectors, tokens
from annotate.models import FailureMode, Item, Label, Membership, Project, ReviewNote
from annotate.review import counts as review_counts
from annotate.review import selectors as review_selectors
from annotate.review import services as review
from annotate.services.projects import project_set_status
from annotate.stats.proportions import wilson_interval
from tests.factories import ItemFactory, ProjectFactory, UserFactory, label, membership

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


def _reviews(project, reviewer, items, notes):
    """One review per item: a note string fails it, None passes it."""
    out = []
    for item, note in zip(items, notes, strict=True):
        verdict = "pass" if note is None else "fail"
        out.append(
            review.review_submit(project=project, reviewer=reviewer, item_id=item.pk, verdict=verdict, note=note or "")
        )
    return out


@pytest.fixture
def reviewed(project, annotator, other_annotator, items):
    """Five items: the annotator fails three (two hallucinations, one format), the other annotator fails one."""
    mine = _reviews(
        project, annotator, items, ["Invents a citation", "Made-up statistic", "Ignores the format", None, None]
    )
    theirs = _reviews(project, other_annotator, items[:1], ["Cites a paper that does not exist"])
    return mine + theirs


# --- Reviews -----------------------------------------------------------------------------------------------------


def test_a_failing_review_needs_a_note_and_a_passing_one_does_not(project, annotator, items):
    with pytest.raises(ValidationError, match="needs a note"):
        review.review_submit(project=project, reviewer=annotator, item_id=items[0].pk, verdict="fail", note="  ")
    note = review.review_submit(project=project, reviewer=annotator, item_id=items[0].pk, verdict="pass", note="")
    assert note.verdict == "pass"
    with pytest.raises(ValidationError):
        review.review_submit(project=project, reviewer=annotator, item_id=items[0].pk, verdict="maybe", note="x")


def test_reviewing_again_changes_the_one_review_and_a_pass_leaves_its_mode(project, annotator, lead, items):
    note = review.review_submit(project=project, reviewer=annotator, item_id=items[0].pk, verdict="fail", note="a")
    mode = review.mode_create(project=project, name="Wrong facts", actor=lead)
    review.note_assign(project=project, note_id=note.pk, mode_id=mode.pk)
    again = review.review_submit(project=project, reviewer=annotator, item_id=items[0].pk, verdict="fail", note="b")
    assert again.pk == note.pk and again.failure_mode_id == mode.pk and again.note == "b"
    passed = review.review_submit(project=project, reviewer=annotator, item_id=items[0].pk, verdict="pass", note="")
    assert passed.failure_mode_id is None
    assert ReviewNote.objects.count() == 1


def test_an_item_of_another_project_cannot_be_reviewed(project, annotator, outsider):
    other = Project.objects.get(slug="other-team")
    foreign = ItemFactory(project=other)
    with pytest.raises(ValidationError, match="No such item"):
        review.review_submit(project=project, reviewer=annotator, item_id=foreign.pk, verdict="fail", note="x")


def test_the_database_refuses_a_mode_on_a_passing_review_and_a_silent_failure(project, annotator, lead, items):
    mode = review.mode_create(project=project, name="X", actor=lead)
    with pytest.raises(IntegrityError), transaction.atomic():
        ReviewNote.objects.create(
            project=project,
            item=items[0],
            reviewer=annotator,
            verdict="pass",
            failure_mode=mode,
            created_at=timezone.now(),
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        ReviewNote.objects.create(
            project=project, item=items[0], reviewer=annotator, verdict="fail", note="", created_at=timezone.now()
        )


def test_the_queue_offers_production_items_first_and_never_one_reviewed(project, annotator, items):
    sampled = ItemFactory(project=project)
    Item.objects.filter(pk=sampled.pk).update(source=Item.Source.SAMPLE, sampled_on=timezone.localdate())
    assert review_selectors.review_next(project=project, reviewer=annotator).pk == sampled.pk
    review.review_submit(project=project, reviewer=annotator, item_id=sampled.pk, verdict="pass", note="")
    assert review_selectors.review_next(project=project, reviewer=annotator).pk != sampled.pk


def test_the_review_page_saves_by_htmx_and_shows_the_next_item(client, project, annotator, items):
    client.force_login(annotator)
    page = client.get(f"/p/{project.slug}/review/")
    assert page.status_code == 200
    first = page.context["card"].item
    response = client.post(
        f"/p/{project.slug}/review/{first.pk}/", {"verdict": "fail", "note": "Wrong date"}, headers=HX
    )
    assert response.status_code == 200
    assert "Saved." in response.content.decode()
    assert response.context["card"].item.pk != first.pk
    assert ReviewNote.objects.get(reviewer=annotator).note == "Wrong date"
    refused = client.post(f"/p/{project.slug}/review/{first.pk}/", {"verdict": "fail", "note": ""}, headers=HX)
    assert "needs a note" in refused.content.decode()
    assert client.post(f"/p/{project.slug}/review/{first.pk}/", {"verdict": "fail", "note": ""}).status_code == 400


def test_the_review_screen_keeps_annotation_blind(client, project, annotator):
    ItemFactory(project=project, external_id="q1/chatgpt-vs-tulu_65B", metadata={"model": "tulu_65B"})
    client.force_login(annotator)
    html = client.get(f"/p/{project.slug}/review/").content.decode()
    assert "tulu_65B" not in html


def test_a_pairwise_project_is_not_reviewed(client, lead):
    project = Project.objects.create(slug="pairs", name="Pairs", kind="pairwise")
    membership(lead, project, Membership.Role.LEAD)
    client.force_login(lead)
    assert "for binary projects" in client.get("/p/pairs/review/").content.decode()


# --- Access and escaping ------------------------------------------------------------------------------------------


def test_annotators_see_only_their_own_notes_and_leads_see_all(
    client, project, annotator, other_annotator, lead, reviewed
):
    client.force_login(annotator)
    html = client.get(f"/p/{project.slug}/review/notes/").content.decode()
    assert "Invents a citation" in html and "Cites a paper" not in html
    partial = client.get(f"/p/{project.slug}/review/notes/", headers=HX)
    assert partial.status_code == 200 and "Cites a paper" not in partial.content.decode()
    client.force_login(lead)
    html = client.get(f"/p/{project.slug}/review/notes/").content.decode()
    assert "Invents a citation" in html and "Cites a paper" in html


def test_annotators_and_outsiders_get_404_on_the_lead_pages(client, project, annotator, outsider, reviewed, lead):
    mode = review.mode_create(project=project, name="Hallucination", actor=lead)
    for user in (annotator, outsider):
        client.force_login(user)
        for url in (
            "failure-modes/",
            "failure-modes/counts/",
            "failure-modes/export/",
            f"failure-modes/{mode.pk}/promote/",
        ):
            assert client.get(f"/p/{project.slug}/{url}").status_code == 404, url
        response = client.post(f"/p/{project.slug}/failure-modes/{mode.pk}/rename/", {"name": "Mine now"})
        assert response.status_code == 404
        note = reviewed[0]
        assert (
            client.post(f"/p/{project.slug}/failure-modes/notes/{note.pk}/assign/", {"mode": mode.pk}).status_code
            == 404
        )
    client.force_login(outsider)
    assert client.get(f"/p/{project.slug}/review/").status_code == 404
    assert client.get(f"/p/{project.slug}/review/notes/").status_code == 404
    mode.refresh_from_db()
    assert mode.name == "Hallucination" and not ReviewNote.objects.filter(failure_mode=mode).exists()


def test_note_text_is_escaped_everywhere(client, project, annotator, lead, items):
    evil = '<script>alert("x")</script>'
    note = review.review_submit(project=project, reviewer=annotator, item_id=items[0].pk, verdict="fail", note=evil)
    mode = review.mode_create(project=project, name=f"Mode {evil}", definition=evil, actor=lead)
    review.note_assign(project=project, note_id=note.pk, mode_id=mode.pk)
    client.force_login(lead)
    for url in ("review/notes/", "failure-modes/", "failure-modes/counts/", f"failure-modes/{mode.pk}/promote/"):
        html = client.get(f"/p/{project.slug}/{url}").content.decode()
        assert "<script>alert" not in html, url
        assert "&lt;script&gt;" in html, url
    client.force_login(annotator)
    assert "<script>alert" not in client.get(f"/p/{project.slug}/review/?item={items[0].pk}").content.decode()


# --- Grouping ------------------------------------------------------------------------------------------------------


def _all_note_ids(project):
    return set(ReviewNote.objects.filter(project=project).values_list("pk", flat=True))


def test_mode_names_are_unique_per_project_whatever_their_case(project, lead):
    review.mode_create(project=project, name="Hallucination", actor=lead)
    with pytest.raises(ValidationError, match="exists already"):
        review.mode_create(project=project, name="  hallucination ", actor=lead)
    with pytest.raises(IntegrityError), transaction.atomic():
        FailureMode.objects.create(project=project, name="HALLUCINATION")
    # Another project may use the name.
    assert review.mode_create(project=ProjectFactory(slug="elsewhere"), name="Hallucination", actor=lead).pk


def test_merge_keeps_every_note(project, lead, reviewed):
    a = review.mode_create(project=project, name="Invented facts", actor=lead)
    b = review.mode_create(project=project, name="Hallucination", actor=lead)
    before = _all_note_ids(project)
    review.note_assign(project=project, note_id=reviewed[0].pk, mode_id=a.pk)
    review.note_assign(project=project, note_id=reviewed[1].pk, mode_id=b.pk)
    review.note_assign(project=project, note_id=reviewed[5].pk, mode_id=a.pk)
    target = review.mode_merge(project=project, source_id=a.pk, target_id=b.pk)
    assert target.pk == b.pk
    assert not FailureMode.objects.filter(pk=a.pk).exists()
    assert set(b.notes.values_list("pk", flat=True)) == {reviewed[0].pk, reviewed[1].pk, reviewed[5].pk}
    assert _all_note_ids(project) == before
    with pytest.raises(ValidationError):
        review.mode_merge(project=project, source_id=b.pk, target_id=b.pk)


def test_split_moves_only_the_chosen_notes_and_keeps_every_note(project, lead, reviewed):
    mode = review.mode_create(project=project, name="Hallucination", actor=lead)
    for note in (reviewed[0], reviewed[1], reviewed[5]):
        review.note_assign(project=project, note_id=note.pk, mode_id=mode.pk)
    before = _all_note_ids(project)
    new = review.mode_split(
        project=project, mode_id=mode.pk, note_ids=[reviewed[1].pk], name="Made-up numbers", actor=lead
    )
    assert set(new.notes.values_list("pk", flat=True)) == {reviewed[1].pk}
    assert set(mode.notes.values_list("pk", flat=True)) == {reviewed[0].pk, reviewed[5].pk}
    assert _all_note_ids(project) == before
    with pytest.raises(ValidationError, match="Only notes of"):
        review.mode_split(project=project, mode_id=mode.pk, note_ids=[reviewed[2].pk], name="Other", actor=lead)
    with pytest.raises(ValidationError, match="exists already"):
        review.mode_split(
            project=project, mode_id=mode.pk, note_ids=[reviewed[0].pk], name="made-up NUMBERS", actor=lead
        )
    assert set(mode.notes.values_list("pk", flat=True)) == {reviewed[0].pk, reviewed[5].pk}


def test_removing_a_mode_leaves_its_notes_unassigned(project, lead, reviewed):
    mode = review.mode_create(project=project, name="Hallucination", actor=lead)
    review.note_assign(project=project, note_id=reviewed[0].pk, mode_id=mode.pk)
    assert review.mode_delete(project=project, mode_id=mode.pk) == 1
    assert ReviewNote.objects.get(pk=reviewed[0].pk).failure_mode_id is None


def test_a_passing_review_cannot_go_into_a_mode(project, lead, reviewed):
    mode = review.mode_create(project=project, name="Hallucination", actor=lead)
    with pytest.raises(ValidationError, match="failing"):
        review.note_assign(project=project, note_id=reviewed[3].pk, mode_id=mode.pk)


def test_a_mode_of_another_project_cannot_take_a_note(project, lead, reviewed, outsider):
    other = Project.objects.get(slug="other-team")
    foreign = review.mode_create(project=other, name="Theirs", actor=outsider)
    with pytest.raises(ValidationError, match="No such failure mode"):
        review.note_assign(project=project, note_id=reviewed[0].pk, mode_id=foreign.pk)


def test_the_board_groups_by_htmx_and_without_javascript(client, project, lead, reviewed):
    client.force_login(lead)
    url = f"/p/{project.slug}/failure-modes/"
    assert client.get(url).status_code == 200
    created = client.post(url + "new/", {"name": "Hallucination", "note": reviewed[0].pk}, headers=HX)
    assert created.status_code == 200 and "Created “Hallucination”" in created.content.decode()
    mode = FailureMode.objects.get(project=project)
    assert ReviewNote.objects.get(pk=reviewed[0].pk).failure_mode_id == mode.pk
    moved = client.post(url + f"notes/{reviewed[1].pk}/assign/", {"mode": mode.pk})
    assert moved.status_code == 302
    assert ReviewNote.objects.get(pk=reviewed[1].pk).failure_mode_id == mode.pk
    refused = client.post(url + "new/", {"name": "hallucination"}, headers=HX)
    assert "exists already" in refused.content.decode()
    renamed = client.post(
        url + f"{mode.pk}/rename/", {"name": "Invented facts", "definition": "Says what is not so."}, headers=HX
    )
    assert "Invented facts" in renamed.content.decode()
    split = client.post(url + f"{mode.pk}/split/", {"name": "Numbers", "notes": [reviewed[1].pk]}, headers=HX)
    assert "Split 1 note" in split.content.decode()
    numbers = FailureMode.objects.get(name="Numbers")
    merged = client.post(url + f"{numbers.pk}/merge/", {"into": mode.pk}, headers=HX)
    assert "Merged into" in merged.content.decode()
    assert set(mode.notes.values_list("pk", flat=True)) == {reviewed[0].pk, reviewed[1].pk}
    unassigned = client.post(url + f"notes/{reviewed[1].pk}/assign/", {"mode": ""}, headers=HX)
    assert unassigned.status_code == 200
    assert ReviewNote.objects.get(pk=reviewed[1].pk).failure_mode_id is None


# --- Counts --------------------------------------------------------------------------------------------------------


def _rows(day, verdicts_and_modes, start=0):
    return [
        review_counts.ReviewRow(day=day, item_id=start + i, verdict=v, mode_id=m)
        for i, (v, m) in enumerate(verdicts_and_modes)
    ]


def test_counts_give_each_modes_share_of_reviewed_items_with_wilson_intervals():
    day = dt.date(2026, 12, 1)
    rows = _rows(day, [("fail", 1), ("fail", 1), ("fail", 2), ("fail", None), ("pass", None)])
    # The same item failed by a second reviewer with the same mode counts once.
    rows.append(review_counts.ReviewRow(day=day, item_id=0, verdict="fail", mode_id=1))
    counted = review_counts.failure_counts(rows, mode_ids=[1, 2], by="day")
    assert counted.periods == (day,) and counted.reviewed == (5,)
    first, second, unassigned = counted.modes
    assert (first.mode_id, first.total.k, first.total.n) == (1, 2, 5)
    assert (first.total.lo, first.total.hi) == pytest.approx(wilson_interval(2, 5))
    assert (second.total.k, unassigned.mode_id, unassigned.total.k) == (1, review_counts.UNASSIGNED, 1)


def test_a_mode_whose_share_clearly_rises_is_flagged_and_a_steady_one_is_not():
    rows = []
    for d in range(3):  # 40 items a day, mode 1 in 2 of them, mode 2 in 10 of them
        rows += _rows(
            dt.date(2026, 11, 20 + d), [("fail", 1)] * 2 + [("fail", 2)] * 10 + [("pass", None)] * 28, start=100 * d
        )
    rows += _rows(dt.date(2026, 11, 23), [("fail", 1)] * 20 + [("fail", 2)] * 10 + [("pass", None)] * 10, start=900)
    counted = review_counts.failure_counts(rows, mode_ids=[1, 2], by="day")
    rising = {m.mode_id: m.rising for m in counted.modes}
    assert rising == {1: True, 2: False, review_counts.UNASSIGNED: False}
    weekly = review_counts.failure_counts(rows, mode_ids=[1, 2], by="week")
    assert weekly.periods == (dt.date(2026, 11, 16), dt.date(2026, 11, 23))


def test_items_reviewed_over_all_periods_count_each_item_once():
    rows = _rows(dt.date(2026, 12, 1), [("fail", 1), ("pass", None)]) + _rows(
        dt.date(2026, 12, 2), [("pass", None), ("fail", None)], start=1
    )
    counted = review_counts.failure_counts(rows, mode_ids=[1], by="day")
    assert counted.reviewed == (2, 2) and counted.n_reviewed == 3


def test_no_reviews_give_no_periods_and_no_shares():
    counted = review_counts.failure_counts([], mode_ids=[7], by="week")
    assert counted.periods == () and all(m.total is None for m in counted.modes)


def test_the_counts_page_shows_table_chart_and_unassigned_notes(client, project, lead, reviewed):
    mode = review.mode_create(project=project, name="Hallucination", actor=lead)
    review.note_assign(project=project, note_id=reviewed[0].pk, mode_id=mode.pk)
    # An older day: one review without this mode, so the days differ.
    ReviewNote.objects.filter(pk=reviewed[3].pk).update(created_at=timezone.now() - dt.timedelta(days=2))
    client.force_login(lead)
    response = client.get(f"/p/{project.slug}/failure-modes/counts/?by=day")
    html = response.content.decode()
    assert response.status_code == 200
    assert "<svg" in html and "Hallucination" in html
    assert "failed for a reason no mode holds yet" in html
    counted = response.context["counts"]
    assert len(counted.periods) == 2
    # "Items reviewed" under "All days": the five reviewed items, not the number of days.
    row = re.search(r"Items reviewed</th><td>([^<]*)</td>", html)
    assert row is not None and row.group(1) == "5"
    week = client.get(f"/p/{project.slug}/failure-modes/counts/?by=week", headers=HX)
    assert week.status_code == 200 and "week of" in week.content.decode()


# --- Promotion -----------------------------------------------------------------------------------------------------


def test_promotion_makes_a_rubric_version_and_turns_reviews_into_labels_in_their_splits(
    project, lead, annotator, items
):
    label(items[0], annotator, "acceptable", "fail")
    notes = _reviews(
        project, annotator, items, ["Invents a citation", "Invented source", "Ignores the format", None, None]
    )
    mode = review.mode_create(project=project, name="Hallucination", definition="States made-up facts.", actor=lead)
    other = review.mode_create(project=project, name="Format", actor=lead)
    for note in notes[:2]:
        review.note_assign(project=project, note_id=note.pk, mode_id=mode.pk)
    review.note_assign(project=project, note_id=notes[2].pk, mode_id=other.pk)
    splits_before = dict(Item.objects.filter(project=project).values_list("pk", "split"))
    base = selectors.rubric_current(project=project).number
    key = review.promote_key(project, mode)
    promotion = review.mode_promote(
        project=project,
        mode_id=mode.pk,
        key=key,
        name="No hallucination",
        description="Fails when it states made-up facts.",
        base_number=base,
        actor=lead,
    )
    assert promotion.version.number == base + 1
    assert [c.key for c in selectors.criteria_current(project=project)][-1] == key == "avoids_hallucination"
    new_labels = Label.objects.filter(rubric_version=promotion.version, criterion__key=key)
    assert dict(new_labels.values_list("item_id", "value")) == {
        items[0].pk: "fail",
        items[1].pk: "fail",
        items[3].pk: "pass",
        items[4].pk: "pass",
    }
    assert (promotion.n_fail, promotion.n_pass) == (2, 2)
    # The other criteria's labels carried over; the items kept their splits.
    assert Label.objects.filter(rubric_version=promotion.version, criterion__key="acceptable", item=items[0]).exists()
    assert dict(Item.objects.filter(project=project).values_list("pk", "split")) == splits_before
    mode.refresh_from_db()
    assert mode.promoted_key == key and mode.promoted_in_id == promotion.version.pk
    with pytest.raises(ValidationError, match="already"):
        review.mode_promote(
            project=project, mode_id=mode.pk, key="x", name="x", description="x", base_number=base + 1, actor=lead
        )
    with pytest.raises(ValidationError, match="became a criterion"):
        review.mode_merge(project=project, source_id=mode.pk, target_id=other.pk)


def test_promotion_refuses_a_stale_review_and_changes_nothing(project, lead, reviewed):
    mode = review.mode_create(project=project, name="Hallucination", actor=lead)
    review.note_assign(project=project, note_id=reviewed[0].pk, mode_id=mode.pk)
    base = selectors.rubric_current(project=project).number
    with pytest.raises(ValidationError, match="while you were reviewing"):
        review.mode_promote(
            project=project, mode_id=mode.pk, key="no_h", name="No h", description="d", base_number=base - 1, actor=lead
        )
    assert selectors.rubric_current(project=project).number == base
    assert not Label.objects.filter(criterion__key="no_h").exists()


def test_the_promote_page_shows_the_usual_review_wording_then_saves(client, project, lead, annotator, items):
    notes = _reviews(project, annotator, items[:2], ["Invents a citation", None])
    mode = review.mode_create(project=project, name="Hallucination", actor=lead)
    review.note_assign(project=project, note_id=notes[0].pk, mode_id=mode.pk)
    client.force_login(lead)
    url = f"/p/{project.slug}/failure-modes/{mode.pk}/promote/"
    html = client.get(url).content.decode()
    base = selectors.rubric_current(project=project).number
    assert f"Saving makes rubric v{base + 1}" in html and "add “Avoids: Hallucination”" in html
    response = client.post(
        url,
        {
            "action": "save",
            "base": base,
            "key": "no_hallucination",
            "name": "No hallucination",
            "description": "Made up.",
        },
    )
    assert response.status_code == 302
    page = client.get(url).content.decode()
    assert "is a criterion" in page and "?criterion=no_hallucination" in page
    # Few-shot candidates: only train items, the noted one failing, the passed one passing.
    few_shot = client.get(url).context["few_shot"]
    expected = [f"{items[0].external_id} fail | Invents a citation"] if items[0].split == "train" else []
    expected += [f"{items[1].external_id} pass | The reviewer passed it."] if items[1].split == "train" else []
    assert few_shot.splitlines() == expected
    judge_page = client.get(f"/p/{project.slug}/judges/new/?criterion=no_hallucination")
    assert judge_page.context["form"].initial["examples"] == few_shot


def test_the_promote_page_suggests_an_editable_name_and_says_what_the_reviews_give(
    client, project, lead, annotator, other_annotator, items
):
    extra = [ItemFactory(project=project) for _ in range(3)]  # eight items, three of them never reviewed
    notes = _reviews(project, annotator, items, ["Skips the word limit", "Too long", "Wrong year", None, None])
    theirs = _reviews(project, other_annotator, items[:1], [None])
    mode = review.mode_create(project=project, name="Ignores constraints", actor=lead)
    for note in notes[:2]:
        review.note_assign(project=project, note_id=note.pk, mode_id=mode.pk)
    client.force_login(lead)
    url = f"/p/{project.slug}/failure-modes/{mode.pk}/promote/"
    response = client.get(url)
    html = response.content.decode()
    assert "No ignores" not in html
    assert 'value="Avoids: Ignores constraints"' in html and 'value="avoids_ignores_constraints"' in html
    # Items 0, 1, 3 and 4 get labels (item 0 twice: the annotator fails it, the other annotator passes it); item 2
    # failed for another reason and the three extra items were never reviewed: four items still need a label.
    plan = review.promotion_plan(project=project, mode=mode)
    assert (plan.n_reviewed_items, plan.n_fail, plan.n_pass, plan.n_unlabeled_items) == (4, 2, 3, 4)
    assert (
        "“Avoids: Ignores constraints”: 4 reviewed items get their labels from the reviews (2 fail, 3 pass); "
        "the other 4 items will need a new label on it"
    ) in html.replace("&ldquo;", "“").replace("&rdquo;", "”")
    assert "will need 0 new labels" not in html and "The reviews become labels" not in html
    # The name is the lead's to edit: the review and the saved criterion use the edited one.
    edited = {"key": "follows_constraints", "name": "Follows the constraints", "description": "Obeys limits."}
    base = selectors.rubric_current(project=project).number
    again = client.post(url, {**edited, "action": "review", "base": base}).content.decode()
    assert "add “Follows the constraints”" in again and "“Follows the constraints”: 4 reviewed items" in again
    assert client.post(url, {**edited, "action": "save", "base": base}).status_code == 302
    criterion = list(selectors.criteria_current(project=project))[-1]
    assert (criterion.key, criterion.name) == ("follows_constraints", "Follows the constraints")
    written = Label.objects.filter(criterion=criterion)
    assert written.count() == len(plan.labels) == 5
    assert written.values("item_id").distinct().count() == plan.n_reviewed_items
    assert not written.filter(item__in=[items[2], *extra]).exists()
    assert written.get(item=items[0], annotator=other_annotator).value == "pass" and theirs


def test_a_mode_without_notes_cannot_be_promoted(client, project, lead, reviewed):
    empty = review.mode_create(project=project, name="Rambles", actor=lead)
    base = selectors.rubric_current(project=project).number
    with pytest.raises(ValidationError, match="needs examples"):
        review.mode_promote(
            project=project,
            mode_id=empty.pk,
            key="avoids_rambles",
            name="Avoids: Rambles",
            description="d",
            base_number=base,
            actor=lead,
        )
    client.force_login(lead)
    url = f"/p/{project.slug}/failure-modes/{empty.pk}/promote/"
    html = client.get(url).content.decode()
    assert "needs examples" in html and 'value="save"' not in html
    body = {"action": "save", "base": base, "key": "avoids_rambles", "name": "Avoids: Rambles", "description": "d"}
    response = client.post(url, body)
    assert response.status_code == 422 and "needs examples" in response.content.decode()
    assert selectors.rubric_current(project=project).number == base
    empty.refresh_from_db()
    assert not empty.promoted_key and not Label.objects.filter(criterion__key="avoids_rambles").exists()


# --- Export and API ------------------------------------------------------------------------------------------------


def test_the_failure_modes_export_carries_mode_definition_counts_and_example_ids(client, project, lead, reviewed):
    mode = review.mode_create(project=project, name="Hallucination", definition="Made up.", actor=lead)
    for note in (reviewed[0], reviewed[1], reviewed[5]):
        review.note_assign(project=project, note_id=note.pk, mode_id=mode.pk)
    client.force_login(lead)
    response = client.get(f"/p/{project.slug}/failure-modes/export/")
    assert response["Content-Disposition"].endswith('failure_modes.jsonl"')
    rows = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    first, unassigned = rows
    assert first["format"] == "failure_modes" and first["mode"] == "Hallucination" and first["definition"] == "Made up."
    assert first["counts"]["items"] == 2 and first["counts"]["reviewed_items"] == 5 and first["n_notes"] == 3
    assert first["counts"]["ci_low"] < 0.4 < first["counts"]["ci_high"]
    assert sorted(first["example_ids"]) == sorted({reviewed[0].item.external_id, reviewed[1].item.external_id})
    assert unassigned["mode"] == "(unassigned)" and unassigned["n_notes"] == 1


def _bearer(user):
    _token, secret = tokens.token_create(user=user, name="t")
    return {"Authorization": f"Bearer {secret}"}


def test_the_api_writes_and_reads_reviews_with_the_pages_access(
    client, project, annotator, other_annotator, lead, items
):
    ann = _bearer(annotator)
    url = f"/api/v1/projects/{project.slug}/review-notes"
    body = {"item_id": items[0].external_id, "verdict": "fail", "note": "Wrong year"}
    created = client.post(url, body, content_type="application/json", headers=ann)
    assert created.status_code == 201, created.content
    assert created.json()["item_id"] is None  # blind: the project lists no fields for annotators
    refused = client.post(url, {**body, "note": ""}, content_type="application/json", headers=ann)
    assert refused.status_code == 400
    other = client.post(
        url, {**body, "note": "Theirs"}, content_type="application/json", headers=_bearer(other_annotator)
    )
    assert other.status_code == 201
    mine = client.get(url, headers=ann).json()
    assert [n["note"] for n in mine] == ["Wrong year"]
    everyone = client.get(url, headers=_bearer(lead)).json()
    assert sorted(n["note"] for n in everyone) == ["Theirs", "Wrong year"]
    assert client.get(f"/api/v1/projects/{project.slug}/failure-modes", headers=ann).status_code == 404
    modes = client.get(f"/api/v1/projects/{project.slug}/failure-modes", headers=_bearer(lead))
    assert modes.status_code == 200 and modes.json()[-1]["n_notes"] == 2


def test_an_outsider_token_gets_404(client, project, outsider, items):
    headers = _bearer(outsider)
    assert client.get(f"/api/v1/projects/{project.slug}/review-notes", headers=headers).status_code == 404
    body = {"item_id": items[0].external_id, "verdict": "pass"}
    response = client.post(
        f"/api/v1/projects/{project.slug}/review-notes", body, content_type="application/json", headers=headers
    )
    assert response.status_code == 404
    assert not ReviewNote.objects.exists()


def test_a_deactivated_reviewer_keeps_their_notes_but_loses_access(client, project, annotator, reviewed):
    Membership.objects.filter(user=annotator, project=project).update(deactivated_at=timezone.now())
    client.force_login(annotator)
    assert client.get(f"/p/{project.slug}/review/notes/").status_code == 404
    assert ReviewNote.objects.filter(reviewer=annotator).count() == 5


def test_notes_count_reviews_with_a_note_text_on_the_page_the_api_and_the_export(
    client, project, lead, annotator, items
):
    _reviews(project, annotator, items[:3], ["Invents a citation", "Wrong year", None])  # the pass has no note
    client.force_login(lead)
    html = client.get(f"/p/{project.slug}/review/notes/").content.decode()
    assert "3 reviews, 2 notes" in html and "3 notes" not in html
    listed = client.get(f"/api/v1/projects/{project.slug}/review-notes", headers=_bearer(lead)).json()
    assert len(listed) == 3 and sum(1 for n in listed if n["note"]) == 2
    unassigned = client.get(f"/api/v1/projects/{project.slug}/failure-modes", headers=_bearer(lead)).json()[-1]
    assert unassigned["n_notes"] == 2 == len(unassigned["notes"])


def test_a_new_user_has_no_notes(client, project):
    user = UserFactory(username="newbie")
    membership(user, project)
    client.force_login(user)
    assert "No reviews yet" in client.get(f"/p/{project.slug}/review/notes/").content.decode()
    project_set_status(project=project, status="active")
