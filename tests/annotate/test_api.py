"""The token API: hashed, revocable tokens; the same object-level access as the pages; JSON errors; a valid schema."""

from __future__ import annotations

import json

import pytest
from django.apps import apps
from django.db import OperationalError, connection, models
from django.test.utils import CaptureQueriesContext

from annotate import api, tokens
from annotate.middleware import RETRY_MESSAGE
from annotate.models import ApiToken, ImportedUser, Item, Label, imported_username
from tests.factories import ItemFactory, ProjectFactory, membership

pytestmark = pytest.mark.django_db

API = "/api/v1"


def _token(user, name: str = "pipeline") -> str:
    _row, raw = tokens.token_create(user=user, name=name)
    return raw


def _auth(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


def _post(client, path: str, body: object, raw: str):
    return client.post(API + path, data=json.dumps(body), content_type="application/json", headers=_auth(raw))


ENDPOINTS = [
    ("get", "/projects"),
    ("post", "/projects"),
    ("get", "/projects/support-bot"),
    ("get", "/projects/support-bot/progress"),
    ("post", "/projects/support-bot/items"),
    ("post", "/projects/support-bot/labels"),
    ("post", "/projects/support-bot/samples"),
]


def test_without_a_valid_token_every_endpoint_answers_401_in_json(client, project):
    for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Bearer ann_000000000000_wrong"}):
        for method, path in ENDPOINTS:
            response = getattr(client, method)(API + path, headers=headers)
            assert response.status_code == 401, (method, path)
            assert response["Content-Type"].startswith("application/json")
            assert "API token" in response.json()["detail"]
            assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_token_is_stored_hashed_and_its_secret_is_nowhere_in_the_database(lead):
    row, raw = tokens.token_create(user=lead, name="nightly")
    secret = raw.split("_", 2)[2]
    assert raw.startswith(f"ann_{row.prefix}_") and len(secret) >= 40
    assert row.secret_hash != secret and len(row.secret_hash) == 64
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, models.CharField | models.TextField):
                assert not model._default_manager.filter(**{f"{field.name}__contains": secret}).exists(), field


def test_a_revoked_token_gets_401_and_an_inactive_users_token_too(client, lead, project):
    row, raw = tokens.token_create(user=lead, name="ci")
    assert client.get(API + "/projects", headers=_auth(raw)).status_code == 200
    assert ApiToken.objects.get(pk=row.pk).last_used_at is not None
    tokens.token_revoke(user=lead, token_id=row.pk)
    assert client.get(API + "/projects", headers=_auth(raw)).status_code == 401
    other = _token(lead)
    type(lead).objects.filter(pk=lead.pk).update(is_active=False)
    assert client.get(API + "/projects", headers=_auth(other)).status_code == 401


def test_a_token_reaches_only_its_users_projects_and_another_slug_is_404_like_a_missing_one(client, project, outsider):
    raw = _token(outsider)
    mine = client.get(API + "/projects", headers=_auth(raw)).json()
    assert [p["slug"] for p in mine] == ["other-team"]
    bodies = {
        "items": {"items": [{"input": "Q", "output": "A"}]},
        "labels": {"external_id": "x", "annotator": "a", "criterion": "acceptable", "value": "pass"},
        "samples": {"input": "Q", "output": "A"},
    }
    for method, path in ENDPOINTS[2:]:
        if method == "post":
            response = _post(client, path, bodies[path.rsplit("/", 1)[1]], raw)
        else:
            response = client.get(API + path, headers=_auth(raw))
        assert response.status_code == 404, path
        assert response.json()["detail"] == "No such project."
    missing = client.get(API + "/projects/no-such-project", headers=_auth(raw))
    assert (
        missing.status_code == 404
        and missing.json() == client.get(API + "/projects/support-bot", headers=_auth(raw)).json()
    )


def test_an_annotators_token_reads_the_project_but_cannot_push_data(client, project, annotator):
    raw = _token(annotator)
    read = client.get(API + "/projects/support-bot", headers=_auth(raw))
    assert read.status_code == 200 and read.json()["role"] == "annotator"
    assert [c["key"] for c in read.json()["criteria"]] == ["acceptable", "follows_instructions", "factually_correct"]
    response = _post(client, "/projects/support-bot/items", {"items": [{"input": "Q", "output": "A"}]}, raw)
    assert response.status_code == 404 and not Item.objects.exists()


def test_pushing_items_is_all_or_nothing_with_field_level_errors(client, project, lead):
    raw = _token(lead)
    body = {"items": [{"input": "Q1", "output": "A1"}, {"input": "Q2", "output_a": "A"}, {"input": 3, "output": "x"}]}
    response = _post(client, "/projects/support-bot/items", body, raw)
    assert response.status_code == 400
    errors = response.json()["errors"]
    # The type error is caught by the schema before anything runs; it names the field.
    assert {"field": "items.2.input", "message": "Input should be a valid string (or a valid list)"} in errors
    assert not Item.objects.exists()
    response = _post(client, "/projects/support-bot/items", {"items": body["items"][:2]}, raw)
    assert response.status_code == 400
    assert response.json() == {
        "detail": "2 bad items; nothing was written.",
        "errors": [
            {"field": "items.1.output", "message": "missing field"},
            {"field": "items.1.output_a", "message": "unknown field (put extra data in metadata)"},
        ],
    }
    assert not Item.objects.exists()


def test_pushing_the_same_items_twice_changes_nothing_and_a_single_object_is_a_batch_of_one(client, project, lead):
    raw = _token(lead)
    item = {"external_id": "t-1", "input": "Q", "output": "A", "metadata": {"trace": "x"}}
    first = _post(client, "/projects/support-bot/items", item, raw)
    assert first.status_code == 200 and first.json()["new"] == 1
    again = _post(client, "/projects/support-bot/items", {"items": [item]}, raw)
    assert (again.json()["new"], again.json()["unchanged"]) == (0, 1)
    stored = Item.objects.get(project=project)
    assert (stored.source, stored.metadata) == ("api", {"trace": "x"})
    conflict = _post(client, "/projects/support-bot/items", {**item, "output": "B"}, raw).json()
    assert conflict["conflicts"] == 1 and conflict["conflict_details"] == [{"line": 0, "external_id": "t-1"}]


def test_a_batch_into_a_project_with_items_compares_each_row_whether_it_names_its_id_or_not(
    client, project, lead, monkeypatch
):
    """The ids a batch names are looked up before its rows are checked, and those rows are written in small runs as
    they are checked; rows without an id (their content is their id) are looked up after. Same outcome either way."""
    from annotate.imports import items as import_items

    monkeypatch.setattr(import_items, "_READY", 2)  # several runs of written rows in one small batch
    raw = _token(lead)
    before = [{"external_id": f"t-{i}", "input": f"Q{i}", "output": "A"} for i in range(4)]
    before.append({"input": "Q no id", "output": "A"})
    assert _post(client, "/projects/support-bot/items", {"items": before}, raw).json()["new"] == 5
    batch = [
        {"input": "Q new, no id", "output": "A"},  # line 0: new, looked up after the others
        {"external_id": "t-0", "input": "Q0", "output": "A"},  # unchanged
        {"external_id": "t-1", "input": "Q1", "output": "changed"},  # conflict, updated
        {"input": "Q no id", "output": "A"},  # unchanged, found by its content
        {"external_id": "t-9", "input": "Q9", "output": "A"},  # new
        {"external_id": "t-2", "input": "Q2", "output": "changed too"},  # conflict, updated
        {"external_id": "t-10", "input": "Q10", "output": "A"},  # new
    ]
    with CaptureQueriesContext(connection) as queries:
        body = _post(client, "/projects/support-bot/items", {"items": batch, "update": True}, raw).json()
    # One look-up for every id the batch names, one for the rows without: the runs of written rows add none.
    look_ups = [q["sql"] for q in queries if q["sql"].startswith("SELECT") and "content_hash" in q["sql"]]
    assert len(look_ups) == 2, look_ups
    assert (body["new"], body["unchanged"], body["conflicts"], body["updated"]) == (3, 2, 2, 2)
    assert body["conflict_details"] == [{"line": 2, "external_id": "t-1"}, {"line": 5, "external_id": "t-2"}]
    outputs = dict(Item.objects.filter(project=project).values_list("input", "output"))
    assert len(outputs) == 8
    assert (outputs["Q1"], outputs["Q2"], outputs["Q new, no id"]) == ("changed", "changed too", "A")
    # A bad row after rows already written: nothing of the batch stays.
    bad = [{"external_id": f"u-{i}", "input": "Q", "output": "A"} for i in range(5)] + [{"input": " ", "output": "A"}]
    assert _post(client, "/projects/support-bot/items", {"items": bad}, raw).status_code == 400
    assert Item.objects.filter(project=project).count() == 8


def test_pushing_labels_counts_them_and_creates_imported_users(client, lead):
    project = ProjectFactory(
        slug="one-criterion", overlap=1, criteria=[{"key": "acceptable", "name": "Acceptable", "description": "OK?"}]
    )
    membership(lead, project, "lead")
    item = ItemFactory(project=project, external_id="t-1")
    raw = _token(lead)
    body = {"labels": [{"external_id": "t-1", "annotator": "rater-7", "criterion": "acceptable", "value": "fail"}]}
    response = _post(client, "/projects/one-criterion/labels", body, raw)
    assert response.status_code == 200 and response.json()["users_created"] == ["rater-7"]
    assert ImportedUser.objects.filter(
        user__username=imported_username(project.pk, "rater-7"), project=project
    ).exists()
    item.refresh_from_db()
    assert item.n_submitted == 1 and Label.objects.get().value == "fail"
    progress = client.get(API + "/projects/one-criterion/progress", headers=_auth(raw)).json()
    assert (progress["n_items"], progress["n_complete"], progress["n_labels_current"]) == (1, 1, 1)


@pytest.mark.parametrize("debug", [True, False])
def test_an_unexpected_error_is_a_short_json_500_and_its_traceback_goes_to_the_log(
    client, project, lead, settings, monkeypatch, caplog, debug
):
    settings.DEBUG = debug  # under DEBUG, django-ninja's own handler answers with the traceback as text

    def broken(**kwargs):
        raise RuntimeError("internal detail: /srv/annotate/secret.py line 12")

    monkeypatch.setattr(api, "items_import", broken)
    response = _post(client, "/projects/support-bot/items", {"items": [{"input": "Q", "output": "A"}]}, _token(lead))
    assert response.status_code == 500
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {"detail": api.UNEXPECTED_ERROR, "errors": []}
    assert b"Traceback" not in response.content and b"internal detail" not in response.content
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    assert record.levelname == "ERROR" and record.status_code == 500  # type: ignore[attr-defined]
    assert record.exc_info and "internal detail" in str(record.exc_info[1])
    assert "/api/v1/projects/support-bot/items" in record.getMessage()


@pytest.mark.parametrize("debug", [True, False])
def test_a_database_outage_inside_an_api_call_is_the_json_503_with_the_retry_message(
    client, project, lead, settings, monkeypatch, debug
):
    settings.DEBUG = debug

    def lost(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(api, "items_import", lost)
    response = _post(client, "/projects/support-bot/items", {"items": [{"input": "Q", "output": "A"}]}, _token(lead))
    assert response.status_code == 503 and response.json() == {"detail": RETRY_MESSAGE}
    assert response["Retry-After"] == "5"


def test_a_request_body_or_batch_too_large_gets_413_in_json(client, project, lead, settings):
    raw = _token(lead)
    settings.API_MAX_BATCH = 2
    body = {"items": [{"input": f"Q{i}", "output": "A"} for i in range(3)]}
    response = _post(client, "/projects/support-bot/items", body, raw)
    assert response.status_code == 413 and "at most 2" in response.json()["detail"]
    settings.API_MAX_BODY_BYTES = 1024
    body = {"items": [{"input": "x" * 2000, "output": "A"}]}
    response = _post(client, "/projects/support-bot/items", body, raw)
    assert response.status_code == 413 and "too large" in response.json()["detail"]
    assert not Item.objects.exists()


def _rows_of_1_4_kb(n: int, *, output_chars: int = 1000) -> list[dict[str, object]]:
    """n binary items of about 1.4 kB as JSON (the issue's rows), each distinct."""
    return [
        {
            "external_id": f"conv-{i}",
            "input": f"Question {i}: " + "where is my refund for order " * 10,
            "output": f"Answer {i}. " + ("It left our warehouse yesterday. " * 200)[:output_chars],
            "metadata": {"model": "support-bot-v3", "trace": i},
        }
        for i in range(n)
    ]


def test_the_documented_batch_of_api_max_batch_items_of_1_4_kb_is_accepted(client, project, lead, settings):
    assert settings.API_MAX_BATCH == 5000  # the documented default
    rows = _rows_of_1_4_kb(settings.API_MAX_BATCH)
    body = json.dumps({"items": rows})
    # Larger than every other path takes: it passes only through the batch endpoints' own limit.
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE < len(body) < settings.API_MAX_BODY_BYTES
    assert 1300 < len(body) / len(rows) < 1500
    response = _post(client, "/projects/support-bot/items", {"items": rows}, _token(lead))
    assert response.status_code == 200, response.content[:500]
    assert response.json()["new"] == 5000 and Item.objects.filter(project=project).count() == 5000
    assert Item.objects.get(external_id="conv-4999").output.startswith("Answer 4999.")


def test_a_batch_body_over_api_max_body_bytes_gets_a_413_that_says_the_limit_and_writes_nothing(
    client, project, lead, settings
):
    rows = _rows_of_1_4_kb(settings.API_MAX_BATCH, output_chars=3300)
    body = json.dumps({"items": rows})
    assert len(body) > settings.API_MAX_BODY_BYTES
    response = client.post(
        API + "/projects/support-bot/items", data=body, content_type="application/json", headers=_auth(_token(lead))
    )
    assert response.status_code == 413
    detail = response.json()["detail"]
    assert "too large" in detail and f"{settings.API_MAX_BODY_BYTES:,}" in detail and "smaller batches" in detail
    assert not Item.objects.exists()
