"""Imports against what earlier imports stored: hashes computed the way they always were, and the statistics that
keep a large project's look-ups on its index."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from annotate.imports import items as import_items
from annotate.imports.files import file_import
from annotate.models import Item, Project
from annotate.splits import order_key, split_for
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db

TEXTS = [
    "plain ascii",
    'quotes " and \\ backslashes \\n',
    "controls \x01\x1f\t\n\r\x7f",
    "line separators \u2028\u2029",
    "accents é, CJK 漢字, emoji 👍🏽, RTL עברית",
]


def _stored_as_before(project: Project, fields: dict[str, str], external_id: str | None) -> Item:
    """An item as an import stored it before the per-row shortcuts: the hash of json.dumps over the sorted fields."""
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    eid = external_id or digest
    return Item.objects.create(
        project=project,
        external_id=eid,
        content_hash=digest,
        split=split_for(project.slug, eid),
        order_key=order_key(project.slug, eid),
        **fields,
    )


@pytest.mark.parametrize("kind", ["binary", "pairwise"])
def test_a_file_imported_before_is_unchanged_when_imported_again(kind, tmp_path):
    project = ProjectFactory(slug=f"stored-{kind}", kind=kind)
    names = ("input", "output_a", "output_b") if kind == "pairwise" else ("input", "output")
    rows = []
    for n, text in enumerate(TEXTS):
        fields = {name: f"{text} {name} {n}" for name in names}
        external_id = f"row-{n}" if n % 2 else None  # without an id, the content hash is the id
        before = _stored_as_before(project, fields, external_id)
        rows.append({**({"external_id": external_id} if external_id else {}), **fields})
        assert before.external_id == (external_id or before.content_hash)
    path = tmp_path / "again.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=n % 2 == 0) + "\n" for n, row in enumerate(rows)))
    report = file_import(project=project, kind="items", path=path)
    assert (report.n_new, report.n_unchanged, report.n_conflicts) == (0, len(TEXTS), 0)
    # And one changed character under the same id is a conflict, not "unchanged".
    rows[1][names[-1]] += "!"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert file_import(project=project, kind="items", path=path).n_conflicts == 1


@pytest.mark.postgres(reason="the statistics and the plan are PostgreSQL's")
def test_after_a_large_import_the_look_ups_use_the_unique_index_from_a_small_sample(
    django_capture_on_commit_callbacks, tmp_path: Path
):
    project = ProjectFactory(slug="large", kind="binary")
    n = import_items._ANALYZE_AFTER
    path = tmp_path / "large.jsonl"
    rows = ({"external_id": f"x-{i}", "input": "Q", "output": f"A{i}"} for i in range(n))
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert file_import(project=project, kind="items", path=path).n_new == n
    assert callbacks, "no ANALYZE after a large import"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n_distinct, array_length(histogram_bounds::text::text[], 1) FROM pg_stats "
            "WHERE tablename = 'annotate_item' AND attname = 'order_key'"
        )
        n_distinct, bounds = cursor.fetchone()
        # A histogram of target + 1 bounds: the cheap sample, not the default one (101 bounds).
        assert (n_distinct, bounds) == (-1, import_items._ANALYZE_STATISTICS_TARGET + 1)
        cursor.execute(
            "EXPLAIN SELECT external_id, content_hash, id FROM annotate_item WHERE project_id = %s "
            "AND external_id = ANY(%s)",
            [project.pk, [f"x-{i}" for i in range(0, n, n // 10)]],
        )
        plan = cursor.fetchone()[0]
    assert "item_external_id_unique" in plan, plan[:200]


@pytest.mark.postgres(reason="the statistics are PostgreSQL's")
def test_a_new_projects_first_import_refreshes_the_statistics_but_a_small_top_up_does_not(
    django_capture_on_commit_callbacks, tmp_path: Path
):
    # Found beside Label Studio: a fresh project of 2,000 items (under the 10,000 of a large import) kept the
    # planner's idea that it was empty, and each claim scanned and sorted every candidate (50 ms a submit).
    project = ProjectFactory(slug="fresh", kind="binary")
    path = tmp_path / "first.jsonl"
    path.write_text(
        "".join(json.dumps({"external_id": f"x-{i}", "input": "Q", "output": f"A{i}"}) + "\n" for i in range(2000))
    )
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert file_import(project=project, kind="items", path=path).n_new == 2000
    assert callbacks, "no ANALYZE after a new project's first import"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT most_common_vals::text FROM pg_stats WHERE tablename = 'annotate_item' AND attname = 'project_id'"
        )
        (common,) = cursor.fetchone()
    assert str(project.pk) in common  # the planner now knows the project is large
    path.write_text(
        "".join(json.dumps({"external_id": f"y-{i}", "input": "Q", "output": f"B{i}"}) + "\n" for i in range(50))
    )
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert file_import(project=project, kind="items", path=path).n_new == 50
    assert not callbacks, "50 items more do not change what the planner should think"


@pytest.mark.postgres(reason="the statistics are PostgreSQL's")
def test_an_import_of_a_fifth_of_what_the_planner_knows_refreshes_the_statistics_without_counting_the_project(
    django_capture_on_commit_callbacks, django_assert_max_num_queries, tmp_path: Path
):
    project = ProjectFactory(slug="known", kind="binary")
    path = tmp_path / "items.jsonl"
    path.write_text(_rows(2000))
    file_import(project=project, kind="items", path=path)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotate_item")
    assert import_items._planned_items(project) == 2000  # every row sampled: the estimate is exact
    # 500 new items are a fifth of the 2,500: refreshed. None of the statements reads the project's items to say so.
    path.write_text(_rows(500, start=2000))
    with django_capture_on_commit_callbacks(execute=False) as callbacks, connection.execute_wrapper(_no_count):
        assert file_import(project=project, kind="items", path=path).n_new == 500
    assert callbacks, "no ANALYZE after an import of a fifth of the project"
    # 400 more are not: under a fifth of the 2,900 (the planner scales its 2,000 by the table's growth).
    path.write_text(_rows(400, start=2500))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert file_import(project=project, kind="items", path=path).n_new == 400
    assert not callbacks


def _no_count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    assert "COUNT(" not in sql.upper(), sql
    return execute(sql, params, many, context)


def test_metadata_text_is_what_the_json_encoder_writes_and_refuses_nan_as_it_does():
    from annotate.imports.checking import _metadata_text

    for metadata in (
        {},
        {"model": "gpt", "trace": 12, "score": 0.1 + 0.2, "big": 10**30, "ok": True, "none": None},
        {"nested": {"list": [1, "two", {"three": [3.5e-9]}]}, "é": "漢字 👍🏽", "quote": '"\\\n\x01'},
    ):
        assert _metadata_text(metadata) == json.dumps(metadata, ensure_ascii=False, allow_nan=False)
    for bad in ({"x": float("nan")}, {"x": [float("inf")]}):
        with pytest.raises(ValueError):
            _metadata_text(bad)


def _rows(n: int, *, start: int = 0, suffix: str = "") -> str:
    return "".join(
        json.dumps({"external_id": f"r-{i}", "input": f"Q{i}", "output": f"A{i}{suffix}"}) + "\n"
        for i in range(start, start + n)
    )


def test_into_a_project_with_items_batches_write_while_the_next_is_checked_updates_included(monkeypatch, tmp_path):
    """Each batch's COPY stays open until the next look-up; updates and a bad row at the end still behave."""
    monkeypatch.setattr(import_items, "BATCH", 10)
    project = ProjectFactory(slug="batches", kind="binary")
    path = tmp_path / "items.jsonl"
    path.write_text(_rows(25))
    assert file_import(project=project, kind="items", path=path).n_new == 25
    # 35 rows in 4 batches: 5 changed (conflicts, updated), 20 unchanged, 10 new.
    path.write_text(_rows(5, suffix="!") + _rows(20, start=5) + _rows(10, start=25))
    report = file_import(project=project, kind="items", path=path, update=True)
    assert (report.n_new, report.n_unchanged, report.n_conflicts, report.n_updated) == (10, 20, 5, 5)
    outputs = dict(Item.objects.filter(project=project).values_list("external_id", "output"))
    assert len(outputs) == 35 and outputs["r-0"] == "A0!" and outputs["r-34"] == "A34"
    # A bad last row after three written batches: nothing of the file stays.
    path.write_text(_rows(30, start=100) + '{"input": ""}\n')
    with pytest.raises(import_items.ImportInvalid):
        file_import(project=project, kind="items", path=path)
    assert Item.objects.filter(project=project).count() == 35
