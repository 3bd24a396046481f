"""How the agreement report reads labels: the PostgreSQL binary chunks against the ORM, and the dense codes."""

from __future__ import annotations

import datetime as dt
import threading

import numpy as np
import psycopg
import pytest
from django.db import connection

from annotate import reports
from annotate.models import Label
from tests.factories import ItemFactory, ProjectFactory, UserFactory, label

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("seed", range(4))
def test_dense_codes_are_numpys_unique(seed):
    rng = np.random.default_rng(seed)
    for values in (
        rng.integers(1000, 1200, size=500),  # ids in a narrow range: the lookup table
        rng.integers(0, 2**40, size=300),  # ids far apart: np.unique itself
        np.array([7]),
    ):
        values = values.astype(np.int64)
        distinct, inverse = reports.dense_codes(values)
        want_distinct, want_inverse = np.unique(values, return_inverse=True)
        assert distinct.tolist() == want_distinct.tolist() and inverse.tolist() == want_inverse.tolist()
    assert reports.dense_codes(np.zeros(0, dtype=np.int64))[0].size == 0


@pytest.mark.postgres(reason="the binary array chunks are PostgreSQL's; SQLite reads through the ORM")
@pytest.mark.parametrize("kind", ["binary", "pairwise"])
def test_the_binary_chunks_hold_what_the_orm_reads(kind, monkeypatch):
    """Every label of the version and nothing else (another project's labels interleave its ids), with its code, time
    (-1 where unknown) and hour, including labels a microsecond before and exactly on the hour, across many chunks
    and ranges without a label of this version."""
    monkeypatch.setattr(reports, "LABELS_CHUNK", 4)
    project = ProjectFactory(kind=kind)
    other = ProjectFactory(kind=kind)
    people = [UserFactory() for _ in range(3)]
    values = ["a", "b", "tie"] if kind == "pairwise" else ["pass", "fail"]
    hour = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    moments = [hour, hour - dt.timedelta(microseconds=1), hour + dt.timedelta(minutes=59, seconds=59)]
    n = 0
    for i in range(6):
        item, theirs = ItemFactory(project=project), ItemFactory(project=other)
        for person in people:
            for key in ("acceptable", "follows_instructions"):
                n += 1
                label(
                    item,
                    person,
                    key,
                    values[n % len(values)],
                    created_at=moments[n % 3] + dt.timedelta(days=i),
                    time_spent_ms=None if n % 4 == 0 else 1000 + n,
                )
                label(theirs, person, key, values[0])
        for _ in range(5):  # a run of the other project's labels: a range with none of this version's
            label(ItemFactory(project=other), people[0], "acceptable", values[0])
    version = project.current_rubric
    got, latest = reports._labels_binary_chunks(kind, version.pk)
    codes = reports.PAIRWISE_CODES if kind == "pairwise" else reports.BINARY_CODES
    want = sorted(
        (
            x.criterion_id,
            x.item_id,
            x.annotator_id,
            codes[x.value],
            -1 if x.time_spent_ms is None else x.time_spent_ms,
            int(x.created_at.timestamp() // 3600),
        )
        for x in Label.objects.filter(rubric_version=version)
    )
    assert len(want) == 36 and connection.vendor == "postgresql"
    assert sorted(zip(*(c.tolist() for c in got), strict=True)) == want
    assert latest == max(x.updated_at for x in Label.objects.filter(rubric_version=version))


@pytest.mark.postgres(reason="the second connection and its snapshot are PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_the_second_connection_reads_the_later_half_in_the_same_snapshot(monkeypatch):
    """Outside a transaction the later id ranges are read on a second connection: the labels come back as one
    connection reads them, in id order, and labels changed or deleted while they are read (after the id ranges are
    taken) are read as they were, as both connections read one snapshot: the report's count, latest change and
    figures agree."""
    monkeypatch.setattr(reports, "LABELS_CHUNK", 4)
    monkeypatch.setattr(reports, "PARALLEL_MIN_IDS", 1)
    project, other = ProjectFactory(), ProjectFactory()
    people = [UserFactory() for _ in range(3)]
    for i in range(8):
        item = ItemFactory(project=project)
        for n, person in enumerate(people):
            label(item, person, "acceptable", "pass" if (i + n) % 3 else "fail", time_spent_ms=100 * i + n)
        label(ItemFactory(project=other), people[0], "acceptable", "pass")
    version = project.current_rubric
    labels = Label.objects.filter(rubric_version=version).order_by("id")
    want = list(labels.values_list("criterion_id", "item_id", "annotator_id", "value", "time_spent_ms"))
    latest = max(x.updated_at for x in labels)
    changed, deleted = labels.first(), labels.last()  # one in each half
    second_halves = []
    read_chunks = reports._read_chunks
    changed_meanwhile = threading.Event()

    def labels_changed_meanwhile(raw, sql, params):
        # Committed on a connection of its own once the id ranges are taken and the snapshot exported, before either
        # connection reads a chunk.
        if threading.current_thread() is threading.main_thread():
            with psycopg.connect(**connection.get_connection_params()) as writer:
                writer.execute(
                    "UPDATE annotate_label SET value = CASE value WHEN 'pass' THEN 'fail' ELSE 'pass' END, "
                    "updated_at = now() WHERE id = %s",
                    [changed.pk],
                )
                writer.execute("DELETE FROM annotate_label WHERE id = %s", [deleted.pk])
            changed_meanwhile.set()
        else:
            assert changed_meanwhile.wait(10)
            second_halves.append(params[0])
        return read_chunks(raw, sql, params)

    monkeypatch.setattr(reports, "_read_chunks", labels_changed_meanwhile)
    arrays = reports.labels_load(project=project, rubric_version=version)
    assert len(second_halves) == 1 and len(second_halves[0]) >= 2
    got = list(
        zip(
            (arrays.criterion_ids[c] for c in arrays.criterion.tolist()),
            arrays.item_ids[arrays.item].tolist(),
            arrays.rater_ids[arrays.rater].tolist(),
            ("fail" if v == reports.agreement.FAIL else "pass" for v in arrays.value.tolist()),
            arrays.time_ms.tolist(),
            strict=True,
        )
    )
    assert got == want and len(want) == 24 and arrays.last_label_at == latest
    assert Label.objects.filter(rubric_version=version).count() == 23


@pytest.mark.django_db(transaction=True)
def test_a_version_without_labels_loads_as_empty_outside_a_transaction(monkeypatch):
    monkeypatch.setattr(reports, "PARALLEL_MIN_IDS", 1)
    project = ProjectFactory()
    arrays = reports.labels_load(project=project, rubric_version=project.current_rubric)
    assert arrays.value.size == 0 and arrays.item_ids.size == 0 and arrays.last_label_at is None
