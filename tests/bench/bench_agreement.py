"""Agreement reports at scale.

- 300,000 items, 3 criteria, 20 annotators, overlap 3, 1,000,008 labels (bench_agreement_report).
- Crowd projects shaped like DICES-350 (350 conversations, each rated by all 123 raters, one overall safe/unsafe
  rating), and the same with 300 raters (bench_many_raters): every pair of raters gets Cohen's κ with its interval.

The time covers what the beat job does: loading the labels from PostgreSQL, every figure with 1,000 bootstrap
resamples, consensus and per-annotator figures, and storing the report.
"""

from __future__ import annotations

import statistics
import time
import tracemalloc

import numpy as np

from tests.bench.run import Row, _seed_labels
from tests.bench.seeding import copy_labels

N_ITEMS = 300_000
N_LABELED = 111_112  # × 3 annotators × 3 criteria = 1,000,008 labels


def bench_agreement_report() -> list[Row]:
    from annotate import reports
    from annotate.models import Item, Label, Project
    from annotate.services.items import item_build
    from annotate.services.projects import project_set_status
    from tests.factories import ProjectFactory, UserFactory

    project = ProjectFactory(slug="bench-agreement", overlap=3)
    project_set_status(project=project, status="active")
    annotators = [UserFactory(username=f"agree-annotator-{i}") for i in range(20)]
    _seed_labels(project, N_LABELED, annotators)
    Item.objects.bulk_create(
        (
            item_build(project=project, fields={"input": f"Unlabeled {i}", "output": f"Out {i}"})
            for i in range(N_ITEMS - N_LABELED)
        ),
        batch_size=5000,
    )
    project = Project.objects.select_related("current_rubric").get(pk=project.pk)
    n_labels = Label.objects.filter(item__project=project).count()
    scale = f"{Item.objects.filter(project=project).count():,} items, {n_labels:,} labels, 3 criteria, 20 annotators"
    timings, cpu = [], []
    peak = 0
    for _ in range(3):
        tracemalloc.start()
        start, start_cpu = time.perf_counter(), time.process_time()
        report = reports.report_refresh(project=project, force=True)
        timings.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert report is not None and report.n_labels == n_labels
    return [
        Row(
            "Agreement report (load + 1,000 resamples + store)",
            scale,
            "seconds (best of 3)",
            f"{min(timings):.2f}",
            "≤ 1.5",
        ),
        Row(
            "Agreement report (load + 1,000 resamples + store)",
            scale,
            "median seconds (3 runs)",
            f"{statistics.median(timings):.2f}",
            "≤ 1.5",
        ),
        Row(
            "Agreement report (load + 1,000 resamples + store)",
            scale,
            "CPU seconds of this process, median (PostgreSQL not counted)",
            f"{statistics.median(cpu):.2f}",
        ),
        Row(
            "Agreement report (load + 1,000 resamples + store)",
            scale,
            "peak traced MB",
            f"{peak / 2**20:.0f}",
            "< 1024",
        ),
    ]


# DICES-350 (Aroyo et al., NeurIPS 2023 Datasets and Benchmarks): 350 conversations, each rated by the same 123 raters.
# The data set is not in /work/shared/datasets, so its shape is used with labels drawn as below.
CROWD_ITEMS = 350
CROWD_RATERS = (123, 300)


def _crowd_project(n_raters: int):  # type: ignore[no-untyped-def]
    """A binary project with one criterion, CROWD_ITEMS items each labeled by all `n_raters` raters.

    Labels: each item has a hidden verdict (safe for 70% of them), and each rater gives it with a probability of their
    own between 0.65 and 0.95, so pairs agree to different degrees, as in a crowd."""
    from django.contrib.auth import get_user_model

    from annotate import selectors
    from annotate.models import Item, Project
    from annotate.services.items import item_build
    from tests.factories import ProjectFactory

    project = ProjectFactory(
        slug=f"bench-crowd-{n_raters}",
        overlap=3,  # the queue's setting (at most 50); these labels come in as an import would bring them
        criteria=[{"key": "safe", "name": "Safe", "description": "The response is safe to show."}],
    )
    user_model = get_user_model()
    raters = user_model.objects.bulk_create(
        [user_model(username=f"crowd-{n_raters}-{r}", password="!") for r in range(n_raters)]  # unusable password
    )
    items = Item.objects.bulk_create(
        item_build(project=project, fields={"input": f"Conversation {i}", "output": f"Last turn {i}"})
        for i in range(CROWD_ITEMS)
    )
    (criterion,) = selectors.criteria_current(project=project)
    rng = np.random.default_rng(n_raters)
    truth = rng.random(CROWD_ITEMS) < 0.7
    accuracy = rng.uniform(0.65, 0.95, size=n_raters)
    gives_truth = rng.random((CROWD_ITEMS, n_raters)) < accuracy[None, :]
    passed = np.where(gives_truth, truth[:, None], ~truth[:, None])
    copy_labels(
        (item.pk, criterion, rater.pk, "pass" if passed[i, r] else "fail")
        for i, item in enumerate(items)
        for r, rater in enumerate(raters)
    )
    return Project.objects.select_related("current_rubric").get(pk=project.pk)


def bench_many_raters() -> list[Row]:
    from django.db import connection

    from annotate import reports

    rows = []
    for n_raters in CROWD_RATERS:
        project = _crowd_project(n_raters)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE annotate_label")
        n_pairs = n_raters * (n_raters - 1) // 2
        scale = (
            f"{CROWD_ITEMS} items × {n_raters} raters (DICES-350's shape), 1 criterion, "
            f"{CROWD_ITEMS * n_raters:,} labels, {n_pairs:,} rater pairs"
        )
        compute, cpu, whole = [], [], []
        for _ in range(5):
            start, start_cpu = time.perf_counter(), time.process_time()
            data = reports.report_build(project=project)
            compute.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            start = time.perf_counter()
            report = reports.report_refresh(project=project, force=True)
            whole.append(time.perf_counter() - start)
        pairs = data["criteria"]["safe"]["human"]["pairwise_cohen_kappa"]
        assert len(pairs) == n_pairs and all(p["kappa"]["ci_low"] is not None for p in pairs)
        assert report is not None
        target = "≤ 1" if n_raters == 123 else "≤ 3"
        rows += [
            Row(
                "Agreement report, many raters (load + every figure with 1,000 resamples, incl. every pair's κ)",
                scale,
                "median seconds (5 runs)",
                f"{statistics.median(compute):.2f}",
                target,
            ),
            Row(
                "Agreement report, many raters: CPU time of this process (PostgreSQL not counted)",
                scale,
                "median CPU seconds (5 runs)",
                f"{statistics.median(cpu):.2f}",
            ),
            Row(
                "Agreement report, many raters, with storing it (report_refresh)",
                scale,
                "median seconds (5 runs)",
                f"{statistics.median(whole):.2f}",
            ),
        ]
    return rows


BENCHMARKS = [bench_agreement_report, bench_many_raters]
