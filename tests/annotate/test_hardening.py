"""Findings of an attack and fault run (issue 19), each with the behaviour a user or an attacker would notice: bodies
refused before they are parsed, bytes that are not text refused with the field named, the label import's annotator
rule, capped notes, a full upload folder, CSV cells a spreadsheet would run, and bidirectional text kept inert."""

from __future__ import annotations

import csv
import errno
import io
import json
import pathlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.urls import reverse

from annotate import exports, ratelimit, reports, tokens
from annotate.imports.files import file_import
from annotate.imports.jobs import _upload_dir
from annotate.imports.report import ImportInvalid
from annotate.models import GoldLabel, ImportedUser, ImportJob, Item, Label, Project, shown_username
from annotate.services.items import item_build
from annotate.services.projects import project_set_status
from annotate.templatetags.rendering import render_text_filter
from tests.factories import ItemFactory, ProjectFactory, UserFactory, label, membership

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _uploads(settings, tmp_path):
    settings.IMPORT_UPLOAD_DIR = tmp_path / "uploads"


def _api(client, path: str, body: str, user) -> object:
    _row, raw = tokens.token_create(user=user, name="pipeline")
    return client.post(
        "/api/v1" + path, data=body, content_type="application/json", headers={"Authorization": f"Bearer {raw}"}
    )


@pytest.fixture
def active(project, lead, annotator):
    project_set_status(project=project, status="active")
    return project


def _choices(project, value: str = "pass") -> dict[str, str]:
    return {f"c-{c.key}": value for c in project.current_rubric.criteria.all()}


# --- Bodies are refused by their declared size, per path, before Django parses them -----------------------------


class _Recorder(TemporaryFileUploadHandler):
    """Django's own upload handler, counting the bytes it is handed: a file part it spools, or none."""

    received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        type(self).received += len(raw_data)
        return super().receive_data_chunk(raw_data, start)


@pytest.fixture
def recorder(settings):
    _Recorder.received = 0
    settings.FILE_UPLOAD_HANDLERS = [f"{__name__}._Recorder"]
    return _Recorder


def test_a_large_multipart_body_to_the_login_page_is_refused_before_any_of_it_is_spooled(client, recorder, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    big = SimpleUploadedFile("x.bin", b"x" * (256 * 1024))
    client.cookies["csrftoken"] = "a" * 32
    response = client.post(reverse("login"), {"username": "u", "password": "p", "file": big})
    assert response.status_code == 413
    assert "too large" in response.content.decode() and response["Connection"] == "close"
    assert recorder.received == 0


def test_the_import_upload_may_be_as_large_as_an_import_file_and_the_api_only_as_a_batch(
    client, project, lead, recorder, settings
):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    settings.IMPORT_MAX_FILE_BYTES = 1024 * 1024
    ratelimit.reset(f"import:{lead.pk}", per_seconds=3600)
    client.force_login(lead)
    rows = "".join(json.dumps({"input": f"Q{n} " + "x" * 200, "output": "A"}) + "\n" for n in range(1000))
    assert 64 * 1024 < len(rows) < 1024 * 1024
    response = client.post(
        reverse("import_start", args=[project.slug]),
        {"kind": "items", "file": SimpleUploadedFile("items.jsonl", rows.encode()), "file_format": ""},
    )
    assert response.status_code == 302 and recorder.received == len(rows)
    settings.API_MAX_BODY_BYTES = 64 * 1024
    body = json.dumps({"items": [{"input": "x" * (80 * 1024), "output": "A"}]})
    refused = _api(client, f"/projects/{project.slug}/items", body, lead)
    assert refused.status_code == 413 and "too large" in refused.json()["detail"]


def test_a_too_large_import_sent_by_htmx_is_refused_in_the_forms_result_area_unread(
    client, project, lead, recorder, settings
):
    settings.IMPORT_MAX_FILE_BYTES = 64 * 1024
    client.force_login(lead)
    big = SimpleUploadedFile("items.jsonl", b'{"input": "Q", "output": "A"}\n' * 20_000)
    response = client.post(
        reverse("import_start", args=[project.slug]),
        {"kind": "items", "file": big, "file_format": ""},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200  # htmx swaps only 2xx answers
    assert "too large" in response.content.decode() and 'role="alert"' in response.content.decode()
    assert recorder.received == 0 and not ImportJob.objects.exists()


# --- Form fields and JSON that are not text: 400 with the field named, never a 500 --------------------------------


def test_a_nul_byte_in_a_note_or_form_key_is_a_400_naming_the_field_and_nothing_is_saved(client, active, annotator):
    item = ItemFactory(project=active)
    client.force_login(annotator)
    client.get(reverse("label_queue", args=[active.slug]))
    url = reverse("label_submit", args=[active.slug, item.pk])
    for field, data in (("note", {"note": "fine\x00not"}), ("form_key", {"form_key": "k\x00"})):
        response = client.post(url, {**_choices(active), "form_key": "k", **data}, headers={"HX-Request": "true"})
        assert response.status_code == 400, field
        assert f"“{field}”" in response.content.decode() and "NUL" in response.content.decode()
    assert not Label.objects.exists()


def test_a_nul_byte_in_a_gold_label_note_is_a_400_page(client, active, lead):
    item = ItemFactory(project=active)
    client.force_login(lead)
    url = reverse("adjudicate", args=[active.slug, "acceptable"])
    response = client.post(url, {"item": item.pk, "value": "pass", "note": "gold\x00"})
    assert response.status_code == 400 and "“note”" in response.content.decode()
    assert "<script" not in response.content.decode() and not GoldLabel.objects.exists()


def test_a_lone_surrogate_or_deep_metadata_in_the_api_is_a_400_naming_the_field(client, project, lead):
    path = f"/projects/{project.slug}/items"
    surrogate = _api(client, path, '{"items": [{"input": "\\ud800", "output": "x"}]}', lead)
    assert surrogate.status_code == 400
    assert surrogate.json()["errors"][0]["field"] == "items.0.input"
    assert "lone surrogate" in surrogate.json()["errors"][0]["message"]
    deep = '{"items": [{"input": "a", "output": "x", "metadata": {"k": ' + "[" * 1000 + "]" * 1000 + "}}]}"
    response = _api(client, path, deep, lead)
    assert response.status_code == 400 and response.json()["errors"][0]["field"].startswith("items.0.metadata.k")
    assert "nested more than" in response.json()["errors"][0]["message"]
    # Deep enough for any real metadata, still refused by the row check (which a file import shares), by field.
    medium = '{"items": [{"input": "a", "output": "x", "metadata": {"k": ' + "[" * 36 + "]" * 36 + "}}]}"
    response = _api(client, path, medium, lead)
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "items.0.metadata"
    label = '{"labels": [{"external_id": "x", "annotator": "a", "criterion": "acceptable", "value": "pass", '
    response = _api(client, f"/projects/{project.slug}/labels", label + '"note": "\\udfff"}]}', lead)
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "labels.0.note"
    assert not project.items.exists()


def test_a_lone_surrogate_in_an_import_file_is_reported_with_its_line(project, tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text(
        '{"input": "fine", "output": "x"}\n{"input": "bad \\ud83d here", "output": "x"}\n'
        '{"input": "ok", "output": "x", "metadata": {"\\udc00": 1}}\n'
    )
    with pytest.raises(ImportInvalid) as exc:
        file_import(project=project, kind="items", path=path)
    assert {(e.line, e.field) for e in exc.value.errors} == {(2, "input"), (3, "metadata")}
    assert "lone surrogate" in str(exc.value.errors[0].message)


# --- Notes are capped on edit as on submit ------------------------------------------------------------------------


def test_editing_a_label_refuses_a_note_longer_than_a_new_label_may_have(client, active, annotator):
    item = ItemFactory(project=active)
    labels = [label(item, annotator, c.key, "pass") for c in active.current_rubric.criteria.all()]
    client.force_login(annotator)
    revisions = {f"rev-{lab.criterion.key}": lab.revision for lab in labels}
    data = {**_choices(active, "fail"), **revisions, "note": "n" * 10_001}
    response = client.post(reverse("label_edit", args=[active.slug, item.pk]), data)
    assert response.status_code == 409 and "at most 10,000 characters" in response.content.decode()
    assert set(Label.objects.values_list("value", "note")) == {("pass", "")}
    ok = client.post(reverse("label_edit", args=[active.slug, item.pk]), {**data, "note": "n" * 10_000})
    assert ok.status_code == 302 and set(Label.objects.values_list("value", flat=True)) == {"fail"}


# --- A full upload folder ------------------------------------------------------------------------------------------


def test_a_full_upload_folder_is_a_clear_refusal_and_leaves_no_partial_file(client, project, lead, monkeypatch):
    ratelimit.reset(f"import:{lead.pk}", per_seconds=3600)
    client.force_login(lead)
    real_open = pathlib.Path.open

    class _FullDisk(io.BufferedWriter):
        written = 0

        def write(self, data) -> int:
            if self.written + len(data) > 4096:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.written += len(data)
            return super().write(data)

    def open_on_a_full_disk(self, mode="r", *args, **kwargs):
        if mode == "xb":
            return _FullDisk(real_open(self, "xb", buffering=0))
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", open_on_a_full_disk)
    rows = "".join(json.dumps({"input": f"Question {n}?", "output": "Answer."}) + "\n" for n in range(500))
    response = client.post(
        reverse("import_start", args=[project.slug]),
        {"kind": "items", "file": SimpleUploadedFile("items.jsonl", rows.encode()), "file_format": ""},
    )
    assert response.status_code == 507
    assert "no room to store this file" in response.content.decode()
    uploads = pathlib.Path(str(_upload_dir()))
    assert list(uploads.iterdir()) == [] and not ImportJob.objects.exists()


# --- Label imports: only the project's own annotators, and no account is revealed -----------------------------------


def _labels_file(tmp_path, names: list[str]) -> pathlib.Path:
    path = tmp_path / "labels.jsonl"
    rows = [{"external_id": "t-1", "annotator": n, "criterion": "acceptable", "value": "pass"} for n in names]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_label_import_gives_every_non_member_this_projects_own_identity_whoever_has_the_name(
    project, lead, annotator, tmp_path
):
    """The outcome never depends on whether a username exists outside the project: a staff account, another project's
    member, another project's imported name and a name nobody has all become this project's imported identities, in
    the same words, and none of those accounts receives a label."""
    item_build(project=project, fields={"input": "Q", "output": "A"}, external_id="t-1").save()
    staff = UserFactory(username="root-admin", is_staff=True, is_superuser=True)
    other = ProjectFactory(slug="elsewhere")
    their_member = UserFactory(username="their-member")
    membership(their_member, other)
    item_build(project=other, fields={"input": "Q", "output": "A"}, external_id="t-1").save()
    file_import(project=other, kind="labels", path=_labels_file(tmp_path, ["their-rater"]))
    their_rater = ImportedUser.objects.get(project=other).user
    outside = ["root-admin", "their-member", "their-rater", "nobody-yet"]

    preview = file_import(
        project=project, kind="labels", path=_labels_file(tmp_path, [annotator.username, *outside]), apply=False
    )
    report = file_import(project=project, kind="labels", path=_labels_file(tmp_path, [annotator.username, *outside]))
    assert preview.users_created == report.users_created == sorted(outside) and report.n_new == 5
    assert "4 annotator names that are not members of this project" in report.summary()
    # The member keeps their own account; each outside name is a new inactive identity of this project only.
    assert Label.objects.get(annotator=annotator).item.project == project
    for account in (staff, their_member, their_rater):
        assert not Label.objects.filter(item__project=project, annotator=account).exists()
    assert not Label.objects.filter(item__project=project, annotator=lead).exists()
    mine = ImportedUser.objects.filter(project=project).select_related("user")
    assert sorted(shown_username(i.user.get_username()) for i in mine) == sorted(outside)
    assert all(not i.user.is_active and not i.user.has_usable_password() for i in mine)
    assert {i.user.pk for i in mine}.isdisjoint({staff.pk, their_member.pk, their_rater.pk})
    assert Label.objects.filter(item__project=project, annotator__imported__project=project).count() == 4
    # Importing the same file again changes nothing and creates nobody.
    again = file_import(project=project, kind="labels", path=_labels_file(tmp_path, [annotator.username, *outside]))
    assert (again.n_new, again.n_unchanged, again.users_created) == (0, 5, [])
    assert ImportedUser.objects.filter(project=project).count() == 4
    # The other project's imported name is still only that project's.
    assert list(ImportedUser.objects.filter(project=other).values_list("user", flat=True)) == [their_rater.pk]
    # Exports and the agreement report show the readable names.
    export = exports.export_prepare(
        project=Project.objects.select_related("current_rubric").get(pk=project.pk),
        options=exports.ExportOptions(individual=True),
    )
    row = json.loads("".join(export.lines()).splitlines()[0])
    names = [e["annotator"] for e in row["labels"]["acceptable"]["individual"]]
    assert sorted(names) == sorted([annotator.username, *outside])
    report_names = {
        a["annotator"]
        for section in reports.report_build(project=project, n_boot=20)["criteria"].values()
        for a in section["annotators"]
    }
    assert report_names == {annotator.username, *outside}


def test_an_imported_name_stays_this_projects_identity_after_a_member_of_that_name_joins(project, tmp_path):
    item_build(project=project, fields={"input": "Q", "output": "A"}, external_id="t-1").save()
    path = _labels_file(tmp_path, ["bo"])
    assert file_import(project=project, kind="labels", path=path).users_created == ["bo"]
    bo = UserFactory(username="bo")
    membership(bo, project)
    again = file_import(project=project, kind="labels", path=path)
    assert (again.n_new, again.n_unchanged, again.users_created) == (0, 1, [])
    assert not Label.objects.filter(annotator=bo).exists()


def test_a_plain_name_imported_before_the_namespace_stays_its_projects_identity(project, tmp_path):
    item_build(project=project, fields={"input": "Q", "output": "A"}, external_id="t-1").save()
    old = UserFactory(username="old-rater", is_active=False)
    ImportedUser.objects.create(user=old, project=project)
    report = file_import(project=project, kind="labels", path=_labels_file(tmp_path, ["old-rater"]))
    assert (report.n_new, report.users_created) == (1, []) and Label.objects.get().annotator == old
    # Another project's import of that name gets its own identity, as for any name.
    other = ProjectFactory(slug="elsewhere")
    item_build(project=other, fields={"input": "Q", "output": "A"}, external_id="t-1").save()
    theirs = file_import(project=other, kind="labels", path=_labels_file(tmp_path, ["old-rater"]))
    assert theirs.users_created == ["old-rater"] and not Label.objects.filter(item__project=other, annotator=old)


def test_pages_show_an_imported_annotators_readable_name(client, project, lead, annotator, tmp_path):
    item_build(project=project, fields={"input": "Q", "output": "A"}, external_id="t-1").save()
    file_import(project=project, kind="labels", path=_labels_file(tmp_path, ["ext-rater"]))
    label(project.items.get(external_id="t-1"), annotator, "acceptable", "fail")
    reports.report_refresh(project=project)
    client.force_login(lead)
    page = client.get(reverse("adjudicate", args=[project.slug, "acceptable"])).content.decode()
    assert '<th scope="row">ext-rater</th>' in page and f"imported:{project.pk}:" not in page
    agreement = client.get(reverse("agreement_page", args=[project.slug])).content.decode()
    assert "<td>ext-rater</td>" in agreement and f"imported:{project.pk}:" not in agreement


def test_an_outside_name_too_long_for_an_imported_identity_is_refused_whoever_has_it(project, tmp_path):
    item_build(project=project, fields={"input": "Q", "output": "A"}, external_id="t-1").save()
    taken, free = "t" * 150, "f" * 150
    UserFactory(username=taken)
    with pytest.raises(ImportInvalid) as exc:
        file_import(project=project, kind="labels", path=_labels_file(tmp_path, [taken, free]))
    refused = {e.line: (e.field, e.message) for e in exc.value.errors}
    assert set(refused) == {1, 2} and refused[1][1].replace(taken, free) == refused[2][1]
    assert not ImportedUser.objects.exists()


# --- CSV cells a spreadsheet would run as formulas ------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell",
    [
        "=1+1",
        "\n=1+1",
        " =1+1",
        "\u00a0=1+1",
        "\uff1d1+1",  # full-width equals sign
        "\u200b=1+1",  # zero-width space before =
        "\ufeff@SUM(A1)",
        "\u3000+1",  # ideographic space
        "\t\u2060-2",
        "\uff0bcmd",
        "\ufe66HYPERLINK()",
        "\u2212 1",
        "|calc",
        "\x0b=x",
    ],
)
def test_a_csv_cell_that_a_spreadsheet_would_run_gets_a_leading_apostrophe(cell):
    assert exports.csv_cell(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["plain", " leading space", "\u00a0NBSP then text", "1=1", "e-mail", "", "اختبار"])
def test_ordinary_csv_cells_are_left_alone(cell):
    assert exports.csv_cell(cell) == cell


def test_the_csv_export_neutralises_cells_that_hide_a_formula_behind_blank_characters(project, annotator):
    item = ItemFactory(project=project, input="\n=HYPERLINK(1)", output="\u200b=cmd")
    label(item, annotator, "acceptable", "fail")
    project = Project.objects.select_related("current_rubric").get(pk=project.pk)
    text = "".join(exports.export_prepare(project=project, options=exports.ExportOptions(fmt="csv")).lines())
    row = next(csv.DictReader(io.StringIO(text)))
    assert row["input"] == "'\n=HYPERLINK(1)" and row["output"] == "'\u200b=cmd"


# --- Bidirectional controls in item text are shown, not obeyed -----------------------------------------------------


def test_bidi_controls_in_item_text_are_shown_as_visible_marks_and_cannot_reorder_the_page():
    html = str(render_text_filter("Total: \u202e01$ \u2066x\u2069 and **bold**"))
    for char in "\u202e\u2066\u2069":
        assert char not in html
    assert "\u27e6U+202E\u27e7" in html and "\u27e6U+2066\u27e7x\u27e6U+2069\u27e7" in html
    assert "<strong>bold</strong>" in html
    transcript = json.dumps([{"role": "user", "content": "a\u202bb"}])
    assert "\u202b" not in str(render_text_filter(transcript)) and "U+202B" in str(render_text_filter(transcript))
    assert "<script" not in str(render_text_filter("\u202e<script>alert(1)</script>"))


def test_every_page_that_shows_item_text_shows_its_bidi_controls(client, project, lead, annotator):
    project_set_status(project=project, status="active")
    item = ItemFactory(project=project, input="Pay \u202eusd 001\u202c now", output="fine")
    label(item, annotator, "acceptable", "pass")
    membership(annotator, project)
    client.force_login(annotator)
    for url in (reverse("label_history", args=[project.slug]), reverse("label_edit", args=[project.slug, item.pk])):
        page = client.get(url).content.decode()
        assert "\u202e" not in page and "U+202E" in page, url


def test_api_texts_are_checked_however_the_body_spells_them(client, project, lead):
    """A body without a \\u escape skips the text checks (strict UTF-8 cannot carry a NUL or a surrogate): one that
    encodes a surrogate in its bytes, or escapes a NUL in a key, is still a 400 naming the field; an escaped
    backslash before a `u` is plain text and is stored."""
    path = f"/projects/{project.slug}/items"
    encoded = b'{"items": [{"input": "a", "output": "x", "metadata": {"k": ["ok", "\xed\xa0\x80"]}}]}'
    _row, raw = tokens.token_create(user=lead, name="raw")
    response = client.post(
        "/api/v1" + path, data=encoded, content_type="application/json", headers={"Authorization": f"Bearer {raw}"}
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "items.0.metadata.k.1"
    assert "lone surrogate" in response.json()["errors"][0]["message"]
    nul_key = _api(client, path, '{"items": [{"input": "a", "output": "x", "metadata": {"a": {"b\\u0000": 1}}}]}', lead)
    assert nul_key.status_code == 400 and nul_key.json()["errors"][0]["field"] == "items.0.metadata.a"
    assert "NUL" in nul_key.json()["errors"][0]["message"]
    assert not Item.objects.exists()
    literal = _api(client, path, '{"items": [{"input": "C:\\\\users\\\\ud800", "output": "x"}]}', lead)
    assert literal.status_code == 200, literal.content
    assert Item.objects.get().input == "C:\\users\\ud800"
