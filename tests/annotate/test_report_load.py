"""How the agreement report reads labels: the PostgreSQL binary chunks against the ORM, and the dense codes."""

from __future__ import annotations

import datetime as dt

import numpy as np
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
    got = reports._labels_binary_chunks(kind, version.pk)
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
