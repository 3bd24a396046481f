"""Starting, cancelling, finishing and reconciling judge runs.

How a run survives dead workers:
- A run is cut into chunks of items (RunChunk). Each chunk is a Celery task (acks_late) that claims its chunk with a
  conditional update carrying a fresh token, so a redelivered or re-enqueued message for a chunk someone is working
  on does nothing.
- Before calling, a chunk skips every (item, order) that already has a verdict, then answers what it can from the
  cache. Each answer is stored (verdict + cache row, one transaction) as soon as it arrives, and only then is its
  concurrency slot released: a worker killed mid-run leaves at most the endpoint's limit of calls unrecorded, and
  those are the only ones made twice.
- Verdicts are unique per (run, item, order) and inserted with ON CONFLICT DO NOTHING, so two workers can never store
  two answers for the same thing.
- A chunk reports a heartbeat while it works. The reconciler (beat) re-enqueues the chunks of runs whose verdicts
  stopped coming in, and hands back chunks whose worker went quiet.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Sequence
from functools import partial

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from annotate import enqueue
from annotate import selectors as annotate_selectors
from annotate.models import Item
from judges import llm, selectors
from judges.models import Judge, JudgeRun, JudgeVersion, RunChunk
from judges.services import Actor, actor_user
from judges.services.run_reports import run_report

logger = logging.getLogger(__name__)

# The task that works on a chunk (judges.tasks), sent by name: the tasks module imports the services.
CHUNK_TASK = "judges.tasks.judge_chunk_run"


def judge_run_start(
    *,
    version: JudgeVersion,
    scope: str = JudgeRun.Scope.DEV,
    item_ids: Sequence[int] | None = None,
    confirm_test: bool = False,
    actor: Actor | None = None,
) -> JudgeRun:
    """Start a run of `version` over the dev split (the default), all items, chosen items, or, only with
    `confirm_test`, the held-out test split. The test split stays held out in every scope: "all items" leaves its
    items out unless `confirm_test`, and chosen items that are in it are refused unless `confirm_test`. Any run with
    test items is a look at test: looks are numbered per judge and the number is shown everywhere.

    The chunks are enqueued after commit. Refused with ValidationError when the criterion is no longer in the rubric,
    the endpoint is not usable, there are no items, or the user started too many runs in the last hour.
    """
    project = version.judge.project
    if scope not in JudgeRun.Scope.values:
        raise ValidationError(f"Unknown scope {scope!r}.")
    if scope == JudgeRun.Scope.TEST and not confirm_test:
        raise ValidationError(
            "The test split is held out: run on dev while you tune the prompt. A run on test needs the explicit "
            "confirmation, and it is counted and shown."
        )
    if scope == JudgeRun.Scope.ITEMS:
        wanted = set(item_ids or [])
        if not wanted:
            raise ValidationError("Choose at least one item.")
        known = dict(Item.objects.filter(project=project, pk__in=wanted).values_list("pk", "split"))
        if missing := wanted - set(known):
            raise ValidationError(f"{len(missing)} of the chosen items are not in this project.")
        n_test = sum(1 for split in known.values() if split == Item.Split.TEST)
        if n_test and not confirm_test:
            raise ValidationError(
                f"{n_test} of the chosen items are in the held-out test split. Leave them out while you tune, or "
                "confirm on test (confirm_test), which counts this run as a look at test."
            )
    starter = actor_user(actor)
    if starter is not None:
        since = timezone.now() - dt.timedelta(hours=1)
        recent = JudgeRun.objects.filter(started_by=starter, created_at__gte=since).count()
        if recent >= settings.JUDGE_RUNS_PER_HOUR:
            raise ValidationError(f"You started {recent} runs in the last hour; wait a little before the next.")
    rubric_version = annotate_selectors.rubric_current(project=project)
    if rubric_version is None:
        raise ValidationError("The project has no rubric yet.")
    try:
        context = selectors.render_context(version=version, rubric_version=rubric_version)
    except (LookupError, llm.EndpointError) as exc:
        raise ValidationError(str(exc)) from None
    if not llm.endpoint_has_key(context.endpoint):
        raise ValidationError(f"The environment variable {context.endpoint.key_env} holding the key is not set.")
    items = list(selectors.items_for_scope(project=project, scope=scope, item_ids=item_ids, include_test=confirm_test))
    if not items:
        raise ValidationError(f"There are no items to judge in the {JudgeRun.Scope(scope).label.lower()}.")
    item_pks = [item.pk for item in items]
    planned = selectors.plan_calls(context, items)
    estimate = selectors.estimate_for(context=context, planned=planned, n_items=len(item_pks))
    price = selectors.price_for(version.model, endpoint=version.endpoint)
    size = settings.JUDGE_CHUNK_SIZE
    now = timezone.now()
    with transaction.atomic():
        Judge.objects.select_for_update().filter(pk=version.judge_id).first()
        n_test_items = sum(1 for item in items if item.split == Item.Split.TEST)
        test_number = None
        if n_test_items:
            test_number = selectors.test_runs_count(judge=version.judge) + 1
        run = JudgeRun.objects.create(
            project=project,
            version=version,
            rubric_version=rubric_version,
            scope=scope,
            n_test_items=n_test_items,
            test_run_number=test_number,
            n_items=len(item_pks),
            n_calls=len(planned),
            estimate=estimate.as_json(),
            price_in=price[0] if price else None,
            price_out=price[1] if price else None,
            started_by=starter,
        )
        chunks = RunChunk.objects.bulk_create(
            RunChunk(run=run, number=n, item_ids=item_pks[start : start + size], enqueued_at=now)
            for n, start in enumerate(range(0, len(item_pks), size))
        )
        for chunk in chunks:
            transaction.on_commit(partial(_chunk_send, chunk.pk))
    logger.info("judge run %s started: %s calls in %s chunks", run.pk, len(planned), len(chunks))
    return run


def _chunk_send(chunk_id: int) -> None:
    """Send a chunk to the workers. With the broker down the run stays recorded and queued: the chunk is marked never
    sent, and judge_runs_reconcile sends it as soon as the broker is back."""
    try:
        enqueue.send(CHUNK_TASK, chunk_id)
    except Exception:
        logger.warning("chunk %s not sent (broker unavailable); the reconciler will send it", chunk_id, exc_info=True)
        RunChunk.objects.filter(pk=chunk_id, state=RunChunk.State.QUEUED).update(enqueued_at=None)


def judge_run_cancel(*, run: JudgeRun) -> bool:
    """Stop a queued or running run. Calls already in flight finish and are stored (they are paid for)."""
    with transaction.atomic():
        changed = JudgeRun.objects.filter(pk=run.pk, status__in=JudgeRun.ACTIVE).update(
            status=JudgeRun.Status.CANCELLED, finished_at=timezone.now()
        )
        RunChunk.objects.filter(run=run, state=RunChunk.State.QUEUED).update(state=RunChunk.State.CANCELLED)
    run.refresh_from_db(fields=["status", "finished_at"])
    return bool(changed)


def run_fail(run_id: int, message: str) -> None:
    with transaction.atomic():
        JudgeRun.objects.filter(pk=run_id, status__in=JudgeRun.ACTIVE).update(
            status=JudgeRun.Status.FAILED, error=message[:300], finished_at=timezone.now()
        )
        RunChunk.objects.filter(run_id=run_id, state=RunChunk.State.QUEUED).update(state=RunChunk.State.CANCELLED)


def run_finish_if_complete(*, run_id: int) -> bool:
    """Close a running run whose chunks are all done: compute and store its report. Safe to call repeatedly."""
    chunks = Counter(RunChunk.objects.filter(run_id=run_id).values_list("state", flat=True))
    if chunks[RunChunk.State.FAILED]:
        run_fail(run_id, "A chunk of this run failed.")
        return False
    if set(chunks) - {RunChunk.State.DONE}:
        return False
    run = JudgeRun.objects.select_related("version__judge__project", "rubric_version").filter(pk=run_id).first()
    if run is None or run.status != JudgeRun.Status.RUNNING:
        return False
    report = run_report(run=run)
    return bool(
        JudgeRun.objects.filter(pk=run_id, status=JudgeRun.Status.RUNNING).update(
            status=JudgeRun.Status.DONE, report=report, finished_at=timezone.now()
        )
    )


def judge_runs_reconcile(*, stale_seconds: int | None = None) -> int:
    """Repair runs whose workers died. Returns how many chunk messages were sent again.

    A chunk whose worker stopped beating its heartbeat goes back to the queue and is sent again at once; if that
    worker is alive after all, its token no longer matches and it stops at its next write. The queued chunks of a run
    whose verdicts stopped coming in are sent again (a lost or purged message), at most once per stale period; a
    message for a chunk someone already claimed does nothing. A run whose chunks all finished but which was never
    closed is closed. Beat runs this every JUDGE_RECONCILE_SECONDS; it is safe to run any number of times.
    """
    stale_seconds = settings.JUDGE_STALE_SECONDS if stale_seconds is None else stale_seconds
    now = timezone.now()
    stale = now - dt.timedelta(seconds=stale_seconds)
    active = JudgeRun.objects.filter(status__in=JudgeRun.ACTIVE)
    RunChunk.objects.filter(run__in=active, state=RunChunk.State.RUNNING, heartbeat_at__lt=stale).update(
        state=RunChunk.State.QUEUED, token="", enqueued_at=None
    )
    stalled = active.exclude(progress_at__gte=stale).exclude(progress_at__isnull=True, created_at__gte=stale)
    again = list(
        RunChunk.objects.filter(run__in=active, state=RunChunk.State.QUEUED)
        .filter(Q(enqueued_at__isnull=True) | Q(run__in=stalled, enqueued_at__lt=stale))
        .values_list("run_id", "pk")
    )
    RunChunk.objects.filter(pk__in=[pk for _, pk in again]).update(enqueued_at=now)
    for _run_id, chunk_id in again:
        enqueue.send(CHUNK_TASK, chunk_id)
    for run_id in sorted({run_id for run_id, _ in again}):
        logger.warning("judge run %s: re-enqueued chunks of dead or lost workers", run_id)
    for run_id in active.filter(status=JudgeRun.Status.RUNNING).values_list("pk", flat=True):
        run_finish_if_complete(run_id=run_id)
    return len(again)
