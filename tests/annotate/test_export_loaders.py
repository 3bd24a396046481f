"""Every export format, read back by the tool it names with that tool's own loader (dev dependencies).

- inspect-ai: inspect_ai.dataset.json_dataset reads the file into Samples.
- hf-datasets: datasets.load_dataset("json", ...) reads it, also when read in small blocks, where a column whose type
  changes from one block to the next (a null, then a string) fails the load, as the jsonl format's does.
- openai-evals-api: there is no offline loader. The test proves what can be checked here: each line is
  `{"item": {...}}`, loads as the `openai` SDK's JSONL run data source (file_content), its item validates against
  export_formats.ITEM_SCHEMA (the eval's custom item_schema, itself a valid JSON Schema), the grader templates load
  as the SDK's LabelModelGrader and StringCheckGrader, and every `{{item.x}}` they reference is in every row. It does
  not prove that OpenAI's service accepts the file (that needs the network and an account).
- jsonl, csv and preference: the standard library's json and csv readers.
"""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from django.core.management import call_command

from annotate import export_formats, exports
from annotate.models import GoldLabel, Project
from annotate.services.items import item_build
from tests.factories import ProjectFactory, UserFactory, label, membership

pytestmark = pytest.mark.django_db

TRANSCRIPT = json.dumps(
    [
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": "Où est la gare ?"},
        {"role": "assistant", "content": "Tout droit."},
        {"role": "user", "content": "Et après ?"},
    ],
    ensure_ascii=False,
)


def _item(project, external_id, *, metadata=None, **fields):
    defaults = {"output_a": "A", "output_b": "B"} if project.is_pairwise else {"output": f"Output {external_id} ✓"}
    item = item_build(
        project=project,
        fields={"input": f"Prompt {external_id}", **defaults, **fields},
        external_id=external_id,
        split="train",
        metadata=metadata,
    )
    item.save()
    return item


def _export(project, path, **options):
    project = Project.objects.select_related("current_rubric").get(pk=project.pk)
    export = exports.export_prepare(project=project, options=exports.ExportOptions(**options))
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.writelines(export.lines())
    return export.manifest


@pytest.fixture
def binary(project, lead, annotator, other_annotator):
    """Unlabeled items first (no reference: nulls in jsonl), then a transcript, a gold label, other metadata types."""
    for n in range(40):
        _item(project, f"unlabeled-{n:02}", metadata={"turn": n})
    chat = _item(project, "chat", input=TRANSCRIPT, metadata={"turn": "last", "tags": ["fr"]})
    plain = _item(project, "plain", metadata={"score": 0.5})
    for user in (annotator, other_annotator):
        label(chat, user, "acceptable", "pass")
    label(plain, annotator, "acceptable", "pass")
    label(plain, other_annotator, "acceptable", "fail")
    GoldLabel.objects.create(
        item=plain, criterion=project.current_rubric.criteria.get(key="acceptable"), value="fail", set_by=lead
    )
    return project


@pytest.fixture
def pairwise(db):
    project = ProjectFactory(slug="pairs", kind="pairwise")
    users = [UserFactory(username=f"pair-{n}") for n in range(2)]
    for user in users:
        membership(user, project)
    for external_id, value in (("a-wins", "a"), ("b-wins", "b"), ("tied", "tie")):
        item = _item(project, external_id, output_a=f"A of {external_id}", output_b=f"B of {external_id}")
        for user in users:
            label(item, user, "acceptable", value)
    _item(project, "unlabeled")
    return project


@pytest.mark.slow
def test_inspect_ai_json_dataset_loads_a_binary_export(binary, tmp_path):
    from inspect_ai.dataset import json_dataset
    from inspect_ai.model import ChatMessageSystem, ChatMessageUser

    path = tmp_path / "inspect.jsonl"
    manifest = _export(binary, path, fmt="inspect-ai")
    samples = list(json_dataset(str(path)))
    assert [s.id for s in samples] == ["chat", "plain"] and manifest["counts"]["items_without_consensus"] == 40
    chat, plain = samples
    assert [type(m) for m in chat.input][:2] == [ChatMessageSystem, ChatMessageUser]  # "developer" is a system message
    assert chat.input[1].text == "Où est la gare ?" and len(chat.input) == 4
    assert chat.target == "pass" and plain.target == "fail"
    assert chat.metadata is not None and chat.metadata["output"] == "Output chat ✓"
    assert chat.metadata["criterion"] == "acceptable" and chat.metadata["item_metadata"] == {
        "turn": "last",
        "tags": ["fr"],
    }
    assert plain.metadata is not None and plain.metadata["source"] == "gold"
    assert [m.text for m in plain.input] == ["Prompt plain"]


def test_inspect_ai_json_dataset_loads_a_pairwise_export_with_ties(pairwise, tmp_path):
    from inspect_ai.dataset import json_dataset

    path = tmp_path / "inspect.jsonl"
    _export(pairwise, path, fmt="inspect-ai")
    samples = {s.id: s for s in json_dataset(str(path))}
    assert {k: s.target for k, s in samples.items()} == {"a-wins": "a", "b-wins": "b", "tied": "tie"}
    assert samples["b-wins"].metadata == {
        "output_a": "A of b-wins",
        "output_b": "B of b-wins",
        "criterion": "acceptable",
        "source": "majority",
        "margin": 2,
        "n_labels": 2,
        "split": "train",
        "item_metadata": {},
    }


def _load_json(path, tmp_path):
    import datasets

    # Small blocks, as a large file is read: each block's column types must match the first's.
    return datasets.load_dataset(
        "json", data_files=str(path), split="train", cache_dir=str(tmp_path / "hf-cache"), chunksize=512
    )


@pytest.mark.slow
def test_hugging_face_datasets_loads_the_hf_export_in_small_blocks(binary, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    path = tmp_path / "hf.jsonl"
    manifest = _export(binary, path, fmt="hf-datasets")
    dataset = _load_json(path, tmp_path)
    assert dataset.num_rows == manifest["counts"]["rows"] == 42
    assert dataset.column_names == ["external_id", "input", "output", "metadata", "split", "rubric_version", "labels"]
    rows = {row["external_id"]: row for row in dataset}
    assert rows["unlabeled-00"]["labels"]["acceptable"] == {"reference": "", "source": "", "margin": 0, "n_labels": 0}
    assert rows["chat"]["labels"]["acceptable"] == {
        "reference": "pass",
        "source": "majority",
        "margin": 2,
        "n_labels": 2,
    }
    assert rows["plain"]["labels"]["acceptable"]["source"] == "gold"
    assert json.loads(rows["chat"]["metadata"]) == {"turn": "last", "tags": ["fr"]}
    assert rows["chat"]["input"] == TRANSCRIPT and rows["chat"]["output"] == "Output chat ✓"


def test_the_jsonl_export_is_what_fails_that_load(binary, tmp_path, monkeypatch):
    """Why hf-datasets exists: jsonl's nulls and free-form metadata change type from block to block."""
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    path = tmp_path / "plain.jsonl"
    _export(binary, path, fmt="jsonl")
    with pytest.raises(datasets.exceptions.DatasetGenerationError):
        _load_json(path, tmp_path)


def test_hugging_face_datasets_loads_a_pairwise_hf_export(pairwise, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    path = tmp_path / "hf.jsonl"
    _export(pairwise, path, fmt="hf-datasets")
    dataset = _load_json(path, tmp_path)
    assert [(r["external_id"], r["labels"]["acceptable"]["reference"]) for r in dataset] == [
        ("a-wins", "a"),
        ("b-wins", "b"),
        ("tied", "tie"),
        ("unlabeled", ""),
    ]
    assert dataset[0]["output_b"] == "B of a-wins"


_ITEM_REF = re.compile(r"\{\{\s*item\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def _templates(value):
    """Every string in a grader definition."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _templates(v)
    elif isinstance(value, list):
        for v in value:
            yield from _templates(v)


def test_openai_evals_api_rows_fit_the_data_source_and_the_graders(binary, tmp_path):
    import jsonschema
    from openai.types.evals import CreateEvalJSONLRunDataSource
    from openai.types.graders import LabelModelGrader, StringCheckGrader

    path = tmp_path / "evals.jsonl"
    manifest = _export(binary, path, fmt="openai-evals-api")
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == manifest["counts"]["rows"] == 2
    # The SDK's own model of a JSONL run data source whose content is these rows.
    source = CreateEvalJSONLRunDataSource.model_validate(
        {"type": "jsonl", "source": {"type": "file_content", "content": lines}}
    )
    assert [row.item["external_id"] for row in source.source.content] == ["chat", "plain"]  # type: ignore[union-attr]
    jsonschema.Draft202012Validator.check_schema(export_formats.ITEM_SCHEMA)
    validator = jsonschema.Draft202012Validator(export_formats.ITEM_SCHEMA)
    for line in lines:
        assert list(line) == ["item"]
        validator.validate(line["item"])
    chat, plain = (line["item"] for line in lines)
    assert chat["reference"] == "pass" and plain["reference"] == "fail"
    assert chat["output"] == "Output chat ✓" and chat["messages"][1] == {"role": "user", "content": "Où est la gare ?"}
    assert chat["input"].startswith("developer: Answer in French.\n\nuser: Où est la gare ?")
    assert plain["input"] == "Prompt plain"
    # The grader templates load as the SDK's graders, and each {{item.x}} they use is in every row.
    LabelModelGrader.model_validate(export_formats.LABEL_GRADER)
    StringCheckGrader.model_validate(export_formats.MATCH_GRADER)
    used = {
        name
        for grader in (export_formats.LABEL_GRADER, export_formats.MATCH_GRADER)
        for text in _templates(grader)
        for name in _ITEM_REF.findall(text)
    }
    assert used == {"criterion", "input", "output", "reference"}
    for line in lines:
        assert used <= line["item"].keys()
    rendered = _ITEM_REF.sub(lambda m: str(chat[m[1]]), export_formats.LABEL_GRADER["input"][1]["content"])
    assert "Output to grade:\nOutput chat ✓" in rendered and "Où est la gare ?" in rendered


def test_the_former_openai_evals_id_gives_the_evals_api_rows(binary):
    out = io.StringIO()
    call_command("export_labels", binary.slug, "--format", "openai-evals", stdout=out, stderr=io.StringIO())
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [row["item"]["external_id"] for row in rows] == ["chat", "plain"]
    project = Project.objects.select_related("current_rubric").get(pk=binary.pk)
    export = exports.export_prepare(project=project, options=exports.ExportOptions(fmt="openai-evals"))
    assert export.manifest["format"] == "openai-evals-api" and exports.filename(export).endswith(
        "-openai-evals-api.jsonl"
    )


def test_jsonl_csv_and_preference_load_with_the_standard_readers(binary, pairwise, tmp_path):
    path = tmp_path / "rows.jsonl"
    _export(binary, path, fmt="jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 42 and rows[-2]["labels"]["acceptable"]["reference"] == "pass"
    path = tmp_path / "rows.csv"
    _export(binary, path, fmt="csv", bom=True)
    assert path.read_bytes().startswith(b"\xef\xbb\xbfexternal_id,")
    with open(path, encoding="utf-8-sig", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 42 and table[-2]["external_id"] == "chat" and table[-2]["output"] == "Output chat ✓"
    path = tmp_path / "pairs.jsonl"
    _export(pairwise, path, fmt="preference")
    pairs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert pairs == [
        {"prompt": "Prompt a-wins", "chosen": "A of a-wins", "rejected": "B of a-wins"},
        {"prompt": "Prompt b-wins", "chosen": "B of b-wins", "rejected": "A of b-wins"},
    ]


def test_every_format_has_a_loader_test_and_every_entry_point_takes_every_id():
    from typing import get_args

    from annotate.api import ExportQuery
    from annotate.forms import ExportForm
    from annotate.management.commands.export_labels import Command

    tested = {"inspect-ai", "hf-datasets", "openai-evals-api", "jsonl", "csv", "preference"}
    assert set(export_formats.FORMATS) == tested
    accepted = {*tested, "openai-evals"}
    assert set(get_args(ExportQuery.model_fields["format"].annotation)) == accepted
    assert {value for value, _label in ExportForm.base_fields["format"].choices} == accepted  # type: ignore[attr-defined]
    parser = Command().create_parser("manage.py", "export_labels")
    assert set(next(a for a in parser._actions if a.dest == "fmt").choices) == accepted  # type: ignore[arg-type]
