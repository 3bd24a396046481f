from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotate import exports, reports, tokens
from annotate.demo import demo_load
from annotate.models import GoldLabel, Membership, Project
from annotate.services.items import item_build
from annotate.services.projects import project_set_status
from tests.factories import ProjectFactory, UserFactory, label, membership

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def _item(project, external_id, *, split="train", metadata=None, **fields):
    defaults = {"output_a": "A", "output_b": "B"} if project.is_pairwise else {"output": "Out"}
    item = item_build(
        project=project,
        fields={"input": f"Prompt {external_id}", **defaults, **fields},
        external_id=external_id,
        split=split,
        metadata=metadata,
    )
    item.save()
    return item


def _run(project, **options):
    project = Project.objects.select_related("current_rubric").get(pk=project.pk)
    export = exports.export_prepare(project=project, options=exports.ExportOptions(**options), now=NOW)
    text = "".join(export.lines())
    return text, export.manifest


def _jsonl(project, **options):
    text, manifest = _run(project, **options)
    return [json.loads(line) for line in text.splitlines()], manifest


@pytest.fixture
def binary(project, lead, annotator, other_annotator):
    """Three items: agreed pass, a 1–1 split the lead adjudicated to fail, and one nobody labeled."""
    third = UserFactory(username="tess-annotator")
    membership(third, project)
    agreed = _item(project, "agreed", split="train", metadata={"source": "chat"})
    split = _item(project, "split", split="dev")
    _item(project, "unlabeled", split="test")
    for user in (annotator, other_annotator, third):
        label(agreed, user, "acceptable", "pass", note=f"fine says {user.username}")
    label(agreed, annotator, "factually_correct", "fail")
    label(split, annotator, "acceptable", "pass")
    label(split, other_annotator, "acceptable", "fail")
    criterion = project.current_rubric.criteria.get(key="acceptable")
    GoldLabel.objects.create(item=split, criterion=criterion, value="fail", set_by=lead)
    return project


def test_jsonl_has_one_row_per_item_with_reference_source_margin_and_counts(binary):
    rows, manifest = _jsonl(binary)
    assert [r["external_id"] for r in rows] == ["agreed", "split", "unlabeled"]
    first = rows[0]
    assert set(first) == {"external_id", "input", "output", "metadata", "split", "rubric_version", "labels"}
    assert first["metadata"] == {"source": "chat"} and first["split"] == "train" and first["rubric_version"] == 1
    assert list(first["labels"]) == ["acceptable", "follows_instructions", "factually_correct"]
    assert first["labels"]["acceptable"] == {"reference": "pass", "source": "majority", "margin": 3, "n_labels": 3}
    # One lone label is the reference, named for what it is: a single label, not a majority.
    assert first["labels"]["factually_correct"] == {
        "reference": "fail",
        "source": "single",
        "margin": 1,
        "n_labels": 1,
    }
    assert first["labels"]["follows_instructions"] == {
        "reference": None,
        "source": None,
        "margin": None,
        "n_labels": 0,
    }
    assert rows[2]["labels"]["acceptable"]["reference"] is None
    assert manifest["counts"]["rows"] == 3 and manifest["counts"]["labels"] == 6
    assert manifest["project"] == "support-bot" and manifest["rubric_version"] == 1 and manifest["format"] == "jsonl"
    assert manifest["generated_at"] == "2026-01-02T03:04:05+00:00"
    assert manifest["app_version"] == "0.1.0"


def test_a_gold_label_beats_the_majority(binary, lead, annotator, other_annotator):
    agreed = binary.items.get(external_id="agreed")
    GoldLabel.objects.create(
        item=agreed, criterion=binary.current_rubric.criteria.get(key="acceptable"), value="fail", set_by=lead
    )
    rows, _ = _jsonl(binary)
    assert rows[0]["labels"]["acceptable"]["reference"] == "fail"
    assert rows[0]["labels"]["acceptable"]["source"] == "gold"
    # The 1–1 split has no majority: its reference is the lead's gold label.
    assert rows[1]["labels"]["acceptable"] == {"reference": "fail", "source": "gold", "margin": 0, "n_labels": 2}


def test_individual_labels_carry_annotator_and_note_in_a_stable_order(binary):
    rows, manifest = _jsonl(binary, individual=True)
    assert rows[0]["labels"]["acceptable"]["individual"] == [
        {"annotator": "ada-annotator", "value": "pass", "note": "fine says ada-annotator"},
        {"annotator": "omar-annotator", "value": "pass", "note": "fine says omar-annotator"},
        {"annotator": "tess-annotator", "value": "pass", "note": "fine says tess-annotator"},
    ]
    assert rows[2]["labels"]["acceptable"]["individual"] == []
    assert manifest["counts"]["individual_labels"] == 6


def test_filters_select_items_and_criteria(binary):
    rows, manifest = _jsonl(binary, split="dev")
    assert [r["external_id"] for r in rows] == ["split"]
    assert manifest["counts"]["items_filtered_out"] == 0  # the split is a query filter, not a skip
    rows, manifest = _jsonl(binary, min_labels=3)
    assert [r["external_id"] for r in rows] == ["agreed"]
    assert manifest["counts"]["items_filtered_out"] == 2
    rows, _ = _jsonl(binary, adjudicated_only=True)
    assert [r["external_id"] for r in rows] == ["split"]
    rows, _ = _jsonl(binary, consensus_only=True, criteria=("acceptable",))
    assert [r["external_id"] for r in rows] == ["agreed", "split"]
    assert list(rows[0]["labels"]) == ["acceptable"]
    # Every exported criterion needs a reference: "follows_instructions" has none anywhere.
    rows, _ = _jsonl(binary, consensus_only=True)
    assert rows == []


def test_unknown_options_are_refused_with_a_message(binary):
    for options, message in [
        ({"criteria": ("acceptable", "nope'; DROP")}, "Unknown criterion"),
        ({"fmt": "xml"}, "Unknown format"),
        ({"split": "holdout"}, "Unknown split"),
        ({"fmt": "preference"}, "pairwise"),
        ({"fmt": "openai-evals", "criteria": ("acceptable", "factually_correct")}, "one criterion"),
    ]:
        with pytest.raises(exports.ExportRefused, match=message):
            _run(binary, **options)


def test_two_runs_are_byte_identical(binary):
    for fmt in ("jsonl", "csv", "openai-evals"):
        first, manifest_1 = _run(binary, fmt=fmt, individual=True)
        second, manifest_2 = _run(binary, fmt=fmt, individual=True)
        assert first.encode() == second.encode() and manifest_1 == manifest_2


def test_csv_reads_back_and_neutralises_formulas(project, annotator):
    dangerous = _item(project, "=cmd|' /C calc'!A0", input="+SUM(1,2)", output="@risk", metadata={"k": "v"})
    _item(project, "plain", input="-1 is fine?", output="\tTabbed")
    _item(project, "cr", input="\rCR", output="fine")
    label(dangerous, annotator, "acceptable", "fail", note="=HYPERLINK(1)")
    text, manifest = _run(project, fmt="csv", individual=True)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0])[:7] == [
        "external_id",
        "input",
        "output",
        "metadata",
        "split",
        "rubric_version",
        "acceptable.reference",
    ]
    assert rows[0]["external_id"] == "'=cmd|' /C calc'!A0"
    assert rows[0]["input"] == "'+SUM(1,2)" and rows[0]["output"] == "'@risk"
    assert json.loads(rows[0]["metadata"]) == {"k": "v"}
    assert rows[0]["acceptable.reference"] == "fail" and rows[0]["acceptable.source"] == "single"
    assert rows[0]["acceptable.n_labels"] == "1" and rows[0]["acceptable.margin"] == "1"
    assert json.loads(rows[0]["acceptable.individual"])[0]["note"] == "=HYPERLINK(1)"  # inside JSON, not a cell start
    assert rows[1]["input"] == "'-1 is fine?" and rows[1]["output"] == "'\tTabbed"
    assert rows[2]["input"] == "'\rCR" and rows[2]["output"] == "fine"
    # PostgreSQL text cannot hold NUL, but a cell can come from elsewhere (metadata JSON is escaped).
    assert exports.csv_cell("\0nul") == "'\0nul" and exports.csv_cell(-3) == -3
    assert rows[1]["acceptable.reference"] == "" and rows[1]["acceptable.margin"] == ""
    assert manifest["counts"]["rows"] == 3


def test_openai_evals_api_items_hold_the_input_the_graded_output_and_the_reference(binary):
    """The former "openai-evals" rows put the output in a `completion` field no stock eval reads (issue 16)."""
    lines, manifest = _jsonl(binary, fmt="openai-evals-api")
    assert lines == [
        {
            "item": {
                "external_id": external_id,
                "criterion": "acceptable",
                "input": f"Prompt {external_id}",
                "messages": [{"role": "user", "content": f"Prompt {external_id}"}],
                "output": "Out",
                "reference": reference,
            }
        }
        for external_id, reference in (("agreed", "pass"), ("split", "fail"))
    ]
    assert manifest["criteria"] == ["acceptable"] and manifest["counts"]["items_without_consensus"] == 1
    assert manifest["format"] == "openai-evals-api"


def test_openai_evals_refuses_a_pairwise_project(db):
    pairwise = ProjectFactory(slug="pairs", kind="pairwise")
    with pytest.raises(exports.ExportRefused, match="preference"):
        _run(pairwise, fmt="openai-evals")


def test_preference_pairs_follow_the_consensus_and_count_ties_and_splits(db):
    pairwise = ProjectFactory(slug="pairs", kind="pairwise")
    lead, a1, a2, a3 = (UserFactory(username=n) for n in ("pl", "p1", "p2", "p3"))
    membership(lead, pairwise, Membership.Role.LEAD)
    a_wins = _item(pairwise, "a-wins", output_a="good A", output_b="bad B")
    b_wins = _item(pairwise, "b-wins", output_a="bad A", output_b="good B")
    tie = _item(pairwise, "tie")
    split = _item(pairwise, "split")
    gold = _item(pairwise, "gold", output_a="gold A", output_b="gold B")
    for user, value in ((a1, "a"), (a2, "a"), (a3, "b")):
        label(a_wins, user, "acceptable", value)
    for user in (a1, a2):
        label(b_wins, user, "acceptable", "b")
        label(tie, user, "acceptable", "tie")
    label(split, a1, "acceptable", "a")
    label(split, a2, "acceptable", "b")
    label(gold, a1, "acceptable", "a")
    label(gold, a2, "acceptable", "a")
    GoldLabel.objects.create(
        item=gold, criterion=pairwise.current_rubric.criteria.get(key="acceptable"), value="b", set_by=lead
    )
    lines, manifest = _jsonl(pairwise, fmt="preference")
    assert lines == [
        {"prompt": "Prompt a-wins", "chosen": "good A", "rejected": "bad B"},
        {"prompt": "Prompt b-wins", "chosen": "good B", "rejected": "bad A"},
        {"prompt": "Prompt gold", "chosen": "gold B", "rejected": "gold A"},
    ]
    counts = manifest["counts"]
    assert (counts["rows"], counts["ties"], counts["items_without_consensus"]) == (3, 1, 1)
    rows, _ = _jsonl(pairwise)
    assert set(rows[0]) >= {"output_a", "output_b"} and "output" not in rows[0]


def test_the_command_writes_the_file_and_its_manifest(binary, tmp_path):
    target = tmp_path / "out.jsonl"
    call_command("export_labels", "support-bot", "--format", "jsonl", "-o", str(target), "--individual")
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    manifest = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
    assert len(rows) == 3 and manifest["counts"]["rows"] == 3 and manifest["filters"]["individual"] is True
    assert not (tmp_path / "out.jsonl.partial").exists()


def test_the_command_writes_to_stdout_and_the_manifest_to_stderr(binary, capsys):
    call_command("export_labels", "support-bot", "--format", "csv", "--criterion", "acceptable", "--split", "dev")
    out, err = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["external_id"] for r in rows] == ["split"]
    assert json.loads(err)["counts"]["rows"] == 1
    with pytest.raises(CommandError, match="Unknown criterion"):
        call_command("export_labels", "support-bot", "--criterion", "missing")


def test_the_lead_downloads_a_streamed_attachment(client, binary, lead):
    client.force_login(lead)
    page = client.get("/p/support-bot/")
    assert "/p/support-bot/export/" in page.content.decode()
    form = client.get("/p/support-bot/export/")
    assert form.status_code == 200 and 'action="/p/support-bot/export/download/"' in form.content.decode()
    response = client.get("/p/support-bot/export/download/", {"format": "csv", "criterion": ["acceptable"]})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="support-bot-v1-csv.csv"'
    assert response["X-Content-Type-Options"] == "nosniff"
    body = b"".join(response.streaming_content).decode()
    assert [r["external_id"] for r in csv.DictReader(io.StringIO(body))] == ["agreed", "split", "unlabeled"]


def test_bad_options_show_the_form_again_with_the_reason(client, binary, lead):
    client.force_login(lead)
    response = client.get("/p/support-bot/export/download/", {"format": "preference"})
    assert response.status_code == 400 and "pairwise" in response.content.decode()
    response = client.get("/p/support-bot/export/download/", {"format": "jsonl", "criterion": ["missing"]})
    assert response.status_code == 400 and "missing" in response.content.decode()


@pytest.mark.parametrize(
    ("kind", "offered"),
    [
        ("binary", ["jsonl", "csv", "openai-evals-api", "inspect-ai", "hf-datasets"]),
        ("pairwise", ["jsonl", "csv", "inspect-ai", "hf-datasets", "preference"]),
    ],
)
def test_the_export_page_offers_only_the_formats_its_project_can_download(
    client, project, lead, annotator, kind, offered
):
    """Found by the journey (tests/journey/): a binary project's page offered preference pairs, which answered 400."""
    Project.objects.filter(pk=project.pk).update(kind=kind)
    project.refresh_from_db()
    label(_item(project, "one"), annotator, "acceptable", "a" if kind == "pairwise" else "pass")
    client.force_login(lead)
    page = client.get("/p/support-bot/export/").content.decode()
    select = re.search(r'<select name="format"[^>]*>(.*?)</select>', page, re.S)
    assert select, page
    assert re.findall(r'<option value="([^"]*)"', select[1]) == offered
    for fmt in offered:
        response = client.get("/p/support-bot/export/download/", {"format": fmt})
        assert response.status_code == 200 and response.streaming, (fmt, response.content[:500])
        assert b"one" in b"".join(response.streaming_content)  # read to the end: the stream closes its snapshot
    refused = next(fmt for fmt in ("openai-evals-api", "preference") if fmt not in offered)
    response = client.get("/p/support-bot/export/download/", {"format": refused})
    assert response.status_code == 400 and ("binary" if kind == "binary" else "preference pairs") in response.text


@pytest.mark.parametrize("persona", ["annotator", "outsider"])
def test_annotators_and_outsiders_get_404(client, binary, persona, request):
    client.force_login(request.getfixturevalue(persona))
    assert client.get("/p/support-bot/export/").status_code == 404
    assert client.get("/p/support-bot/export/download/", {"format": "jsonl"}).status_code == 404


def test_the_tulu_demo_exports_its_consensus(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    demo_load()
    pairwise = Project.objects.select_related("current_rubric").get(slug="tulu-preference")
    report = reports.report_build(project=pairwise, n_boot=10)["criteria"]["overall"]["consensus"]
    lines, manifest = _jsonl(pairwise, fmt="preference", criteria=("overall",))
    counts = manifest["counts"]
    # Every item with a reference is exported, single labels included: the same kinds as the agreement page counts.
    assert counts["rows"] + counts["ties"] == report["n_majority"] + report["n_gold"] + report["n_single"]
    assert counts["items_without_consensus"] == report["n_unsettled"]
    assert counts["rows"] > 0 and all(set(line) == {"prompt", "chosen", "rejected"} for line in lines)
    binary = Project.objects.get(slug="tulu-acceptability")
    rows, manifest = _jsonl(binary, individual=True, criteria=("acceptable",))
    assert manifest["counts"]["individual_labels"] == binary.items.filter(labels__isnull=False).count()
    assert [r["external_id"] for r in rows] == list(binary.items.order_by("id").values_list("external_id", flat=True))


def test_the_api_streams_the_export_to_a_lead_token_only(client, binary, lead, annotator, outsider):
    _row, raw = tokens.token_create(user=lead, name="export")
    response = client.get(
        "/api/v1/projects/support-bot/export",
        {"format": "jsonl", "criterion": ["acceptable"], "split": "train"},
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert response.status_code == 200 and response["X-Content-Type-Options"] == "nosniff"
    rows = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [r["external_id"] for r in rows] == ["agreed"] and list(rows[0]["labels"]) == ["acceptable"]
    refused = client.get(
        "/api/v1/projects/support-bot/export", {"format": "preference"}, headers={"Authorization": f"Bearer {raw}"}
    )
    assert refused.status_code == 400 and "pairwise" in refused.json()["detail"]
    for user in (annotator, outsider):
        _row, other = tokens.token_create(user=user, name="export")
        response = client.get("/api/v1/projects/support-bot/export", headers={"Authorization": f"Bearer {other}"})
        assert response.status_code == 404


# --- The manifest on every export -----------------------------------------------------------------------------


def test_the_download_carries_its_manifest_in_a_header_and_alone_on_request(client, binary, lead, tmp_path):
    client.force_login(lead)
    options = {"format": "jsonl", "min_labels": "2", "individual": "on"}
    response = client.get("/p/support-bot/export/download/", options)
    manifest = json.loads(response[exports.MANIFEST_HEADER])
    rows = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    # Final before the first byte: the counts match the rows that follow.
    assert [r["external_id"] for r in rows] == ["agreed", "split"]
    assert manifest["counts"] == {
        "rows": 2,
        "labels": 6,
        "individual_labels": 6,
        "items_filtered_out": 1,
        "items_without_consensus": 0,
        "ties": 0,
    }
    assert sum(len(e["individual"]) for r in rows for e in r["labels"].values()) == manifest["counts"]["labels"]
    assert manifest["filters"]["min_labels"] == 2 and manifest["format"] == "jsonl" and manifest["app_version"]
    alone = client.get("/p/support-bot/export/download/", {**options, "manifest": "1"})
    assert alone["Content-Type"] == "application/json" and not alone.streaming
    assert alone.json() | {"generated_at": None} == manifest | {"generated_at": None}
    # The command writes the same manifest beside its file.
    target = tmp_path / "out.jsonl"
    call_command("export_labels", "support-bot", "--min-labels", "2", "--individual", "-o", str(target))
    written = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
    assert written | {"generated_at": None} == manifest | {"generated_at": None}


def test_the_api_carries_the_manifest_too(client, binary, lead):
    _row, raw = tokens.token_create(user=lead, name="export")
    auth = {"Authorization": f"Bearer {raw}"}
    response = client.get("/api/v1/projects/support-bot/export", {"format": "csv"}, headers=auth)
    manifest = json.loads(response[exports.MANIFEST_HEADER])
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert manifest["counts"]["rows"] == len(rows) == 3 and manifest["format"] == "csv"
    assert response["Content-Disposition"] == 'attachment; filename="support-bot-v1-csv.csv"'
    alone = client.get("/api/v1/projects/support-bot/export", {"format": "csv", "manifest": "true"}, headers=auth)
    assert alone.status_code == 200 and alone.json()["counts"] == manifest["counts"]


def test_preference_and_evals_counts_are_known_before_the_rows(db):
    pairwise = ProjectFactory(slug="pairs", kind="pairwise")
    project_set_status(project=pairwise, status="active")
    pairwise.refresh_from_db()
    voters = [UserFactory(username=f"voter-{n}") for n in range(2)]
    for user in voters:
        membership(user, pairwise)
    key = pairwise.current_rubric.criteria.first().key
    for external_id, votes in {"a-wins": ("a", "a"), "tie": ("tie", "tie"), "split": ("a", "b")}.items():
        item = _item(pairwise, external_id)
        for user, vote in zip(voters, votes, strict=True):
            label(item, user, key, vote)
    export = exports.export_prepare(
        project=Project.objects.get(pk=pairwise.pk), options=exports.ExportOptions(fmt="preference")
    )
    counts = dict(export.manifest["counts"])
    lines = list(export.lines())
    assert len(lines) == counts["rows"] == 1 and (counts["ties"], counts["items_without_consensus"]) == (1, 1)
    assert export.manifest["counts"] == counts and counts["labels"] == 2


# --- One consistent snapshot ----------------------------------------------------------------------------------


def _write_meanwhile(project_id: int, annotator_id: int) -> None:
    """From another thread, so another connection: a new labeled item, and one more label on an existing item."""
    import threading

    from django.db import connection

    from annotate.models import Item

    def write() -> None:
        try:
            project = Project.objects.get(pk=project_id)
            late = _item(project, "late", split="train")
            annotator = UserFactory._meta.model.objects.get(pk=annotator_id)
            label(late, annotator, "acceptable", "fail")
            label(Item.objects.get(project=project, external_id="unlabeled"), annotator, "acceptable", "fail")
        finally:
            connection.close()

    thread = threading.Thread(target=write)
    thread.start()
    thread.join()


def _two_items(project, annotator, other_annotator):
    agreed = _item(project, "agreed")
    _item(project, "unlabeled")
    label(agreed, annotator, "acceptable", "pass")
    label(agreed, other_annotator, "acceptable", "pass")
    return Project.objects.select_related("current_rubric").get(pk=project.pk)


OPTIONS = exports.ExportOptions(individual=True, criteria=("acceptable",))


@pytest.mark.postgres(reason="the export's REPEATABLE READ snapshot is PostgreSQL's (exports.snapshot)")
@pytest.mark.django_db(transaction=True)
def test_an_export_is_one_snapshot_even_when_someone_writes_between_its_reads(project, annotator, other_annotator):
    project = _two_items(project, annotator, other_annotator)
    # The reference labels are read; then someone writes; then the items and every label are read.
    export, stream = exports.export_stream(project=project, options=OPTIONS)
    _write_meanwhile(project.pk, annotator.pk)
    rows = [json.loads(line) for line in b"".join(stream).decode().splitlines()]
    assert [r["external_id"] for r in rows] == ["agreed", "unlabeled"]
    assert export.manifest["counts"]["rows"] == 2 and export.manifest["counts"]["individual_labels"] == 2
    unlabeled = rows[1]["labels"]["acceptable"]
    assert unlabeled["n_labels"] == len(unlabeled["individual"]) == 0
    # The writes happened: a new export sees them.
    _export, stream = exports.export_stream(project=project, options=OPTIONS)
    after = [json.loads(line) for line in b"".join(stream).decode().splitlines()]
    assert [r["external_id"] for r in after] == ["agreed", "unlabeled", "late"]


@pytest.mark.django_db(transaction=True)
def test_without_the_snapshot_the_same_reads_would_tear(project, annotator, other_annotator):
    """The control for the test above: it fails if the snapshot does nothing."""
    project = _two_items(project, annotator, other_annotator)
    export = exports.export_prepare(project=project, options=OPTIONS)
    _write_meanwhile(project.pk, annotator.pk)
    rows = [json.loads(line) for line in export.lines()]
    # The counts were taken before the write, the rows after it: the manifest no longer describes the file.
    assert [r["external_id"] for r in rows] == ["agreed", "unlabeled", "late"]
    assert export.manifest["counts"]["rows"] == 2 and export.manifest["counts"]["individual_labels"] == 2


@pytest.mark.django_db(transaction=True)
def test_a_download_abandoned_midway_ends_its_snapshot(project, annotator):
    """A streaming response closes its stream when the client goes away: the snapshot's transaction ends with it."""
    from django.db import connection

    for i in range(2000):  # more than one chunk of output
        _item(project, f"item-{i:05d}", output="Out " * 40)
    project = Project.objects.select_related("current_rubric").get(pk=project.pk)
    _export, stream = exports.export_stream(project=project, options=exports.ExportOptions())
    next(stream)
    assert connection.in_atomic_block
    stream.close()
    assert not connection.in_atomic_block


@pytest.mark.parametrize(
    "options",
    [
        {"individual": True},
        {"min_labels": 2, "individual": True},
        {"consensus_only": True, "fmt": "csv"},
        {"adjudicated_only": True},
        {"fmt": "openai-evals", "split": "train"},
    ],
)
def test_blocks_of_any_size_give_the_same_file_and_the_counts_match_it(binary, monkeypatch, options):
    """Items are decided a block at a time: a block boundary between any two items changes nothing."""
    whole, manifest = _run(binary, **options)
    monkeypatch.setattr(exports, "BLOCK", 1)
    assert _run(binary, **options) == (whole, manifest)
    monkeypatch.setattr(exports, "BLOCK", 2)
    assert _run(binary, **options) == (whole, manifest)
    monkeypatch.setattr(exports, "FIRST_BLOCK", 1)  # a first block smaller than the others
    assert _run(binary, **options) == (whole, manifest)
    counts = manifest["counts"]
    n_lines = len(whole.splitlines()) - (1 if options.get("fmt") == "csv" else 0)
    assert counts["rows"] == n_lines
    if options.get("individual"):
        rows = [json.loads(line) for line in whole.splitlines()]
        listed = sum(len(entry["individual"]) for row in rows for entry in row["labels"].values())
        assert counts["individual_labels"] == counts["labels"] == listed


# --- The date range: labels created in [since, until) ---------------------------------------------------------

JAN = dt.datetime(2026, 1, 10, 12, tzinfo=dt.UTC)
LAST_INSTANT_OF_JAN = dt.datetime(2026, 1, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)
FEB = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)


@pytest.fixture
def dated(project, lead, annotator, other_annotator):
    """'mixed': two passes in January, one fail at February's first instant; 'late': one pass at January's last
    instant; 'old': labeled in December only, adjudicated (gold) in January; 'never': not labeled."""
    third = UserFactory(username="tess-annotator")
    membership(third, project)
    mixed = _item(project, "mixed")
    late = _item(project, "late")
    old = _item(project, "old")
    _item(project, "never")
    label(mixed, annotator, "acceptable", "pass", created_at=JAN)
    label(mixed, other_annotator, "acceptable", "pass", created_at=JAN)
    label(mixed, third, "acceptable", "fail", created_at=FEB)
    label(late, annotator, "acceptable", "pass", created_at=LAST_INSTANT_OF_JAN)
    label(old, annotator, "acceptable", "pass", created_at=dt.datetime(2025, 12, 5, tzinfo=dt.UTC))
    gold = GoldLabel.objects.create(
        item=old, criterion=project.current_rubric.criteria.get(key="acceptable"), value="fail", set_by=lead
    )
    GoldLabel.objects.filter(pk=gold.pk).update(created_at=JAN)
    return project


def _bounds(since=None, until=None):
    return {
        "since": exports.parse_bound(since, end=False) if since else None,
        "until": exports.parse_bound(until, end=True) if until else None,
    }


def test_a_date_alone_is_a_whole_day_and_times_without_an_offset_are_utc():
    midnight = dt.datetime(2026, 1, 31, tzinfo=dt.UTC)
    assert exports.parse_bound("2026-01-31", end=False) == midnight
    assert exports.parse_bound("2026-01-31", end=True) == FEB  # until a date: through its last instant
    assert exports.parse_bound("2026-01-31T18:30", end=True) == midnight.replace(hour=18, minute=30)
    assert exports.parse_bound("2026-01-31 18:30:05Z", end=False) == midnight.replace(hour=18, minute=30, second=5)
    assert exports.parse_bound("2026-02-01T01:00:00+01:00", end=False) == FEB
    assert exports.parse_bound(" 2026-01-31T23:59:59.999999 ", end=True) == LAST_INSTANT_OF_JAN
    for bad in (
        "",
        "yesterday",
        "2026-13-01",
        "2026-02-30",
        "20260131",
        "2026-01-31T25:00",
        "2026-01-31'; --",
        "2026-01-31T10:00+2",
        "9999-12-31T23:59:59-01:00",
        "last_week__gte",
    ):
        with pytest.raises(exports.ExportRefused, match="Not a date"):
            exports.parse_bound(bad, end=False)
    with pytest.raises(exports.ExportRefused, match="Not a date"):
        exports.parse_bound("9999-12-31", end=True)  # the midnight after does not exist
    with pytest.raises(exports.ExportRefused, match="range is empty"):
        exports.check_range(FEB, FEB)


def test_only_labels_created_in_the_range_count_and_items_without_any_are_left_out(dated):
    rows, manifest = _jsonl(dated, criteria=("acceptable",), **_bounds("2026-01-01", "2026-01-31"))
    by_id = {r["external_id"]: r["labels"]["acceptable"] for r in rows}
    # February's fail is outside: January alone is a 2–0 pass; the gold label set in January settles 'old'.
    assert list(by_id) == ["mixed", "late", "old"]
    assert by_id["mixed"] == {"reference": "pass", "source": "majority", "margin": 2, "n_labels": 2}
    assert by_id["late"] == {"reference": "pass", "source": "single", "margin": 1, "n_labels": 1}
    assert by_id["old"] == {"reference": "fail", "source": "gold", "margin": None, "n_labels": 0}
    assert manifest["counts"]["rows"] == 3 and manifest["counts"]["labels"] == 3
    assert manifest["counts"]["items_filtered_out"] == 1  # 'never'
    assert manifest["filters"]["since"] == "2026-01-01T00:00:00+00:00"
    assert manifest["filters"]["until"] == "2026-02-01T00:00:00+00:00"  # the exclusive end the date stands for
    # From February on: only the fail; the consensus is computed from it alone.
    rows, manifest = _jsonl(dated, criteria=("acceptable",), **_bounds("2026-02-01"))
    assert [(r["external_id"], r["labels"]["acceptable"]["reference"]) for r in rows] == [("mixed", "fail")]
    assert manifest["filters"]["until"] is None and manifest["counts"]["items_filtered_out"] == 3


def test_since_is_inclusive_and_until_exclusive_to_the_microsecond(dated):
    rows, _ = _jsonl(dated, **_bounds(until="2026-02-01T00:00:00Z"))
    assert [r["external_id"] for r in rows] == ["mixed", "late", "old"]
    assert rows[0]["labels"]["acceptable"]["n_labels"] == 2  # the label at exactly `until` is out
    rows, _ = _jsonl(dated, **_bounds(since="2026-01-31T23:59:59.999999"))
    assert [r["external_id"] for r in rows] == ["mixed", "late"]  # the label at exactly `since` is in
    # A range one microsecond wide holds the label made at that microsecond.
    rows, _ = _jsonl(dated, **_bounds("2026-01-31T23:59:59.999999", "2026-02-01T00:00:00Z"))
    assert [r["external_id"] for r in rows] == ["late"]


def test_the_range_applies_to_min_labels_individual_labels_and_the_other_formats(dated):
    rows, manifest = _jsonl(dated, min_labels=2, individual=True, **_bounds("2026-01-01", "2026-01-31"))
    assert [r["external_id"] for r in rows] == ["mixed"]
    assert [e["value"] for e in rows[0]["labels"]["acceptable"]["individual"]] == ["pass", "pass"]
    assert manifest["counts"]["individual_labels"] == 2
    lines, manifest = _jsonl(dated, fmt="openai-evals-api", **_bounds("2026-02-01"))
    assert [line["item"]["reference"] for line in lines] == ["fail"] and manifest["counts"]["rows"] == 1
    text, _ = _run(dated, fmt="csv", **_bounds("2025-12-01", "2025-12-31"))
    assert [r["external_id"] for r in csv.DictReader(io.StringIO(text))] == ["old"]


def test_a_dated_export_is_byte_identical_whatever_the_block_size(dated, monkeypatch):
    options = {"individual": True, **_bounds("2026-01-01", "2026-02-01T00:00:00.000001")}
    whole, manifest = _run(dated, **options)
    assert _run(dated, **options) == (whole, manifest)
    monkeypatch.setattr(exports, "BLOCK", 1)
    assert _run(dated, **options) == (whole, manifest)
    assert manifest["counts"]["rows"] == len(whole.splitlines()) == 3


def test_the_command_takes_since_and_until_and_refuses_bad_dates_with_exit_code_2(dated, tmp_path, capsys):
    target = tmp_path / "jan.jsonl"
    call_command("export_labels", "support-bot", "--since", "2026-01-01", "--until", "2026-01-31", "-o", str(target))
    assert [json.loads(line)["external_id"] for line in target.read_text().splitlines()] == ["mixed", "late", "old"]
    manifest = json.loads((tmp_path / "jan.jsonl.manifest.json").read_text())
    assert manifest["filters"]["since"] == "2026-01-01T00:00:00+00:00"
    from annotate.management.commands.export_labels import Command

    for argv in (["--since", "2026-02-30"], ["--until", "soon"]):
        with pytest.raises(SystemExit) as exit_info:
            Command().run_from_argv(["manage.py", "export_labels", "support-bot", *argv])
        assert exit_info.value.code == 2
        assert "Not a date" in capsys.readouterr().err
    with pytest.raises(CommandError, match="range is empty") as refused:
        call_command("export_labels", "support-bot", "--since", "2026-02-01", "--until", "2026-01-31")
    assert refused.value.returncode == 2


def test_the_form_takes_a_range_and_shows_what_is_wrong_with_one(client, dated, lead):
    client.force_login(lead)
    page = client.get("/p/support-bot/export/").content.decode()
    assert 'name="since"' in page and 'name="until"' in page and "a date alone includes its whole day" in page
    url = "/p/support-bot/export/download/"
    response = client.get(url, {"format": "jsonl", "since": "2026-02-01"})
    assert response.status_code == 200
    assert [json.loads(line)["external_id"] for line in b"".join(response.streaming_content).splitlines()] == ["mixed"]
    assert json.loads(response[exports.MANIFEST_HEADER])["filters"]["since"] == "2026-02-01T00:00:00+00:00"
    bad = client.get(url, {"format": "jsonl", "since": "<b>feb</b>"})
    assert bad.status_code == 400 and "Not a date" in bad.content.decode()
    assert "<b>feb" not in bad.content.decode()  # escaped
    empty = client.get(url, {"format": "jsonl", "since": "2026-02-01", "until": "2026-01-31"})
    assert empty.status_code == 400 and "range is empty" in empty.content.decode()


def test_the_api_takes_a_range_and_answers_400_for_a_bad_date(client, dated, lead):
    _row, raw = tokens.token_create(user=lead, name="export")
    auth = {"Authorization": f"Bearer {raw}"}
    url = "/api/v1/projects/support-bot/export"
    alone = client.get(url, {"since": "2026-01-01", "until": "2026-01-31", "manifest": "true"}, headers=auth)
    assert alone.status_code == 200 and alone.json()["counts"]["rows"] == 3
    assert alone.json()["filters"]["until"] == "2026-02-01T00:00:00+00:00"
    response = client.get(url, {"until": "2025-12-31"}, headers=auth)
    assert [json.loads(line)["external_id"] for line in b"".join(response.streaming_content).splitlines()] == ["old"]
    for query, message in (
        ({"since": "2026-1-1"}, "Not a date"),
        ({"since": "2026-01-02", "until": "2026-01-01"}, "range is empty"),
    ):
        refused = client.get(url, {**query}, headers=auth)
        assert refused.status_code == 400 and message in refused.json()["detail"]


# --- The JSONL writer ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["binary", "pairwise"])
def test_jsonl_lines_are_exactly_what_json_dumps_writes_for_their_values(db, kind):
    """JSONL lines are assembled from encoded pieces, not json.dumps of a dict: they must still be json.dumps'
    bytes (separators, escapes, key order, numbers), so a file is the same whichever way it was written."""
    project = ProjectFactory(slug="tricky", kind=kind)
    project_set_status(project=project, status="active")
    project.refresh_from_db()
    voters = [UserFactory(username=name) for name in ("zoë", 'Ann "quoted"', "bob\u2028")]
    for user in voters:
        membership(user, project)
    metadata = {"x": 1e-05, "big": 1e16, "pi": 3.141592653589793, "n": None, "t": True, "ü": ["😀", {"": -0.0}]}
    key = project.current_rubric.criteria.order_by("position").first().key
    values = ("a", "b", "tie") if kind == "pairwise" else ("pass", "fail", "pass")
    for n, (external_id, text) in enumerate(
        [("=1+1", "line\nbreak \x01 \x1f \t tab"), ("ü\\slash/", "\u2028 and \u2029 😀"), ("plain", "")]
    ):
        item = _item(project, external_id, input=text, metadata=metadata if n != 2 else {})
        for user, value in zip(voters, values[n:] + values[:n], strict=True):
            label(item, user, key, value, note=f'n\u00f6te "{n}"\n\\ \x7f')
    # Split on newlines only: U+2028 and U+2029 stay raw in JSON (as json.dumps leaves them), str.splitlines cuts there.
    lines = [line + "\n" for line in _run(project, individual=True)[0].split("\n")[:-1]]
    assert len(lines) == 3
    for line in lines:
        assert json.dumps(json.loads(line), ensure_ascii=False) + "\n" == line
    first = json.loads(lines[0])
    assert first["metadata"] == metadata and first["external_id"] == "=1+1"
    assert [e["annotator"] for e in first["labels"][key]["individual"]] == sorted(u.username for u in voters)
