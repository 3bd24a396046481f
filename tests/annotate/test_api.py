"""The token API: hashed, revocable tokens; the same object-level access as the pages; JSON errors; a valid schema."""

from __future__ import annotations

import json

import pytest
from django.apps import apps
from django.db import OperationalError, models
from django.urls import reverse

from annotate import api, imports, ratelimit, tokens
from annotate.middleware import RETRY_MESSAGE
from annotate.models import ApiToken, ImportedUser, Item, Label, Project, imported_username
from tests.factories import ItemFactory, ProjectFactory, UserFactory, membership

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

    monkeypatch.setattr(imports, "items_import", broken)
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

    monkeypatch.setattr(imports, "items_import", lost)
    response = _post(client, "/projects/support-bot/items", {"items": [{"input": "Q", "output": "A"}]}, _token(lead))
    assert response.status_code == 503 and response.json() == {"detail": RETRY_MESSAGE}
    assert response["Retry-After"] == "5"


def test_a_request_body_or_batch_too_large_gets_413_in_json(client, project, lead, settings):
    raw = _token(lead)
    settings.API_MAX_BATCH = 2
    body = {"items": [{"input": f"Q{i}", "output": "A"} for i in range(3)]}
    response = _post(client, "/projects/support-bot/items", body, raw)
    assert response.status_code == 413 and "at most 2" in response.json()["detail"]
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    body = {"items": [{"input": "x" * 2000, "output": "A"}]}
    response = _post(client, "/projects/support-bot/items", body, raw)
    assert response.status_code == 413 and "too large" in response.json()["detail"]
    assert not Item.objects.exists()


def test_more_requests_than_the_rate_limit_get_429_per_token(client, project, lead, settings):
    settings.API_RATE_LIMIT = 3
    row, raw = tokens.token_create(user=lead, name="busy")
    ratelimit.reset(f"api:{row.prefix}", per_seconds=60)
    codes = [client.get(API + "/projects", headers=_auth(raw)).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = client.get(API + "/projects", headers=_auth(raw))
    assert "at most 3 per minute" in limited.json()["detail"] and int(limited["Retry-After"]) >= 1
    fresh = _token(lead, "another")
    assert client.get(API + "/projects", headers=_auth(fresh)).status_code == 200


def test_only_staff_create_projects_and_an_existing_slug_is_a_409(client, lead, project):
    from annotate.api import PROJECT_EXAMPLE

    raw = _token(lead)
    assert _post(client, "/projects", PROJECT_EXAMPLE, raw).status_code == 403
    staff = UserFactory(username="root", is_staff=True)
    staff_raw = _token(staff)
    created = _post(client, "/projects", PROJECT_EXAMPLE, staff_raw)
    assert created.status_code == 201 and created.json()["rubric_version"] == 1
    assert Project.objects.filter(slug=PROJECT_EXAMPLE["slug"]).exists()
    again = _post(client, "/projects", PROJECT_EXAMPLE, staff_raw)
    assert again.status_code == 409 and again.json()["errors"] == [{"field": "slug", "message": "taken"}]
    bad = _post(client, "/projects", {**PROJECT_EXAMPLE, "slug": "x2", "criteria": []}, staff_raw)
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "criteria"


def _schema(client) -> dict:
    response = client.get(API + "/openapi.json")
    assert response.status_code == 200
    return response.json()


def _resolve(schema: dict, node: object) -> None:
    """Every $ref in the document points at something that exists."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            target: object = schema
            for part in ref.removeprefix("#/").split("/"):
                assert isinstance(target, dict) and part in target, ref
                target = target[part]
        for value in node.values():
            _resolve(schema, value)
    elif isinstance(node, list):
        for value in node:
            _resolve(schema, value)


def test_the_openapi_schema_is_a_valid_openapi_3_document(client):
    schema = _schema(client)
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "annotate API" and schema["info"]["version"] == "1"
    assert schema["components"]["securitySchemes"]["TokenAuth"] == {"type": "http", "scheme": "bearer"}
    for path, operations in schema["paths"].items():
        assert path.startswith("/api/v1/")
        for method, operation in operations.items():
            assert method in {"get", "post", "put", "patch", "delete"}
            assert operation["responses"] and operation["operationId"]
            assert operation["security"] == [{"TokenAuth": []}], path
            for code in operation["responses"]:
                assert code.isdigit()
    ids = [op["operationId"] for ops in schema["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    _resolve(schema, schema)


def test_the_examples_in_the_schema_work_against_real_projects(client, lead):
    schema = _schema(client)
    examples = {name: body["examples"] for name, body in schema["components"]["schemas"].items() if "examples" in body}
    binary = ProjectFactory(slug="examples")
    pairwise = ProjectFactory(slug="examples-pairs", kind="pairwise")
    for project in (binary, pairwise):
        membership(lead, project, "lead")
    raw = _token(lead)
    items_binary, items_pairwise = examples["ItemBatchIn"]
    assert _post(client, "/projects/examples/items", items_binary, raw).json()["new"] == 2
    assert _post(client, "/projects/examples-pairs/items", items_pairwise, raw).json()["new"] == 1
    labels = _post(client, "/projects/examples/labels", examples["LabelBatchIn"][0], raw)
    assert labels.status_code == 200 and labels.json()["new"] == 1
    records = _post(client, "/projects/examples/samples", examples["RecordBatchIn"][0], raw)
    assert records.status_code == 200 and records.json()["received"] == 1
    staff = _token(UserFactory(username="admin-user", is_staff=True))
    assert _post(client, "/projects", examples["ProjectIn"][0], staff).status_code == 201


def test_the_docs_page_serves_swagger_from_local_static_files_under_the_csp(client):
    response = client.get(API + "/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in html and "/static/ninja/swagger-ui-init.js" in html
    assert "cdn" not in html.lower() and "https://" not in html
    # The only inline <script> is a JSON data block, which the browser does not run.
    assert html.count("<script") == html.count("<script src=") + html.count('<script type="application/json"')
    assert "script-src 'self'" in response["Content-Security-Policy"]


def test_the_tokens_page_shows_a_new_token_once_and_keeps_only_its_prefix(client, lead):
    client.force_login(lead)
    page = client.get(reverse("token_list"))
    assert page.status_code == 200 and b"Create token" in page.content
    created = client.post(reverse("token_list"), {"name": "nightly export"})
    assert created.status_code == 201
    token = ApiToken.objects.get(user=lead)
    raw = created.content.decode().split('<code id="new-token">')[1].split("</code>")[0]
    assert tokens.token_authenticate(raw) == token
    assert "no-store" in created["Cache-Control"]
    later = client.get(reverse("token_list")).content.decode()
    assert raw not in later and f"ann_{token.prefix}_…" in later


def test_the_tokens_page_answers_htmx_with_its_partial_for_create_and_revoke(client, lead):
    client.force_login(lead)
    created = client.post(reverse("token_list"), {"name": "ci"}, headers={"HX-Request": "true"})
    body = created.content.decode()
    assert created.status_code == 200 and 'id="tokens"' in body and "<html" not in body and "ann_" in body
    empty = client.post(reverse("token_list"), {"name": ""}, headers={"HX-Request": "true"})
    assert "This field is required" in empty.content.decode()
    token = ApiToken.objects.get(user=lead)
    revoked = client.post(reverse("token_revoke", args=[token.pk]), headers={"HX-Request": "true"})
    assert (
        revoked.status_code == 200 and "revoked" in revoked.content.decode() and "<html" not in revoked.content.decode()
    )
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None


def test_revoking_another_users_token_is_a_404_and_the_token_pages_need_a_login(client, lead, outsider):
    row, raw = tokens.token_create(user=lead, name="mine")
    client.force_login(outsider)
    assert client.post(reverse("token_revoke", args=[row.pk])).status_code == 404
    assert tokens.token_authenticate(raw) is not None
    client.logout()
    for response in (client.get(reverse("token_list")), client.post(reverse("token_revoke", args=[row.pk]))):
        assert response.status_code == 302 and response.url.startswith(reverse("login"))
    client.force_login(lead)
    done = client.post(reverse("token_revoke", args=[row.pk]), follow=True)
    assert "no longer opens the API" in done.content.decode() and tokens.token_authenticate(raw) is None


def test_a_lead_sets_the_daily_sample_through_the_api_and_nobody_else_can(client, project, lead, annotator, outsider):
    url = API + "/projects/support-bot"
    body = json.dumps({"sample_size": 120, "sample_hour": 22})
    for user in (annotator, outsider):
        response = client.patch(url, body, content_type="application/json", headers=_auth(_token(user)))
        assert response.status_code == 404
    raw = _token(lead)
    response = client.patch(url, body, content_type="application/json", headers=_auth(raw))
    assert response.status_code == 200
    assert (response.json()["sample_size"], response.json()["sample_hour"]) == (120, 22)
    project.refresh_from_db()
    assert (project.sample_size, project.sample_hour) == (120, 22)
    # An omitted setting stays; 0 turns the sample off; out of range is a 400 naming the field, nothing written.
    response = client.patch(url, json.dumps({"sample_size": 0}), content_type="application/json", headers=_auth(raw))
    assert response.json()["sample_size"] == 0 and response.json()["sample_hour"] == 22
    for bad in ({"sample_hour": 24}, {"sample_size": 10_001}, {"sample_size": "5"}, {"overlap": 3}):
        response = client.patch(url, json.dumps(bad), content_type="application/json", headers=_auth(raw))
        assert response.status_code == 400, bad
    project.refresh_from_db()
    assert (project.sample_size, project.sample_hour) == (0, 22)


def test_a_project_created_through_the_api_takes_its_sample_settings_from_the_spec(client, project, lead):
    staff = UserFactory(username="root", is_staff=True)
    spec = {
        "slug": "sampled",
        "name": "Sampled",
        "kind": "binary",
        "sample_size": 7,
        "sample_hour": 3,
        "criteria": [{"key": "ok", "name": "OK", "description": "Fine."}],
    }
    response = _post(client, "/projects", spec, _token(staff))
    assert response.status_code == 201 and (response.json()["sample_size"], response.json()["sample_hour"]) == (7, 3)
