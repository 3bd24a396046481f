"""A rubric edit on a project with a million labels (issue 15): the new version is made, the labels of the criteria it
keeps are copied into it (annotate.carry) and the queue's counters are recounted, in the one transaction of the
rubric change; and the criteria editor's review counts what the edit does to the labels."""

from __future__ import annotations

import copy
import time

from tests.bench.run import Row, _seed_labels

N_ITEMS = 166_667  # x 2 annotators x 3 criteria = 1,000,002 labels


def bench_rubric_edit_carry() -> list[Row]:
    from django.db import connection

    from annotate import carry
    from annotate.models import Label
    from annotate.services.rubrics import rubric_set_criteria
    from tests.factories import DEFAULT_CRITERIA, ProjectFactory, UserFactory

    project = ProjectFactory(slug="bench-carry", overlap=2)
    annotators = [UserFactory(username=f"bench-carry-{i}") for i in range(10)]
    _seed_labels(project, N_ITEMS, annotators)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotate_item")
        cursor.execute("ANALYZE annotate_label")
    project.refresh_from_db()
    n_labels = Label.objects.filter(rubric_version=project.current_rubric).count()
    criteria = copy.deepcopy(DEFAULT_CRITERIA)
    criteria[2]["description"] = "No factual or arithmetic error, checked against the source."
    scale = f"{n_labels:,} labels, 3 criteria, 1 reworded"

    started = time.perf_counter()
    consequence = carry.rubric_consequence(
        current=project.current_rubric, new=[(c["key"], c["name"], c["description"]) for c in criteria]
    )
    review = time.perf_counter() - started

    started = time.perf_counter()
    version = rubric_set_criteria(project=project, criteria=criteria)
    edit = time.perf_counter() - started
    n_carried = Label.objects.filter(rubric_version=version).count()
    return [
        Row("rubric edit: review", scale, "consequence counted for the review", f"{review * 1000:.0f} ms"),
        Row("rubric edit: review", scale, "what it says", consequence.sentence.replace("|", "/")),
        Row(
            "rubric edit: save",
            scale,
            "new version + labels carried + counters recounted (one transaction)",
            f"{edit:.1f} s",
            "seconds, not minutes",
        ),
        Row("rubric edit: save", scale, "labels carried into the new version", f"{n_carried:,}"),
    ]


BENCHMARKS = [bench_rubric_edit_carry]
