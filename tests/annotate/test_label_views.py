"""The labeling pages over HTTP: access, htmx and plain-POST branches, blind labeling and the query budget."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from annotate import selectors
from annotate.keymap import keymap
from annotate.middleware import RETRY_MESSAGE, unavailable_response
from annotate.models import Assignment, Label
from annotate.services.labels import label_submit
from annotate.services.leases import assignments_expire
from annotate.services.projects import project_set_status
from annotate.services.queue import queue_claim, queue_skip
from annotate.splits import shown_order
from tests.factories import ItemFactory, ProjectFactory, UserFactory, label, membership

pytestmark = pytest.mark.django_db

FORM = {"c-acceptable": "pass", "c-follows_instructions": "pass", "c-factually_correct": "fail", "note": ""}


@pytest.fixture
def active(project):
    project_set_status(project=project, status="active")
    project.refresh_from_db()
    return project


def _current_item(client, project):
    page = client.get(reverse("label_queue", args=[project.slug]))
    assert page.status_code == 200
    return page.context["current"].item, page.context["current"].form_key


def _page_submitter(client, project):
    """Submits as label.js does (the page says which items it holds), each time taking the item the answer gives."""
    page = client.get(reverse("label_queue", args=[project.slug]))
    held = [page.context["current"], page.context["upcoming"][0]]

    def submit():
        current = held[0]
        response = client.post(
            reverse("label_submit", args=[project.slug, current.item.pk]),
            {**FORM, "form_key": current.form_key, "page_items": [card.item.pk for card in held]},
            headers={"HX-Request": "true"},
        )
        assert response.status_code == 200, response.content[:300]
        held[:] = [held[1], response.context["upcoming"][0]]

    return submit


def test_every_labeling_url_is_404_for_an_outsider(client, active, items, outsider, annotator):
    item = items[0]
    label(item, annotator, "acceptable", "pass")
    client.force_login(outsider)
    slug = active.slug
    gets = [
        reverse("label_queue", args=[slug]),
        reverse("label_undo", args=[slug]),
        reverse("label_history", args=[slug]),
        reverse("label_progress", args=[slug]),
        reverse("label_edit", args=[slug, item.pk]),
    ]
    posts = [
        reverse("label_submit", args=[slug, item.pk]),
        reverse("label_skip", args=[slug, item.pk]),
        reverse("label_heartbeat", args=[slug]),
        reverse("label_next", args=[slug]),
        reverse("label_edit", args=[slug, item.pk]),
    ]
    for url in gets:
        assert client.get(url).status_code == 404, url
    for url in posts:
        assert client.post(url, FORM).status_code == 404, url
    assert Label.objects.count() == 1
    assert not Assignment.objects.exists()


def test_a_plain_post_saves_and_redirects_to_the_next_item(client, active, items, annotator):
    client.force_login(annotator)
    item, key = _current_item(client, active)
    response = client.post(reverse("label_submit", args=[active.slug, item.pk]), {**FORM, "form_key": key})
    assert response.status_code == 302 and response.url == reverse("label_queue", args=[active.slug])
    assert Label.objects.filter(item=item, annotator=annotator).count() == 3
    next_item, _ = _current_item(client, active)
    assert next_item.pk != item.pk


def _queue_page(client, project):
    """The labeling page's items: (current item, its form key, the prefetched items' ids)."""
    page = client.get(reverse("label_queue", args=[project.slug]))
    assert page.status_code == 200
    current = page.context["current"]
    return current.item, current.form_key, [card.item.pk for card in page.context["upcoming"]]


def test_an_htmx_submit_answers_with_the_newly_prefetched_item_only(client, active, items, annotator):
    client.force_login(annotator)
    item, key, upcoming = _queue_page(client, active)
    response = client.post(
        reverse("label_submit", args=[active.slug, item.pk]),
        {**FORM, "form_key": key, "page_items": [item.pk, *upcoming]},
        headers={"HX-Request": "true"},
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith("<form") and "<html" not in body
    assert f'data-item="{upcoming[0]}"' not in body and f'data-item="{item.pk}"' not in body
    # Leases: the one shown now (prefetched earlier) and the one this response prefetched.
    assert Assignment.objects.filter(annotator=annotator, state="leased").count() == 2


def _leased(annotator) -> set[int]:
    return set(Assignment.objects.filter(annotator=annotator, state="leased").values_list("item_id", flat=True))


def test_the_next_item_is_a_lease_the_page_lacks_before_any_new_claim(client, active, items, annotator):
    # Two answers crossed on a slow link: the annotator holds a lease on an item the page was never sent.
    client.force_login(annotator)
    item, key, upcoming = _queue_page(client, active)
    stray = queue_claim(project=active, annotator=annotator, rubric_version_id=active.current_rubric_id)
    response = client.post(
        reverse("label_submit", args=[active.slug, item.pk]),
        {**FORM, "form_key": key, "page_items": [item.pk, *upcoming]},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert f'data-item="{stray.pk}"' in response.content.decode()
    assert _leased(annotator) == {*upcoming, stray.pk}, "no fresh lease while the page lacks one it holds"


def test_a_client_that_does_not_say_what_it_holds_gets_a_fresh_item_as_before(client, active, items, annotator):
    # A page loaded before pages said what they hold (or a scripted client, like the benchmarks) has the prefetched
    # item already: handing it back would show it twice.
    client.force_login(annotator)
    item, key, upcoming = _queue_page(client, active)
    response = client.post(
        reverse("label_submit", args=[active.slug, item.pk]), {**FORM, "form_key": key}, headers={"HX-Request": "true"}
    )
    (fresh,) = _leased(annotator) - set(upcoming)
    assert f'data-item="{fresh}"' in response.content.decode()


def test_the_queue_page_shows_every_item_leased_to_the_annotator(client, active, items, annotator):
    for _ in range(3):
        queue_claim(project=active, annotator=annotator, rubric_version_id=active.current_rubric_id)
    client.force_login(annotator)
    item, _key, upcoming = _queue_page(client, active)
    assert {item.pk, *upcoming} == _leased(annotator) and len(upcoming) == 2


def test_the_refill_answers_with_an_item_the_page_does_not_hold(client, active, items, annotator):
    client.force_login(annotator)
    item, _key, upcoming = _queue_page(client, active)
    url = reverse("label_next", args=[active.slug])
    response = client.post(url, {"page_items": [item.pk, *upcoming]}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200 and body.lstrip().startswith("<form") and "<html" not in body
    (new,) = _leased(annotator) - {item.pk, *upcoming}
    assert f'data-item="{new}"' in body
    # Junk in page_items is ignored, not an error; without htmx the queue page is where to go.
    assert client.post(url, {"page_items": ["x", ""]}, headers={"HX-Request": "true"}).status_code == 200
    plain = client.post(url)
    assert plain.status_code == 302 and plain.url == reverse("label_queue", args=[active.slug])


def test_the_refill_of_a_paused_project_is_refused_with_a_short_reason(client, project, items, annotator):
    client.force_login(annotator)
    response = client.post(reverse("label_next", args=[project.slug]), headers={"HX-Request": "true"})
    assert response.status_code == 409
    assert "not open for labeling" in json.loads(response["HX-Trigger"])["label-refused"]["message"]
    assert not Assignment.objects.exists()


def test_an_htmx_refusal_says_why_in_a_short_event_and_sends_no_page(client, active, items, annotator):
    client.force_login(annotator)
    item, key = _current_item(client, active)
    response = client.post(
        reverse("label_submit", args=[active.slug, item.pk]),
        {"c-acceptable": "pass", "form_key": key},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 409
    message = json.loads(response["HX-Trigger"])["label-refused"]["message"]
    assert "Follows the instruction" in message and len(message) <= 300
    assert len(response.content) < 1000 and b"<html" not in response.content


def test_a_late_submit_over_htmx_is_a_410_whose_reason_is_in_the_event(client, active, items, annotator):
    client.force_login(annotator)
    item, key = _current_item(client, active)
    # The lease ran out and the sweep freed it; others gave the item every label it needs meanwhile.
    Assignment.objects.filter(annotator=annotator, item=item).update(expires_at=timezone.now())
    assignments_expire()
    for _ in range(active.overlap):
        other = UserFactory()
        label_submit(
            project=active,
            annotator=other,
            item_id=item.pk,
            criteria=selectors.criteria_of_version(active.current_rubric_id),
            values={"acceptable": "pass", "follows_instructions": "pass", "factually_correct": "pass"},
        )
    response = client.post(
        reverse("label_submit", args=[active.slug, item.pk]), {**FORM, "form_key": key}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 410
    assert "all the labels it needs" in json.loads(response["HX-Trigger"])["label-refused"]["message"]
    assert not Label.objects.filter(item=item, annotator=annotator).exists()


def test_the_outage_answer_to_an_htmx_submit_carries_its_message_in_the_event(db):
    response = unavailable_response(RequestFactory().post("/p/x/label/1/", headers={"HX-Request": "true"}))
    assert response.status_code == 503
    assert json.loads(response["HX-Trigger"]) == {"label-refused": {"message": RETRY_MESSAGE}}


def test_a_double_submit_over_http_stores_once_and_still_moves_on(client, active, items, annotator):
    client.force_login(annotator)
    item, key = _current_item(client, active)
    url = reverse("label_submit", args=[active.slug, item.pk])
    first = client.post(url, {**FORM, "form_key": key}, headers={"HX-Request": "true"})
    second = client.post(url, {**FORM, "form_key": key}, headers={"HX-Request": "true"})
    assert first.status_code == second.status_code == 200
    assert Label.objects.filter(item=item).count() == 3


def test_a_missing_value_over_htmx_is_a_422_style_refusal_with_the_reason_and_nothing_saved(
    client, active, items, annotator
):
    client.force_login(annotator)
    item, key = _current_item(client, active)
    response = client.post(
        reverse("label_submit", args=[active.slug, item.pk]),
        {"c-acceptable": "pass", "form_key": key},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 409
    assert "Follows the instruction" in response.content.decode()
    assert not Label.objects.exists()


def test_without_javascript_a_refused_submit_shows_the_form_again_with_the_choices_kept(
    client, active, items, annotator
):
    client.force_login(annotator)
    item, key = _current_item(client, active)
    response = client.post(
        reverse("label_submit", args=[active.slug, item.pk]), {"c-acceptable": "fail", "form_key": key}
    )
    body = response.content.decode()
    assert response.status_code == 409
    assert 'value="fail" checked' in body
    assert "Choose a value for" in body


def test_annotators_never_see_each_others_labels(client, active, items, annotator, other_annotator):
    item = items[0]
    label(item, other_annotator, "acceptable", "fail", note="OTHER-ANNOTATOR-SECRET-NOTE")
    client.force_login(annotator)
    for _ in range(len(items)):
        page = client.get(reverse("label_queue", args=[active.slug])).content.decode()
        assert "OTHER-ANNOTATOR-SECRET-NOTE" not in page
        current = Assignment.objects.filter(annotator=annotator).order_by("created_at").first()
        if current is None:
            break
        queue_skip(project=active, annotator=annotator, item_id=current.item_id)
    assert client.get(reverse("label_edit", args=[active.slug, item.pk])).status_code == 404
    history = client.get(reverse("label_history", args=[active.slug])).content.decode()
    assert item.external_id not in history


def test_undo_opens_my_last_item_and_an_edit_saves_a_new_revision(client, active, items, annotator):
    client.force_login(annotator)
    item, key = _current_item(client, active)
    client.post(reverse("label_submit", args=[active.slug, item.pk]), {**FORM, "form_key": key})
    response = client.get(reverse("label_undo", args=[active.slug]))
    assert response.url == reverse("label_edit", args=[active.slug, item.pk])
    edit = client.get(response.url)
    assert 'value="fail" checked' in edit.content.decode()
    saved = client.post(
        response.url,
        {
            **FORM,
            "c-factually_correct": "pass",
            "rev-acceptable": 1,
            "rev-follows_instructions": 1,
            "rev-factually_correct": 1,
        },
    )
    assert saved.status_code == 302
    assert Label.objects.get(item=item, criterion__key="factually_correct").value == "pass"
    stale = client.post(
        response.url, {**FORM, "rev-acceptable": 1, "rev-follows_instructions": 1, "rev-factually_correct": 1}
    )
    assert stale.status_code == 409
    assert "changed elsewhere" in stale.content.decode()


def test_the_progress_panel_is_an_htmx_partial(client, active, items, annotator):
    client.force_login(annotator)
    response = client.get(reverse("label_progress", args=[active.slug]), headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body
    assert "Left for you" in body


def test_an_inactive_project_says_so_instead_of_handing_out_items(client, project, items, annotator):
    client.force_login(annotator)
    page = client.get(reverse("label_queue", args=[project.slug]))
    assert "not open for labeling" in page.content.decode()
    assert not Assignment.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres(reason="pins PostgreSQL's one-statement submit; SQLite writes the labels, counts and lease apart")
def test_the_submit_round_trip_stays_within_eight_queries(client, active, annotator):
    # A transactional test, so the count is what production runs (no test savepoints). Transaction control
    # (BEGIN/COMMIT) is listed apart: the budget is for statements that read or write.
    for _ in range(6):
        ItemFactory(project=active)
    client.force_login(annotator)
    item, key = _current_item(client, active)
    selectors.criteria_of_version(active.current_rubric_id)  # warm, as in a running process
    with CaptureQueriesContext(connection) as captured:
        response = client.post(
            reverse("label_submit", args=[active.slug, item.pk]),
            {**FORM, "form_key": key},
            headers={"HX-Request": "true"},
        )
    assert response.status_code == 200
    statements = [q["sql"] for q in captured.captured_queries]
    control = [sql for sql in statements if sql.strip().upper() in {"BEGIN", "COMMIT"}]
    work = [sql for sql in statements if sql not in control]
    assert len(work) <= 8, "\n".join(work)
    assert len(control) <= 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres(reason="pins PostgreSQL's one-statement next item; SQLite reads the leases and claims apart")
def test_a_submit_from_the_page_finds_its_next_item_in_one_statement(client, active, annotator):
    # As label.js posts it: the page says which items it holds, so the answer may be a lease it lacks or a fresh
    # claim. Both are one statement: user, project, the submit's lock and write, and the next item.
    for _ in range(6):
        ItemFactory(project=active)
    client.force_login(annotator)
    page = client.get(reverse("label_queue", args=[active.slug]))
    item, key = page.context["current"].item, page.context["current"].form_key
    prefetched = page.context["upcoming"][0].item
    selectors.criteria_of_version(active.current_rubric_id)  # warm, as in a running process
    with CaptureQueriesContext(connection) as captured:
        response = client.post(
            reverse("label_submit", args=[active.slug, item.pk]),
            {**FORM, "form_key": key, "page_items": [item.pk, prefetched.pk]},
            headers={"HX-Request": "true"},
        )
    assert response.status_code == 200
    work = [q["sql"] for q in captured.captured_queries if q["sql"].strip().upper() not in {"BEGIN", "COMMIT"}]
    assert len(work) <= 5, "\n".join(work)
    fresh = response.context["upcoming"][0].item
    assert fresh.pk not in {item.pk, prefetched.pk}
    leased = Assignment.objects.filter(annotator=annotator, state="leased").values_list("item_id", flat=True)
    assert sorted(leased) == sorted([prefetched.pk, fresh.pk])


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres(reason="prepared statements are PostgreSQL's; SQLite has none to ask about")
def test_the_submit_round_trips_statements_are_prepared_once_a_connection_has_run_them(client, active, annotator):
    # Planning each statement anew was over a tenth of the round trip: with DB_PREPARED_STATEMENTS (the default) the
    # server binds the parameters and keeps a plan per statement once a connection has run it five times.
    for _ in range(20):
        ItemFactory(project=active)
    client.force_login(annotator)
    submit = _page_submitter(client, active)
    for _ in range(7):
        submit()
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE NOT from_sql")
        prepared = [row[0] for row in cursor.fetchall()]
    for marker in ("FROM annotate_project p", "FOR UPDATE OF i", "INSERT INTO annotate_label", "SKIP LOCKED"):
        assert any(marker in sql for sql in prepared), (marker, prepared)
    # Parameters, not values, are in what the server keeps: one plan serves every annotator and item.
    assert not any(f"= {annotator.pk} " in sql for sql in prepared)


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres(reason="prepared statements are PostgreSQL's")
def test_a_migration_adding_columns_while_the_app_serves_breaks_no_prepared_statement(client, active, annotator):
    # A rolling deploy migrates while the previous release still serves, on connections that prepared the hot path's
    # statements: those list their columns, so a column added meanwhile does not change what they return.
    import psycopg

    for _ in range(20):
        ItemFactory(project=active)
    client.force_login(annotator)
    submit = _page_submitter(client, active)
    for _ in range(6):
        submit()
    params = connection.get_connection_params()
    other = psycopg.connect(
        **{k: v for k, v in params.items() if k not in {"cursor_factory", "context", "prepare_threshold"}},
        autocommit=True,
    )
    try:
        for table in ("annotate_item", "annotate_project"):
            other.execute(f"ALTER TABLE {table} ADD COLUMN added_by_a_later_release integer")
        for _ in range(3):
            submit()
    finally:
        for table in ("annotate_item", "annotate_project"):
            other.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS added_by_a_later_release")
        other.close()


@pytest.mark.postgres(reason="prepared statements are PostgreSQL's; closing SQLite's in-memory test database loses it")
def test_a_statement_prepared_before_a_migration_changed_its_result_answers_retry_and_reconnects(db):
    # The safety net for raw SQL that still selects `*`: PostgreSQL refuses the stale prepared statement; the request
    # gets the retry answer and the connection is closed, so the next request prepares the statement afresh.
    from django.db import NotSupportedError

    from annotate.middleware import outage_message

    connection.ensure_connection()
    assert outage_message(NotSupportedError("cached plan must not change result type")) == RETRY_MESSAGE
    assert connection.connection is None or connection.connection.closed
    assert outage_message(NotSupportedError("something else")) is None


def test_pairwise_item_text_with_html_is_inert_and_markdown_tricks_render_safely(client, db):
    from tests.factories import ProjectFactory, membership

    project = ProjectFactory(kind="pairwise", slug="pw")
    project_set_status(project=project, status="active")
    user = UserFactory()
    membership(user, project)
    ItemFactory(
        project=project,
        input='[{"role": "user", "content": "<script>alert(1)</script> hi"}, {"role": "assistant", "content": "ok"}]',
        output="",
        output_a="<img src=x onerror=alert(2)> <svg onload=alert(3)></svg> [x](javascript:alert(4))",
        output_b='<a href="javascript:alert(5)">click</a> ![img](javascript:alert(6)) <iframe src="//evil"></iframe>',
    )
    client.force_login(user)
    page = client.get(reverse("label_queue", args=["pw"])).content.decode()
    main = page.split("<main>")[1]
    for bad in ("<script>alert", "<img", "<svg", "<iframe", '<a href="javascript', "<a href='javascript"):
        assert bad not in main, bad
    assert 'class="msg msg-user"' in main and 'class="msg msg-assistant"' in main


class _FirstForm(HTMLParser):
    """What a browser without JavaScript submits from the first form whose action matches `action`: its hidden inputs
    (CSRF token and form key included) and, as a hurried newcomer would, the first radio of every group."""

    def __init__(self, action: str) -> None:
        super().__init__()
        self.pattern = re.compile(action)
        self.action = ""
        self.data: dict[str, str] = {}
        self._inside = False
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and not self._done and self.pattern.fullmatch(a.get("action", "")):
            self._inside, self.action = True, a["action"]
        elif tag == "input" and self._inside and a.get("name"):
            if a.get("type") == "hidden":
                self.data[a["name"]] = a.get("value", "")
            elif a.get("type") == "radio":
                self.data.setdefault(a["name"], a.get("value", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._inside:
            self._inside, self._done = False, True


@pytest.mark.parametrize("kind", ["binary", "pairwise"])
def test_without_javascript_a_newcomer_labels_item_after_item_with_plain_form_posts(kind):
    """The no-JavaScript path after `make run`: page, form, POST, redirect, next item; CSRF enforced as in a
    browser. Runs on both databases (the embedded SQLite default once answered every submit with a 500)."""
    project = ProjectFactory(kind=kind, slug=f"plain-{kind}", overlap=1)
    project_set_status(project=project, status="active")
    for n in range(4):
        fields = {"output_a": f"Answer A{n}", "output_b": f"Answer B{n}"} if kind == "pairwise" else {}
        ItemFactory(project=project, **fields)
    user = UserFactory(username=f"newcomer-{kind}")
    membership(user, project)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    queue = reverse("label_queue", args=[project.slug])
    submitted = []
    for _ in range(3):
        form = _FirstForm(re.escape(queue) + r"\d+/")
        form.feed(browser.get(queue).content.decode())
        assert form.action and form.data.get("csrfmiddlewaretoken") and form.data.get("form_key"), form.data
        response = browser.post(form.action, form.data)
        assert response.status_code == 302 and response.url == queue, response.content.decode()[:500]
        item_id = int(form.action.rstrip("/").rsplit("/", 1)[1])
        submitted.append(item_id)
        stored = set(Label.objects.filter(item_id=item_id, annotator=user).values_list("value", flat=True))
        if kind == "pairwise":  # the first choice shown is "Left is better": stored as the output shown on the left
            assert stored == {"a" if shown_order(user.pk, item_id) == Label.Order.AB else "b"}
        else:
            assert stored == {"pass"}
    assert len(set(submitted)) == 3
    assert Label.objects.filter(annotator=user).count() == 3 * len(selectors.criteria_current(project=project))
    assert not Assignment.objects.filter(annotator=user, item_id__in=submitted).exists()


def _handed_to_the_script(body: str) -> list[dict]:
    return json.loads(re.search(r'<script id="keymap" type="application/json">(.*?)</script>', body, re.S).group(1))


def test_the_keyboard_help_and_the_keys_handed_to_the_script_come_from_one_map(client, active, items, annotator):
    client.force_login(annotator)
    queue = client.get(reverse("label_queue", args=[active.slug])).content.decode()
    data = _handed_to_the_script(queue)
    assert data == [b.as_data() for b in keymap(page="queue", kind="binary", allow_tie=active.allow_tie)]
    assert [b["action"] for b in data] == [
        "next", "prev", "choose:0", "choose:1", "note", "submit", "skip", "undo", "help"
    ]  # fmt: skip
    assert [b["keys"] for b in data][2:4] == [["1", "p"], ["2", "f"]]
    assert all(f'<tr data-action="{b["action"]}">' in queue for b in data)

    item, key = _current_item(client, active)
    client.post(reverse("label_submit", args=[active.slug, item.pk]), {**FORM, "form_key": key})
    edit = client.get(reverse("label_edit", args=[active.slug, item.pk])).content.decode()
    assert [b["action"] for b in _handed_to_the_script(edit)] == [
        "next", "prev", "choose:0", "choose:1", "note", "submit", "cancel", "help"
    ]  # fmt: skip
    assert "<kbd>Esc</kbd>" in edit and f'href="{reverse("label_queue", args=[active.slug])}" class="cancel"' in edit
    from_history = client.get(reverse("label_edit", args=[active.slug, item.pk]) + "?next=history").content.decode()
    assert f'href="{reverse("label_history", args=[active.slug])}" class="cancel"' in from_history


def test_the_pairwise_map_chooses_sides_with_the_arrows_and_offers_tie_only_when_allowed():
    with_tie = keymap(page="queue", kind="pairwise", allow_tie=True)
    assert [(b.keys, b.action, b.label) for b in with_tie if b.action.startswith("choose:")] == [
        (("1", "ArrowLeft"), "choose:0", "Left is better"),
        (("2", "ArrowRight"), "choose:1", "Right is better"),
        (("3", "t"), "choose:2", "Tie"),
    ]
    without = keymap(page="edit", kind="pairwise", allow_tie=False)
    assert "choose:2" not in {b.action for b in without}
    assert [b.key_names for b in without if b.action == "choose:0"] == [["1", "←"]]
    with pytest.raises(ValueError, match="page"):
        keymap(page="history", kind="binary", allow_tie=False)
    with pytest.raises(ValueError, match="kind"):
        keymap(page="queue", kind="ranking", allow_tie=False)
