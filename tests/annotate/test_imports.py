"""Item and label imports: every check names its line, all or nothing, idempotent, conflicts, the upload pages."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.backends.utils import CursorDebugWrapper
from django.urls import reverse

from annotate import ratelimit, selectors, tokens
from annotate.imports import jobs as import_jobs
from annotate.imports.checking import item_values
from annotate.imports.files import file_import
from annotate.imports.jobs import import_job_apply, import_uploads_expire
from annotate.imports.report import ImportInvalid, ImportRefused, ImportReport
from annotate.models import ImportedUser, ImportJob, Item, Label, Project
from annotate.services.items import item_build
from tests.factories import ProjectFactory, UserFactory, label, membership

pytestmark = pytest.mark.django_db

# Real rows from the Tülu 1 human evaluation (Wang et al., NeurIPS 2023; allenai/open-instruct, Apache-2.0), kept
# with their source and license in annotate/demo_data/.
TULU = Path(__file__).resolve().parents[2] / "annotate" / "demo_data" / "tulu1_sample.jsonl"
_PREFERENCE = {
    "a-is-better": "a",
    "a-is-slightly-better": "a",
    "tie": "tie",
    "b-is-slightly-better": "b",
    "b-is-better": "b",
}


@pytest.fixture(autouse=True)
def _uploads(settings, tmp_path):
    settings.IMPORT_UPLOAD_DIR = tmp_path / "uploads"


def _file(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def _import(project: Project, path: Path, **kwargs) -> ImportReport:
    return file_import(project=project, kind=kwargs.pop("kind", "items"), path=path, **kwargs)


def _problems(exc: pytest.ExceptionInfo[ImportInvalid]) -> set[tuple[int, str]]:
    return {(e.line, e.field) for e in exc.value.errors}


# --- Items ----------------------------------------------------------------------------------------------------


def test_a_jsonl_file_becomes_items_with_the_same_hash_split_and_order_as_item_build(project, tmp_path):
    path = _file(
        tmp_path,
        "items.jsonl",
        _jsonl(
            [
                {"external_id": "t-1", "input": "Where is my order?", "output": "On its way."},
                {"input": "Hi", "output": ""},
            ]
        ),
    )
    report = _import(project, path)
    assert (report.n_rows, report.n_new, report.applied) == (2, 2, True)
    first = Item.objects.get(project=project, external_id="t-1")
    built = item_build(
        project=project, fields={"input": "Where is my order?", "output": "On its way."}, external_id="t-1"
    )
    assert (first.content_hash, first.split, first.order_key) == (built.content_hash, built.split, built.order_key)
    hashed = Item.objects.exclude(pk=first.pk).get(project=project)
    assert hashed.external_id == hashed.content_hash  # no external_id: the content hash stands in
    assert (first.n_submitted, first.n_leased, first.source) == (0, 0, "import")


def test_item_values_compute_exactly_what_item_build_computes(project):
    pairwise = ProjectFactory(slug="pairs", kind="pairwise")
    for target, fields in (
        (project, {"input": "Q?", "output": "A."}),
        (pairwise, {"input": "Q?", "output_a": "A.", "output_b": "B."}),
    ):
        for external_id, split in ((None, None), ("x-1", None), ("x-2", "train")):
            content, digest, eid, got_split, key = item_values(
                project=target, fields=fields, external_id=external_id, split=split
            )
            built = item_build(project=target, fields=fields, external_id=external_id, split=split)
            assert (digest, eid, got_split, key) == (
                built.content_hash,
                built.external_id,
                built.split,
                built.order_key,
            )
            assert all(getattr(built, name) == text for name, text in content.items())


def test_importing_the_same_file_twice_changes_nothing(project, tmp_path):
    path = _file(tmp_path, "items.jsonl", _jsonl([{"input": f"Q{i}", "output": f"A{i}"} for i in range(30)]))
    _import(project, path)
    before = list(Item.objects.filter(project=project).order_by("pk").values())
    again = _import(project, path)
    assert (again.n_new, again.n_unchanged, again.n_conflicts) == (0, 30, 0)
    assert list(Item.objects.filter(project=project).order_by("pk").values()) == before


def test_a_file_with_bad_rows_imports_nothing_and_names_every_bad_row_with_its_line_and_reason(
    settings, project, tmp_path
):
    settings.IMPORT_MAX_FIELD_CHARS = 100
    lines = [
        json.dumps({"external_id": "ok-1", "input": "fine", "output": "fine"}),  # 1
        json.dumps({"external_id": "no-output", "input": "x"}),  # 2 missing field
        json.dumps({"external_id": "num", "input": 42, "output": "x"}),  # 3 wrong type
        json.dumps({"external_id": "long", "input": "x" * 101, "output": "x"}),  # 4 too long
        json.dumps({"external_id": "ok-1", "input": "other", "output": "x"}),  # 5 duplicate id in the file
        "{not json",  # 6
        json.dumps(["a", "list"]),  # 7 not an object
        json.dumps({"input": "x", "output": "y", "ouput": "typo"}),  # 8 unknown field
        json.dumps({"input": "x", "output": "y", "split": "holdout"}),  # 9 bad split
        json.dumps({"input": "x", "output": "y", "metadata": "not an object"}),  # 10
        json.dumps({"input": "  ", "output": "y"}),  # 11 empty input
        json.dumps({"input": [{"role": "user"}], "output": "y"}),  # 12 transcript without content
        json.dumps({"input": "fine", "output": "fine"}),  # 13
        json.dumps({"input": "fine", "output": "fine"}),  # 14 the same content again, without ids
    ]
    path = _file(tmp_path, "bad.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(ImportInvalid) as exc:
        _import(project, path)
    assert _problems(exc) == {
        (2, "output"), (3, "input"), (4, "input"), (5, "external_id"), (6, ""), (7, ""), (8, "ouput"), (9, "split"),
        (10, "metadata"), (11, "input"), (12, "input"), (14, "external_id"),
    }  # fmt: skip
    messages = {e.line: e.message for e in exc.value.errors}
    assert messages[2] == "missing field"
    assert messages[3].startswith("wrong type")
    assert messages[4] == "too long: 101 characters (at most 100)"
    assert "first on line 1" in messages[5]
    assert messages[14] == "the same content as line 13 (without an external_id, the content is the id)"
    assert exc.value.n_errors == 12
    assert not Item.objects.filter(project=project).exists()


def test_bad_encoding_is_reported_with_its_line_in_jsonl_and_csv(project, tmp_path):
    jsonl = _file(tmp_path, "latin1.jsonl", b'{"input": "ok", "output": "ok"}\n{"input": "caf\xe9", "output": "x"}\n')
    with pytest.raises(ImportInvalid) as exc:
        _import(project, jsonl)
    assert [(e.line, e.message) for e in exc.value.errors] == [
        (2, "bad encoding: not UTF-8 (byte 0xe9 at position 15)")
    ]
    csv_file = _file(tmp_path, "latin1.csv", b"input,output\nok,ok\ncaf\xe9,x\n")
    with pytest.raises(ImportInvalid) as exc:
        _import(project, csv_file)
    assert [(e.line, e.message[:12]) for e in exc.value.errors] == [(3, "bad encoding")]
    assert not Item.objects.exists()


def test_a_csv_with_a_bom_is_read_and_every_other_column_goes_into_metadata(tmp_path):
    project = ProjectFactory(slug="pairs", kind="pairwise")
    content = "\ufeffexternal_id,input,output_a,output_b,model,team\np-1,Question,Answer A,Answer B,gpt,support\n"
    report = _import(project, _file(tmp_path, "items.csv", content.encode("utf-8")))
    assert report.n_new == 1
    item = Item.objects.get(project=project)
    assert (item.external_id, item.output_a, item.output_b) == ("p-1", "Answer A", "Answer B")
    assert item.metadata == {"model": "gpt", "team": "support"}


def test_formula_looking_csv_cells_are_stored_literally(project, tmp_path):
    content = 'input,output,note\n"=HYPERLINK(""http://x.example"",""click"")",+SUM(A1:A9),@cmd\n'
    _import(project, _file(tmp_path, "items.csv", content))
    item = Item.objects.get(project=project)
    assert item.input == '=HYPERLINK("http://x.example","click")'
    assert item.output == "+SUM(A1:A9)"
    assert item.metadata == {"note": "@cmd"}


def test_a_chat_transcript_is_stored_as_the_same_json_from_jsonl_and_from_csv(tmp_path):
    transcript = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi, où est ma commande?"}]
    one = ProjectFactory(slug="from-jsonl")
    two = ProjectFactory(slug="from-csv")
    _import(one, _file(tmp_path, "t.jsonl", _jsonl([{"external_id": "c", "input": transcript, "output": "Bonjour"}])))
    cell = json.dumps(transcript, indent=2).replace('"', '""')
    _import(two, _file(tmp_path, "t.csv", f'external_id,input,output\nc,"{cell}",Bonjour\n'))
    a, b = Item.objects.get(project=one), Item.objects.get(project=two)
    assert json.loads(a.input) == transcript
    assert a.input == b.input and a.content_hash == b.content_hash


def test_a_csv_without_a_required_column_is_refused_at_its_header(project, tmp_path):
    with pytest.raises(ImportInvalid) as exc:
        _import(project, _file(tmp_path, "items.csv", "input,answer\nQ,A\n"))
    assert [(e.line, e.field, e.message) for e in exc.value.errors] == [(1, "output", "missing column")]


def test_nul_characters_and_nan_are_refused_rather_than_failing_in_the_database(project, tmp_path):
    path = _file(
        tmp_path,
        "nul.jsonl",
        _jsonl([{"input": "a\u0000b", "output": "x"}, {"input": "x", "output": "y", "metadata": {"k": "\u0000"}}])
        + '{"input": "x", "output": "y", "metadata": {"score": NaN}}\n',
    )
    with pytest.raises(ImportInvalid) as exc:
        _import(project, path)
    assert _problems(exc) == {(1, "input"), (2, "metadata"), (3, "metadata")}


def _nested(depth: int, leaf: object = "x") -> dict:
    value: object = leaf
    for _ in range(depth - 1):
        value = {"k": value}
    return {"k": value}


def test_metadata_is_checked_as_strictly_on_its_quick_path_as_on_the_full_walk(project, tmp_path):
    """Metadata whose JSON text is ASCII with at most 32 brackets skips the walk; all else is walked. Either way a
    lone surrogate (in a key or a value), a NUL and nesting past 32 levels are refused, and 32 levels are kept."""
    rows = [
        {"external_id": "deep-32", "input": "Q1", "output": "A", "metadata": _nested(32)},
        {"external_id": "deep-33", "input": "Q2", "output": "A", "metadata": _nested(33)},
        {"external_id": "wide", "input": "Q3", "output": "A", "metadata": {"tags": [[1]] * 40, "é": "ü"}},
    ]
    text = _jsonl(rows)
    text += '{"external_id": "sur-key", "input": "Q4", "output": "A", "metadata": {"\\ud800": 1}}\n'
    text += '{"external_id": "sur-value", "input": "Q5", "output": "A", "metadata": {"a": ["\\udfff"]}}\n'
    text += '{"external_id": "nul-key", "input": "Q6", "output": "A", "metadata": {"a\\u0000": 1}}\n'
    with pytest.raises(ImportInvalid) as exc:
        _import(project, _file(tmp_path, "meta.jsonl", text))
    assert _problems(exc) == {(2, "metadata"), (4, "metadata"), (5, "metadata"), (6, "metadata")}
    assert "nested more than 32" in next(e.message for e in exc.value.errors if e.line == 2)
    _import(project, _file(tmp_path, "ok.jsonl", _jsonl([rows[0], rows[2]])))
    assert Item.objects.get(external_id="deep-32").metadata == _nested(32)
    assert Item.objects.get(external_id="wide").metadata == {"tags": [[1]] * 40, "é": "ü"}


def test_an_existing_id_with_other_content_is_a_conflict_left_alone_unless_the_lead_updates_and_labels_stay(
    project, lead, annotator, tmp_path
):
    _import(project, _file(tmp_path, "v1.jsonl", _jsonl([{"external_id": "t-1", "input": "Q", "output": "old"}])))
    item = Item.objects.get(project=project)
    label(item, annotator, "acceptable", "pass")
    v2 = _file(
        tmp_path,
        "v2.jsonl",
        _jsonl([{"external_id": "t-1", "input": "Q", "output": "new"}, {"input": "Q2", "output": "A2"}]),
    )
    report = _import(project, v2)
    assert (report.n_new, report.n_conflicts, report.n_updated) == (1, 1, 0)
    assert report.conflicts == [{"line": 1, "external_id": "t-1"}]
    assert Item.objects.get(pk=item.pk).output == "old"
    updated = _import(project, v2, update=True)
    assert (updated.n_new, updated.n_unchanged, updated.n_updated, updated.n_labels_kept) == (0, 1, 1, 1)
    assert "Their existing labels (1) were kept." in updated.summary()
    item.refresh_from_db()
    assert item.output == "new" and item.labels.count() == 1


def test_file_size_and_row_limits_are_enforced_with_a_clear_message(settings, project, tmp_path):
    path = _file(tmp_path, "items.jsonl", _jsonl([{"input": f"Q{i}", "output": "A"} for i in range(3)]))
    settings.IMPORT_MAX_ROWS = 2
    with pytest.raises(ImportRefused, match=r"Too many rows: at most 2") as exc:
        _import(project, path)
    assert exc.value.status == 413
    settings.IMPORT_MAX_FILE_BYTES = 10
    with pytest.raises(ImportRefused, match=r"The file is too large: \d+ bytes \(at most 10\)"):
        _import(project, path)
    assert not Item.objects.exists()


def test_the_import_items_command_prints_a_summary_and_refuses_a_bad_file_with_every_line(project, tmp_path):
    good = _file(tmp_path, "good.jsonl", _jsonl([{"input": "Q", "output": "A"}]))
    out, err = io.StringIO(), io.StringIO()
    call_command("import_items", project.slug, str(good), stdout=out, stderr=err)
    assert "1 row: 1 new item added, 0 unchanged." in out.getvalue()
    assert "importing [" in err.getvalue() and "100%" in err.getvalue()
    bad = _file(tmp_path, "bad.jsonl", _jsonl([{"input": "Q"}, {"output": "A"}]))
    with pytest.raises(CommandError) as exc:
        call_command("import_items", project.slug, str(bad), "--no-progress")
    assert "line 1, output: missing field" in str(exc.value) and "line 2, input: missing field" in str(exc.value)
    assert "nothing was imported" in str(exc.value)
    dry = _file(tmp_path, "dry.jsonl", _jsonl([{"input": "Q3", "output": "A3"}]))
    call_command("import_items", project.slug, str(dry), "--dry-run", "--no-progress", stdout=(out := io.StringIO()))
    assert "1 new item would be added" in out.getvalue()
    assert Item.objects.filter(project=project).count() == 1


# --- Labels ---------------------------------------------------------------------------------------------------


def _tulu_rows(n: int) -> list[dict]:
    """The first n rows of the Tülu sample, keeping each evaluator's latest judgment of a pair (as the demo does)."""
    rows = [json.loads(line) for line in TULU.read_text(encoding="utf-8").splitlines()[:n]]
    rows.sort(key=lambda r: r["timestamp_iso"], reverse=True)
    seen, kept = set(), []
    for row in rows:
        key = (row["instance_id"], row["model_a"], row["model_b"], row["evaluator"])
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept


def _tulu_pair_id(row: dict) -> str:
    return f"{row['instance_id']}/{row['model_a']}-vs-{row['model_b']}"


def test_tulu_labels_import_as_pairwise_labels_that_count_like_browser_labels_and_twice_changes_nothing(tmp_path):
    project = ProjectFactory(
        slug="tulu",
        kind="pairwise",
        overlap=2,
        criteria=[{"key": "overall", "name": "Overall", "description": "Which would the user rather receive?"}],
    )
    rows = _tulu_rows(60)
    pairs = {_tulu_pair_id(r): r for r in rows}
    items = [
        {"external_id": k, "input": r["prompt"], "output_a": r["completion_a"], "output_b": r["completion_b"]}
        for k, r in pairs.items()
    ]
    _import(project, _file(tmp_path, "items.jsonl", _jsonl(items)))
    labels = [
        {
            "external_id": _tulu_pair_id(r),
            "annotator": f"tulu-{r['evaluator']}",
            "criterion": "overall",
            "value": _PREFERENCE[r["preference"]],
            "created_at": r["timestamp_iso"],
        }
        for r in rows
    ]
    path = _file(tmp_path, "labels.jsonl", _jsonl(labels))
    report = _import(project, path, kind="labels")
    assert report.n_new == len(labels) and report.users_created
    imported = Label.objects.filter(item__project=project)
    assert imported.count() == len(labels)
    assert set(imported.values_list("shown_order", flat=True)) == {"ab"}
    assert set(imported.values_list("rubric_version_id", flat=True)) == {project.current_rubric_id}
    evaluator = ImportedUser.objects.select_related("user").first().user
    assert not evaluator.is_active and not evaluator.has_usable_password()
    # Counted like browser labels: the queue's counters and the project's completeness see them.
    per_item = {}
    for row in labels:
        per_item.setdefault(row["external_id"], set()).add(row["annotator"])
    for item in Item.objects.filter(project=project):
        assert item.n_submitted == len(per_item.get(item.external_id, ()))
    stats = selectors.project_stats(project=project)
    assert stats.n_labels_current == len(labels)
    assert stats.n_complete == sum(1 for names in per_item.values() if len(names) >= 2)
    again = _import(project, path, kind="labels")
    assert (again.n_new, again.n_unchanged, again.users_created) == (0, len(labels), [])
    assert Label.objects.filter(item__project=project).count() == len(labels)


def test_label_rows_are_checked_and_one_bad_row_imports_nothing_not_even_new_users(project, lead, tmp_path):
    _item(project, "t-1")
    stranger = UserFactory(username="someone-else")  # of another team, not a member: a name like any other
    rows = [
        {"external_id": "t-1", "annotator": "new-rater", "criterion": "acceptable", "value": "pass"},  # 1 fine
        {"external_id": "t-1", "annotator": "new-rater", "criterion": "nope", "value": "pass"},  # 2
        {"external_id": "t-1", "annotator": "new-rater", "criterion": "factually_correct", "value": "a"},  # 3
        {"external_id": "t-404", "annotator": "new-rater", "criterion": "acceptable", "value": "fail"},  # 4
        {"external_id": "t-1", "annotator": stranger.username, "criterion": "acceptable", "value": "fail"},  # 5 fine
        {"external_id": "t-1", "annotator": "new-rater", "criterion": "acceptable", "value": "fail"},  # 6 duplicate
        {"external_id": "t-1", "annotator": "bad name!", "criterion": "acceptable", "value": "fail"},  # 7
        {"external_id": "t-1", "annotator": "x", "criterion": "acceptable", "value": "pass", "created_at": "May"},  # 8
        {"external_id": "t-1", "annotator": "x", "criterion": "acceptable"},  # 9 missing value
    ]  # fmt: skip
    with pytest.raises(ImportInvalid) as exc:
        _import(project, _file(tmp_path, "labels.jsonl", _jsonl(rows)), kind="labels")
    assert _problems(exc) == {
        (2, "criterion"), (3, "value"), (4, "external_id"), (6, ""), (7, "annotator"),
        (8, "created_at"), (9, "value"),
    }  # fmt: skip
    assert not Label.objects.exists()
    assert not ImportedUser.objects.exists() and type(lead).objects.filter(is_active=False).count() == 0


def test_a_pairwise_project_without_ties_refuses_imported_ties(tmp_path):
    project = ProjectFactory(slug="no-ties", kind="pairwise", allow_tie=False)
    _import(
        project,
        _file(tmp_path, "i.jsonl", _jsonl([{"external_id": "p", "input": "Q", "output_a": "A", "output_b": "B"}])),
    )
    row = {"external_id": "p", "annotator": "r", "criterion": "acceptable", "value": "tie"}
    with pytest.raises(ImportInvalid) as exc:
        _import(project, _file(tmp_path, "l.jsonl", _jsonl([row])), kind="labels")
    assert "use a, b" in exc.value.errors[0].message


def test_a_changed_label_is_a_conflict_unless_the_lead_updates_it(project, annotator, tmp_path):
    _item(project, "t-1")
    path = _file(tmp_path, "l.csv", "external_id,annotator,criterion,value,note\nt-1,ada-annotator,acceptable,pass,\n")
    assert _import(project, path, kind="labels").n_new == 1
    changed = _file(
        tmp_path, "l2.csv", "external_id,annotator,criterion,value,note\nt-1,ada-annotator,acceptable,fail,why\n"
    )
    report = _import(project, changed, kind="labels")
    assert (report.n_conflicts, report.n_updated) == (1, 0)
    assert report.conflicts[0]["was"] == "pass" and report.conflicts[0]["now"] == "fail"
    assert Label.objects.get().value == "pass"
    report = _import(project, changed, kind="labels", update=True)
    only = Label.objects.get()
    assert (report.n_updated, only.value, only.note, only.revision) == (1, "fail", "why", 2)


def test_the_import_labels_command_imports_a_csv_file(project, annotator, tmp_path):
    _item(project, "t-1")
    path = _file(tmp_path, "l.csv", "external_id,annotator,criterion,value\nt-1,ada-annotator,acceptable,pass\n")
    out = io.StringIO()
    call_command("import_labels", project.slug, str(path), "--no-progress", stdout=out)
    assert "1 new label added" in out.getvalue()
    assert Label.objects.get().annotator == annotator


def _item(project: Project, external_id: str) -> Item:
    item = item_build(project=project, fields={"input": "Q", "output": "A"}, external_id=external_id)
    item.save()
    return item


# --- The browser: upload, preview, confirm --------------------------------------------------------------------


@pytest.fixture
def lead_client(client, lead):
    ratelimit.reset(f"import:{lead.pk}", per_seconds=3600)
    client.force_login(lead)
    return client


def _upload(client, project, name: str, content: bytes, kind: str = "items", **headers):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(
        reverse("import_start", args=[project.slug]),
        {"kind": kind, "file": SimpleUploadedFile(name, content), "file_format": ""},
        headers=headers,
    )


def test_a_lead_uploads_sees_a_preview_confirms_and_the_upload_is_deleted(lead_client, project, settings):
    page = lead_client.get(reverse("import_start", args=[project.slug]))
    assert page.status_code == 200 and b"Check the file" in page.content
    response = _upload(lead_client, project, "items.jsonl", _jsonl([{"input": "Q", "output": "A"}]).encode())
    job = ImportJob.objects.get()
    assert response.status_code == 302 and response.url == reverse("import_job", args=[project.slug, job.pk])
    assert job.status == ImportJob.Status.PREVIEWED
    stored = Path(settings.IMPORT_UPLOAD_DIR) / job.stored_name
    assert stored.exists() and job.stored_name != "items.jsonl"
    preview = lead_client.get(response.url).content.decode()
    assert "1 new item would be added" in preview and "Import 1 new items" in preview
    assert not Item.objects.exists()
    done = lead_client.post(reverse("import_confirm", args=[project.slug, job.pk]), follow=True)
    assert "1 new item added" in done.content.decode()
    assert Item.objects.filter(project=project).count() == 1
    assert ImportJob.objects.get().status == ImportJob.Status.DONE and not stored.exists()
    # A second confirm of the same form finds the job already done and writes nothing more.
    lead_client.post(reverse("import_confirm", args=[project.slug, job.pk]))
    assert Item.objects.filter(project=project).count() == 1


def test_an_upload_with_bad_rows_lists_them_on_the_page_and_imports_nothing(lead_client, project):
    response = _upload(lead_client, project, "bad.csv", b"input,output\n,empty input\nok,ok\n")
    page = lead_client.get(response.url).content.decode()
    assert "1 bad row: nothing was imported" in page and "missing field (empty)" in page
    assert ImportJob.objects.get().status == ImportJob.Status.INVALID and not Item.objects.exists()


def test_the_upload_answers_htmx_with_the_preview_partial_and_pushes_the_jobs_url(lead_client, project):
    response = _upload(
        lead_client, project, "items.jsonl", _jsonl([{"input": "Q", "output": "A"}]).encode(), **{"HX-Request": "true"}
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="job"' in body and "<html" not in body and "would be added" in body
    assert response.headers["HX-Push-Url"] == reverse("import_job", args=[project.slug, ImportJob.objects.get().pk])


def test_a_refused_upload_answers_htmx_with_the_form_and_its_reason(lead_client, project, settings):
    settings.IMPORT_MAX_FILE_BYTES = 5
    response = _upload(
        lead_client, project, "items.jsonl", b'{"input": "Q", "output": "A"}\n', **{"HX-Request": "true"}
    )
    assert response.status_code == 200 and response.headers["HX-Retarget"] == "#import-form-card"
    assert "The file is too large" in response.content.decode()
    plain = _upload(lead_client, project, "items.jsonl", b'{"input": "Q", "output": "A"}\n')
    assert plain.status_code == 413 and "The file is too large" in plain.content.decode()


def test_uploads_are_rate_limited_per_user(lead_client, project, settings):
    settings.IMPORT_UPLOADS_PER_HOUR = 1
    assert _upload(lead_client, project, "a.jsonl", b'{"input": "Q", "output": "A"}\n').status_code == 302
    refused = _upload(lead_client, project, "b.jsonl", b'{"input": "Q", "output": "A"}\n')
    assert refused.status_code == 429 and "imports in the last hour" in refused.content.decode()


def test_the_job_page_polls_with_a_progress_bar_while_running_and_answers_htmx_with_its_partial(lead_client, project):
    job = ImportJob.objects.create(
        project=project, kind="items", filename="big.jsonl", file_format="jsonl", size_bytes=10
    )
    url = reverse("import_job", args=[project.slug, job.pk])
    page = lead_client.get(url).content.decode()
    assert "<progress" in page and 'hx-trigger="every 1s"' in page and 'http-equiv="refresh"' in page
    partial = lead_client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert partial.lstrip().startswith('<section class="card" id="job"') and "<progress" in partial
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.FAILED, message="Broken.")
    done = lead_client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "every 1s" not in done and "Broken." in done


def test_confirm_answers_htmx_with_the_result_partial(lead_client, project):
    _upload(lead_client, project, "items.jsonl", _jsonl([{"input": "Q", "output": "A"}]).encode())
    job = ImportJob.objects.get()
    response = lead_client.post(reverse("import_confirm", args=[project.slug, job.pk]), headers={"HX-Request": "true"})
    assert response.status_code == 200 and "1 new item added" in response.content.decode()
    assert "<html" not in response.content.decode()


@pytest.mark.postgres(reason="new items go in with COPY, which is PostgreSQL's")
def test_with_debug_on_as_make_run_sets_it_the_browser_and_the_api_import_through_copy(
    lead_client, lead, project, settings
):
    """DEBUG makes Django hand out CursorDebugWrapper, whose copy() takes no writer: every import once failed."""
    settings.DEBUG = True
    with connection.cursor() as cursor:
        assert isinstance(cursor, CursorDebugWrapper)  # the wrapper the imports below get
    assert not Item.objects.filter(project=project).exists()  # an empty project: the whole file in one COPY
    rows = [{"external_id": f"b-{n}", "input": f"Q{n}", "output": "A"} for n in range(3)]
    _upload(lead_client, project, "items.jsonl", _jsonl(rows).encode())
    job = ImportJob.objects.get()
    done = lead_client.post(reverse("import_confirm", args=[project.slug, job.pk]), follow=True)
    assert "3 new items added" in done.content.decode()
    assert ImportJob.objects.get().status == ImportJob.Status.DONE
    # The API, into a project that has items now: a COPY per batch.
    _row, secret = tokens.token_create(user=lead, name="pipeline")
    response = lead_client.post(
        f"/api/v1/projects/{project.slug}/items",
        data=json.dumps({"items": [{"external_id": f"a-{n}", "input": f"P{n}", "output": "B"} for n in range(2)]}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 200, response.content.decode()[:500]
    assert response.json()["new"] == 2
    assert sorted(Item.objects.filter(project=project).values_list("external_id", flat=True)) == [
        "a-0",
        "a-1",
        "b-0",
        "b-1",
        "b-2",
    ]


def test_every_import_url_is_a_404_for_an_outsider_and_for_an_annotator(client, project, outsider, annotator, lead):
    job = ImportJob.objects.create(
        project=project, kind="items", filename="x.jsonl", file_format="jsonl", status="previewed"
    )
    urls = [
        ("get", reverse("import_start", args=[project.slug])),
        ("post", reverse("import_start", args=[project.slug])),
        ("get", reverse("import_job", args=[project.slug, job.pk])),
        ("post", reverse("import_confirm", args=[project.slug, job.pk])),
    ]
    for user in (outsider, annotator):
        client.force_login(user)
        for method, url in urls:
            assert getattr(client, method)(url).status_code == 404, (user, url)
    # A job of another project is not reachable through this project's URL either.
    other = ProjectFactory(slug="mine")
    membership(lead, other, "lead")
    client.force_login(lead)
    assert client.get(reverse("import_job", args=["mine", job.pk])).status_code == 404
    assert ImportJob.objects.get().status == "previewed"


def test_a_large_upload_is_checked_and_imported_by_the_worker_with_progress(celery_worker, settings, tmp_path):
    settings.IMPORT_UPLOAD_DIR = tmp_path / "uploads"
    settings.IMPORT_SYNC_MAX_BYTES = 0  # every upload goes to the worker
    project = ProjectFactory(slug="worker-import")
    lead = UserFactory(username="worker-lead")
    membership(lead, project, "lead")
    ratelimit.reset(f"import:{lead.pk}", per_seconds=3600)
    from django.test import Client

    client = Client()
    client.force_login(lead)
    _upload(client, project, "items.jsonl", _jsonl([{"input": f"Q{i}", "output": "A"} for i in range(50)]).encode())
    job = ImportJob.objects.get(project=project)
    _wait(lambda: ImportJob.objects.get(pk=job.pk).status == ImportJob.Status.PREVIEWED)
    client.post(reverse("import_confirm", args=[project.slug, job.pk]))
    _wait(lambda: ImportJob.objects.get(pk=job.pk).status == ImportJob.Status.DONE)
    assert Item.objects.filter(project=project).count() == 50


def _wait(condition, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the worker did not finish in time"
        time.sleep(0.1)


def test_a_job_delivered_twice_runs_once(project, lead, tmp_path, settings):
    path = Path(settings.IMPORT_UPLOAD_DIR)
    path.mkdir(parents=True)
    (path / "f.jsonl").write_text(_jsonl([{"input": "Q", "output": "A"}]))
    job = ImportJob.objects.create(
        project=project, kind="items", filename="f.jsonl", stored_name="f.jsonl", file_format="jsonl", status="queued"
    )
    import_job_apply(job_id=job.pk)
    import_job_apply(job_id=job.pk)  # the redelivery finds the job claimed: nothing happens
    assert ImportJob.objects.get().status == "done" and Item.objects.count() == 1


def test_unconfirmed_uploads_expire_and_their_files_are_deleted(project, settings):
    path = Path(settings.IMPORT_UPLOAD_DIR)
    path.mkdir(parents=True)
    (path / "old.jsonl").write_text("{}")
    job = ImportJob.objects.create(
        project=project,
        kind="items",
        filename="old.jsonl",
        stored_name="old.jsonl",
        file_format="jsonl",
        status="previewed",
    )
    ImportJob.objects.filter(pk=job.pk).update(created_at=job.created_at - dt.timedelta(days=2))
    assert import_uploads_expire() == 1
    assert ImportJob.objects.get().status == "expired" and not (path / "old.jsonl").exists()


def test_the_project_page_links_the_lead_to_both_imports(client, project, lead, annotator):
    client.force_login(lead)
    page = client.get(reverse("project_detail", args=[project.slug])).content.decode()
    assert "Import items" in page and "Import labels" in page
    client.force_login(annotator)
    assert "Import items" not in client.get(reverse("project_detail", args=[project.slug])).content.decode()


# --- Progress, finish time, the Recent imports card, counts in words (issue 23) -----------------------------------


def _progress_of(tmp_path, project, n_rows: int) -> list[tuple[float, int]]:
    path = _file(tmp_path, "many.jsonl", _jsonl([{"input": f"Q{i}", "output": "A"} for i in range(n_rows)]))
    seen: list[tuple[float, int]] = []
    file_import(project=project, kind="items", path=path, progress=lambda f, n: seen.append((f, n)))
    return seen


def test_progress_moves_every_500_rows_in_a_file_where_1_percent_is_fewer(project, tmp_path):
    seen = _progress_of(tmp_path, project, 3_000)
    assert [n for _f, n in seen] == [500, 1000, 1500, 2000, 2500, 3000, 3000]  # then the end: 100%
    fractions = [f for f, _n in seen]
    assert fractions == sorted(fractions) and 0 < fractions[0] < 0.25 and fractions[-1] == 1.0


@pytest.mark.slow
def test_progress_moves_every_1_percent_in_a_file_where_500_rows_are_fewer(project, tmp_path):
    seen = _progress_of(tmp_path, project, 80_000)  # 1% = about 800 rows
    steps = list(itertools.pairwise(seen[:-1]))
    assert all(0.01 <= fb - fa <= 0.0102 and nb - na >= 500 for (fa, na), (fb, nb) in steps), steps
    assert 97 <= len(seen) <= 101 and seen[-1] == (1.0, 80_000)


def test_a_job_is_finished_when_its_work_ends_not_when_it_starts(project, settings, monkeypatch):
    path = Path(settings.IMPORT_UPLOAD_DIR)
    path.mkdir(parents=True)
    (path / "f.jsonl").write_text(_jsonl([{"input": "Q", "output": "A"}]))
    job = ImportJob.objects.create(
        project=project, kind="items", filename="f.jsonl", stored_name="f.jsonl", file_format="jsonl", status="queued"
    )
    real = file_import
    ended: list[dt.datetime] = []

    def slow(**kwargs):
        report = real(**kwargs)
        time.sleep(0.3)
        ended.append(django_now())
        return report

    from django.utils.timezone import now as django_now

    monkeypatch.setattr(import_jobs, "file_import", slow)  # as the job calls it
    import_job_apply(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "done" and job.finished_at >= ended[0]
    assert job.finished_at - job.started_at >= dt.timedelta(seconds=0.3)


def test_the_recent_imports_card_polls_while_a_job_runs_and_its_badge_matches_the_bar(lead_client, project):
    url = reverse("import_start", args=[project.slug])
    job = ImportJob.objects.create(
        project=project, kind="items", filename="big.jsonl", file_format="jsonl", status="applying", size_bytes=10
    )
    page = lead_client.get(url).content.decode()
    assert 'id="import-jobs"' in page and 'hx-trigger="importsChanged from:body, every 2s"' in page
    assert '<label for="job-progress-' in page and "Importing</label>" in page
    # The card asks for itself: the answer is the card alone, with the progress the worker wrote.
    from django.core.cache import cache

    cache.set(f"import-job-progress:{job.pk}", {"percent": 40, "rows": 1200}, 60)
    card = lead_client.get(url, headers={"HX-Request": "true", "HX-Target": "import-jobs"}).content.decode()
    assert card.lstrip().startswith('<section class="card" id="import-jobs"') and "<html" not in card
    assert 'value="40"' in card and "40% · 1200 rows read" in card
    # A job waiting for a worker says so, with no percentage, in the list and on its page alike.
    ImportJob.objects.filter(pk=job.pk).update(status="queued")
    card = lead_client.get(url, headers={"HX-Request": "true", "HX-Target": "import-jobs"}).content.decode()
    assert "Waiting to be imported</label>" in card and "value=" not in card.split("<progress", 1)[1].split(">", 1)[0]
    job_page = lead_client.get(reverse("import_job", args=[project.slug, job.pk])).content.decode()
    assert "Waiting to be imported</span>" in job_page and "Waiting to be imported</label>" in job_page
    assert "Importing</label>" not in job_page
    # Once nothing runs, the card stops polling and shows the final badge.
    ImportJob.objects.filter(pk=job.pk).update(status="done")
    card = lead_client.get(url, headers={"HX-Request": "true", "HX-Target": "import-jobs"}).content.decode()
    assert "every 2s" not in card and '<span class="badge">Imported</span>' in card
    assert 'hx-trigger="importsChanged from:body"' in card  # still reloads when the page starts another import


def test_an_upload_and_a_confirm_tell_the_page_to_reload_its_recent_imports(lead_client, project):
    upload = SimpleUploadedFile("three.jsonl", _jsonl([{"input": f"Q{i}", "output": "A"} for i in range(3)]).encode())
    answer = lead_client.post(
        reverse("import_start", args=[project.slug]),
        {"kind": "items", "file": upload, "file_format": ""},
        headers={"HX-Request": "true"},
    )
    assert answer.status_code == 200 and answer.headers["HX-Trigger"] == '{"importsChanged": {}}'
    job = ImportJob.objects.get(project=project)
    confirmed = lead_client.post(
        reverse("import_confirm", args=[project.slug, job.pk]), {}, headers={"HX-Request": "true"}
    )
    assert confirmed.status_code == 200 and confirmed.headers["HX-Trigger"] == '{"importsChanged": {}}'
    card = lead_client.get(
        reverse("import_start", args=[project.slug]), headers={"HX-Request": "true", "HX-Target": "import-jobs"}
    ).content.decode()
    assert "three.jsonl" in card


def test_counts_agree_in_number_in_import_messages(client, project, lead, tmp_path):
    one = _file(tmp_path, "one.jsonl", _jsonl([{"input": "Q", "output": "A"}, {"input": "Q2"}]))
    with pytest.raises(CommandError, match=r"^1 bad row; nothing was imported"):
        call_command("import_items", project.slug, str(one), "--no-progress")
    two = _file(tmp_path, "two.jsonl", _jsonl([{"input": "Q"}, {"input": "Q2"}]))
    with pytest.raises(CommandError, match=r"^2 bad rows; nothing was imported"):
        call_command("import_items", project.slug, str(two), "--no-progress")
    _row, raw = tokens.token_create(user=lead, name="pipeline")
    for rows, detail in (([{"input": "Q"}], "1 bad record;"), ([{"input": "Q"}, {"input": "R"}], "2 bad records;")):
        response = client.post(
            f"/api/v1/projects/{project.slug}/samples",
            json.dumps({"records": rows}),
            content_type="application/json",
            headers={"Authorization": f"Bearer {raw}"},
        )
        assert response.status_code == 400 and response.json()["detail"].startswith(detail), response.json()
    report = ImportReport(kind="labels", applied=True, n_rows=1, users_created=["zoe"])
    assert report.summary().startswith("1 row: ") and (
        "1 annotator name that is not a member of this project added as its own inactive imported user."
        in (report.summary())
    )
    two = ImportReport(kind="labels", applied=False, n_rows=2, users_created=["zoe", "yan"])
    assert (
        "2 annotator names that are not members of this project would be added as its own inactive imported users."
        in (two.summary())
    )


def test_each_jsonl_line_reads_as_json_loads_reads_it_and_a_bad_one_says_what_json_loads_says():
    from annotate.imports.parsing import rows_read

    lines = [
        '{"a": 1}',
        ' {"a": 2} \t',
        '{"a": 3}\r',
        '{"a": 4}\x0c',  # form feed: white space to Python, not to JSON
        '{"a": 5} {"b": 6}',
        '\ufeff{"a": 7}',  # a BOM is only taken off the first line
        '{"a": [1.5e300, null, true], "b": "\\u00e9"}',
        '{"a": 8',
        '["not", "an object"]',
        "[" * 100_000,
    ]
    read = dict(rows_read(io.BytesIO("".join(line + "\n" for line in lines).encode()), fmt="jsonl"))
    for n, text in enumerate(lines, 1):
        try:
            expected: object = json.loads(text + "\n")
        except json.JSONDecodeError as exc:
            expected = f"line {n}: not valid JSON: {exc.msg} (column {exc.colno})"
        except RecursionError:
            expected = f"line {n}: not valid JSON: nested too deeply"
        got = read[n]
        if isinstance(expected, list):
            assert str(got).endswith("each line must be a JSON object, not a list")
        elif isinstance(expected, str):
            assert str(got) == expected
        else:
            assert got == expected
