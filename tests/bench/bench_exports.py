"""Export at scale: 111,112 items, 3 criteria, overlap 3 (1,000,008 labels) as JSON Lines with every label.

The export runs as a lead would run it, `manage.py export_labels ... --individual` in its own process, so the peak
RSS is the command's alone (ru_maxrss of the children: no other benchmark starts a child before this one).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.run import ROOT, Row, _seed_labels

N_LABELED = 111_112  # × 3 annotators × 3 criteria = 1,000,008 labels


def bench_export_labels() -> list[Row]:
    from annotate import services
    from annotate.models import Label
    from tests.factories import ProjectFactory, UserFactory

    project = ProjectFactory(slug="bench-export", overlap=3)
    services.project_set_status(project=project, status="active")
    annotators = [UserFactory(username=f"export-annotator-{i}") for i in range(20)]
    _seed_labels(project, N_LABELED, annotators)
    n_labels = Label.objects.filter(item__project=project).count()
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "export.jsonl"
        command = [sys.executable, "manage.py", "export_labels", project.slug, "--format", "jsonl", "--individual"]
        start = time.perf_counter()
        subprocess.run([*command, "-o", str(target)], cwd=ROOT, env=os.environ.copy(), check=True)
        elapsed = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        manifest = json.loads(Path(f"{target}.manifest.json").read_text())
        size_mb = target.stat().st_size / 2**20
    assert manifest["counts"]["individual_labels"] == n_labels
    scale = f"{N_LABELED:,} items, {n_labels:,} labels, 3 criteria, JSONL --individual ({size_mb:.0f} MB)"
    return [
        Row(
            "Export (manage.py export_labels, whole process)",
            scale,
            "labels/s",
            f"{n_labels / elapsed:,.0f}",
            "≥ 100,000",
        ),
        Row("Export (manage.py export_labels, whole process)", scale, "peak RSS MB", f"{peak_mb:.0f}", "< 300"),
    ]


BENCHMARKS = [bench_export_labels]
