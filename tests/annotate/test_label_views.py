"""The labeling pages over HTTP: access, htmx and plain-POST branches, blind labeling and the query budget."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotate import selectors, services
from annotate.models import Assignment, Label
from annotate.splits import shown_order
from tests.factories import ItemFactory, ProjectFactory, UserFactory, label, membership

pytestmark = pytest.mark.django_db

FORM = {"c-acceptable": "pass", "c-follows_instructions": "pass", "c-factually_correct": "fail", "note": ""}


@pytest.fixture
def active(project):
    services.project_set_status(project=project, status="active")
    project.refresh_from_db()
    return project


def _current_item(client, project):
    page = client.get(reverse("label_queue", args=[project.slug]))
    assert page.status_code == 200
    return page.context["current"].item, page.context["current"].form_key


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


def test_an_htmx_submit_answers_with_the_newly_prefetched_item_only(client, active, items, annotator):
    client.force_login(annotator)
    item, key = _current_item(client, active)
    response = client.post(
        reverse("label_submit", args=[active.slug, item.pk]), {**FORM, "form_key": key}, headers={"HX-Request": "true"}
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith("<form") and "<html" not in body
    # Leases: the one shown now (prefetched earlier) and the one this response prefetched.
    assert Assignment.objects.filter(annotator=annotator, state="leased").count() == 2


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
        services.queue_skip(project=active, annotator=annotator, item_id=current.item_id)
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


def test_pairwise_item_text_with_html_is_inert_and_markdown_tricks_render_safely(client, db):
    from tests.factories import ProjectFactory, membership

    project = ProjectFactory(kind="pairwise", slug="pw")
    services.project_set_status(project=project, status="active")
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
    services.project_set_status(project=project, status="active")
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
