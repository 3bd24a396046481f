"""An annotator far ahead of the others: what each submit costs them as their own half-complete items pile up.

In a project with overlap ≥ 2, the queue serves items closest to complete first (n_submitted DESC). The items this
annotator labeled and nobody else has yet sit at the head of that order, and each claim walks past them before it
reaches one they can take: a cost per such item. One annotator alone in an overlap-2 project of 20,000 items submits
through the service the labeling page calls (label_submit_then_next); the median of 50 submits is taken at each
number of own half-complete items. Figures in process: no HTTP, so they show the database's share.

The statistics are taken before any label, as a new project's are. In production autovacuum then ANALYZEs the label
and item tables after 1% of their rows (at least 1,000) changed (migration 0014), and that also makes PostgreSQL plan
the prepared claim again. This machine's PostgreSQL runs with autovacuum off, so the benchmark ANALYZEs as autovacuum
would, every 1,000 labels (outside the timed submits). Without it, a generic plan made while the label table was
nearly empty (a sequential scan per candidate) would stay in use on this one connection and grow with every label.
"""

from __future__ import annotations

import statistics
import time

from tests.bench.run import Row

N_ITEMS = 20_000
CHECKPOINTS = (0, 1_000, 2_000, 4_000, 8_000)
SAMPLE = 50
ANALYZE_EVERY = 334  # submits of 3 labels: autovacuum's threshold here, 1,000 labels


def bench_claim_own_pending() -> list[Row]:
    from django.db import connection

    from annotate import selectors
    from annotate.models import Item, Membership, Project
    from annotate.services.items import item_build
    from annotate.services.labels import label_submit_then_next
    from annotate.services.projects import project_set_status
    from annotate.services.queue import queue_claim
    from tests.factories import ProjectFactory, UserFactory, membership

    project = ProjectFactory(slug="bench-own-pending", overlap=2)
    project_set_status(project=project, status="active")
    project = Project.objects.select_related("current_rubric").get(pk=project.pk)
    Item.objects.bulk_create(
        (item_build(project=project, fields={"input": f"In {i}", "output": f"Out {i}"}) for i in range(N_ITEMS)),
        batch_size=5000,
    )
    with connection.cursor() as cursor:
        # Statistics taken before any label, as a new project on a busy database has them for a while.
        cursor.execute("ANALYZE annotate_item")
        cursor.execute("ANALYZE annotate_label")
    annotator = UserFactory(username="bench-own-pending-annotator")
    membership(annotator, project, Membership.Role.ANNOTATOR)
    criteria = list(selectors.criteria_of_version(project.current_rubric_id))
    values = {c.key: "pass" for c in criteria}
    item = queue_claim(project=project, annotator=annotator, rubric_version_id=project.current_rubric_id)
    medians: dict[int, float] = {}
    times: list[float] = []
    done = 0
    while done < CHECKPOINTS[-1] + SAMPLE:
        assert item is not None, "the queue ran out"
        if done and done % ANALYZE_EVERY == 0:
            with connection.cursor() as cursor:  # what autovacuum would do (see above), not timed
                cursor.execute("ANALYZE annotate_label")
                cursor.execute("ANALYZE annotate_item")
        start = time.perf_counter()
        _outcome, item = label_submit_then_next(
            project=project,
            annotator=annotator,
            item_id=item.pk,
            criteria=criteria,
            values=values,
            holding=[item.pk],
        )
        times.append((time.perf_counter() - start) * 1000)
        done += 1
        for checkpoint in CHECKPOINTS:
            if done == checkpoint + SAMPLE:
                medians[checkpoint] = statistics.median(times[-SAMPLE:])
    title = "Submit + next item, an annotator ahead of the others (in process)"
    scale = f"{N_ITEMS:,} items, overlap 2, one annotator; median of {SAMPLE} submits"
    rows = [Row(title, scale, f"ms at {n:,} own half-complete items", f"{ms:.1f}") for n, ms in medians.items()]
    slope = (medians[CHECKPOINTS[-1]] - medians[0]) / CHECKPOINTS[-1] * 1000
    rows.append(Row(title, scale, "µs more per own half-complete item", f"{slope:.2f}"))
    return rows


BENCHMARKS = [bench_claim_own_pending]
