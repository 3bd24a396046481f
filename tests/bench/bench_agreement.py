"""A full agreement report at scale: 300,000 items, 3 criteria, 20 annotators, overlap 3, 1,000,008 labels.

The time covers what the beat job does: loading the labels from PostgreSQL, every figure with 1,000 bootstrap
resamples, consensus and per-annotator figures, and storing the report.
"""

from __future__ import annotations

import time
import tracemalloc

from tests.bench.run import Row, _seed_labels

N_ITEMS = 300_000
N_LABELED = 111_112  # × 3 annotators × 3 criteria = 1,000,008 labels


def bench_agreement_report() -> list[Row]:
    from annotate import reports, services
    from annotate.models import Item, Label, Project
    from tests.factories import ProjectFactory, UserFactory

    project = ProjectFactory(slug="bench-agreement", overlap=3)
    services.project_set_status(project=project, status="active")
    annotators = [UserFactory(username=f"agree-annotator-{i}") for i in range(20)]
    _seed_labels(project, N_LABELED, annotators)
    Item.objects.bulk_create(
        (
            services.item_build(project=project, fields={"input": f"Unlabeled {i}", "output": f"Out {i}"})
            for i in range(N_ITEMS - N_LABELED)
        ),
        batch_size=5000,
    )
    project = Project.objects.select_related("current_rubric").get(pk=project.pk)
    n_labels = Label.objects.filter(item__project=project).count()
    scale = f"{Item.objects.filter(project=project).count():,} items, {n_labels:,} labels, 3 criteria, 20 annotators"
    timings = []
    peak = 0
    for _ in range(3):
        tracemalloc.start()
        start = time.perf_counter()
        report = reports.report_refresh(project=project, force=True)
        timings.append(time.perf_counter() - start)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert report is not None and report.n_labels == n_labels
    return [
        Row(
            "Agreement report (load + 1,000 resamples + store)",
            scale,
            "seconds (best of 3)",
            f"{min(timings):.2f}",
            "≤ 3",
        ),
        Row(
            "Agreement report (load + 1,000 resamples + store)",
            scale,
            "peak traced MB",
            f"{peak / 2**20:.0f}",
            "< 1024",
        ),
    ]


BENCHMARKS = [bench_agreement_report]
