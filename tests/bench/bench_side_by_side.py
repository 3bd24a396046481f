"""The annotator's round trip beside Label Studio, on the same 100,000 pairwise tasks (issue 17's comparison).

Both tools get the same rows (bench_imports' generator): annotate through its import command, Label Studio through its
import API. Then one annotator on each, one request at a time over HTTP on loopback, in alternating batches so that
both see the same machine load. Per item:
- annotate: the htmx POST of the labeling form (three pairwise criteria), whose answer renders the next item;
- Label Studio: what its labeling stream does per item, POST /api/tasks/<id>/annotations/?project=<pid> with a
  `result` for each of three Choices controls (the same three criteria), then GET /api/projects/<pid>/next/.
Afterwards each side's stored labels are counted against the submits it answered.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.bench.bench_imports import _batches, _write_pairwise
from tests.bench.label_studio import CRITERIA, SKIPPED, LabelStudio, label_studio
from tests.bench.labeling_http import GUNICORN_ARGS, PASSWORD, Annotator, access_log, form_fields, gunicorn
from tests.bench.run import Row, _percentile

N_TASKS = int(os.environ.get("BENCH_SIDE_BY_SIDE_TASKS", 100_000))
WARMUP = 20  # submits per side before the measured batches (process caches, connections)
BATCHES = 10
BATCH = 30
TITLE = "Submit + next item over HTTP, side by side"


class LabelStudioAnnotator:
    """One Label Studio annotator over a keep-alive connection, doing per item what its labeling stream does."""

    def __init__(self, ls: LabelStudio, project_id: int) -> None:
        parts = ls.url.split("://", 1)[1]
        host, _, port = parts.partition(":")
        self.conn = http.client.HTTPConnection(host, int(port or 80), timeout=120)
        self.headers = {"Authorization": f"Token {ls.token}", "Content-Type": "application/json"}
        self.project_id = project_id
        self.shown_at = time.monotonic()

    def _json(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body)
        try:
            self.conn.request(method, path, body=data, headers=self.headers)
            response = self.conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            self.conn.close()  # the server closed the keep-alive connection: send it again on a new one
            self.conn.request(method, path, body=data, headers=self.headers)
            response = self.conn.getresponse()
        text = response.read()
        if response.status >= 300:
            raise RuntimeError(f"Label Studio answered {response.status} to {method} {path}: {text[:300]!r}")
        return json.loads(text or b"{}")

    def next_task(self) -> int:
        task = self._json("GET", f"/api/projects/{self.project_id}/next/")
        self.shown_at = time.monotonic()
        return int(task["id"])

    def submit(self, task_id: int, choice: str) -> int:
        """The annotation as its editor posts it (one `choices` result per control, lead time in seconds), then the
        next task of the stream; returns that task's id."""
        result = [
            {
                "id": uuid.uuid4().hex[:10],
                "from_name": key,
                "to_name": "input",
                "type": "choices",
                "value": {"choices": [choice]},
                "origin": "manual",
            }
            for key in CRITERIA
        ]
        body = {
            "result": result,
            "lead_time": time.monotonic() - self.shown_at,
            "was_cancelled": False,
            "ground_truth": False,
            "project": str(self.project_id),
        }
        self._json("POST", f"/api/tasks/{task_id}/annotations/?project={self.project_id}", body)
        return self.next_task()


def _annotate_project(path: Path):
    """A pairwise project with the file's items imported by the import command, and one annotator."""
    from django.core.management import call_command

    from annotate.models import Membership, Project
    from annotate.services.projects import project_set_status
    from tests.factories import ProjectFactory, UserFactory, membership

    project = ProjectFactory(slug="bench-side-by-side", kind="pairwise", overlap=1)
    call_command("import_items", project.slug, str(path), "--no-progress", stdout=io.StringIO())
    project_set_status(project=project, status="active")
    user = UserFactory(username="bench-side-by-side-annotator")
    user.set_password(PASSWORD)
    user.save(update_fields=["password"])
    membership(user, project, Membership.Role.ANNOTATOR)
    return Project.objects.get(pk=project.pk), user


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def bench_round_trip_side_by_side() -> list[Row]:
    from annotate import selectors
    from annotate.models import Item, Label

    rows: list[Row] = []
    with label_studio() as ls, tempfile.TemporaryDirectory() as tmp:
        if ls is None:
            print(f"  {SKIPPED}", flush=True)
            return [Row(TITLE, f"{N_TASKS:,} pairwise tasks", "ratios", SKIPPED)]
        path = Path(tmp) / "items.jsonl"
        _write_pairwise(path, N_TASKS, seed=3)
        project, user = _annotate_project(path)
        assert Item.objects.filter(project=project).count() == N_TASKS
        ls_project = ls.create_project(f"bench-side-by-side-{os.getpid()}")
        ls.import_tasks(ls_project, _batches(path, 5_000), N_TASKS)
        keys = [c.key for c in selectors.criteria_of_version(project.current_rubric_id)]
        assert sorted(keys) == sorted(CRITERIA), keys  # the same three judgements on both sides

        log = Path(tmp) / "access.log"
        with gunicorn(access_log=log) as server:
            ours = Annotator(server.port, user.username, project.slug, form={f"c-{k}": "left" for k in keys})
            current, prefetched = ours.start()
            theirs = LabelStudioAnnotator(ls, ls_project)
            task = theirs.next_task()
            ours_ms: list[float] = []
            theirs_ms: list[float] = []

            def annotate_one() -> None:
                nonlocal current, prefetched
                assert current is not None, "annotate's queue ran out"
                status, text = ours.submit(current, prefetched)
                assert status == 200, (status, text[:300])
                current, prefetched = prefetched, form_fields(text)

            def label_studio_one() -> None:
                nonlocal task
                task = theirs.submit(task, "A")

            for _ in range(WARMUP):
                annotate_one()
                label_studio_one()
            load = [os.getloadavg()[0]]
            for _ in range(BATCHES):
                ours_ms += [_timed(annotate_one) for _ in range(BATCH)]
                theirs_ms += [_timed(label_studio_one) for _ in range(BATCH)]
                load.append(os.getloadavg()[0])
        submits = WARMUP + BATCHES * BATCH
        # gunicorn's own time for the same submits (%(D)s: request parsed to response written), warm-up left out.
        served = [line.ms for line in access_log(log) if line.method == "POST" and "/label/" in line.path][WARMUP:]

        # What each side stored: a label per criterion per submit here, an annotation per submit there.
        labeled_items = Label.objects.filter(item__project=project, annotator=user).values("item_id").distinct().count()
        labels = Label.objects.filter(item__project=project, annotator=user).count()
        stats = ls.call("GET", f"/api/projects/{ls_project}")
        ls_annotations, ls_tasks = stats["total_annotations_number"], stats["num_tasks_with_annotations"]

    where = (
        f"{N_TASKS:,} pairwise tasks each, 3 criteria; 1 annotator each, one request at a time on loopback, "
        f"{BATCHES} alternating batches of {BATCH} after {WARMUP} warm-up each; "
        f"load average {min(load):.1f}–{max(load):.1f}"
    )
    ours_where = f"{where}; htmx POST of the label form answering the next item, gunicorn {' '.join(GUNICORN_ARGS)}"
    theirs_where = (
        f"{where}; POST /api/tasks/<id>/annotations/?project=<pid> (3 Choices results) + "
        f"GET /api/projects/<pid>/next/, timed together; {ls.served_by}"
    )
    ours_p50, ours_p95 = statistics.median(ours_ms), _percentile(ours_ms, 0.95)
    theirs_p50, theirs_p95 = statistics.median(theirs_ms), _percentile(theirs_ms, 0.95)
    rows += [
        Row(f"{TITLE}: annotate", ours_where, "client p50 ms", f"{ours_p50:.1f}"),
        Row(f"{TITLE}: annotate", ours_where, "client p95 ms", f"{ours_p95:.1f}"),
        Row(f"{TITLE}: annotate", ours_where, "gunicorn %(D)s p50 ms", f"{statistics.median(served):.1f}"),
        Row(f"{TITLE}: Label Studio", theirs_where, "client p50 ms", f"{theirs_p50:.1f}"),
        Row(f"{TITLE}: Label Studio", theirs_where, "client p95 ms", f"{theirs_p95:.1f}"),
        Row(f"{TITLE}: ratio", where, "Label Studio ÷ annotate, p50", f"{theirs_p50 / ours_p50:.1f}", ">= 50"),
        Row(f"{TITLE}: ratio", where, "Label Studio ÷ annotate, p95", f"{theirs_p95 / ours_p95:.1f}", ">= 40"),
        Row(
            f"{TITLE}: labels stored after",
            f"{submits} submits each (warm-up included)",
            "annotate items labeled / labels ÷ 3 / submits",
            f"{labeled_items} / {labels // 3} / {submits}",
            "equal",
        ),
        Row(
            f"{TITLE}: labels stored after",
            f"{submits} submits each (warm-up included)",
            "Label Studio annotations / tasks annotated / submits",
            f"{ls_annotations} / {ls_tasks} / {submits}",
            "equal",
        ),
    ]
    return rows


BENCHMARKS: list[Callable[[], list[Row]]] = [bench_round_trip_side_by_side]
