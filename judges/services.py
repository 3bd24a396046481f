"""Writes for judges. Views, tasks, the run_judge command and the API all call these; nothing else writes these models.

Runs, and how they survive dead workers:
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
import queue
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.models import User as AuthUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from annotate import carry, reports
from annotate import selectors as annotate_selectors
from annotate.models import Item, Project, RubricVersion
from annotate.stats import agreement, reference
from judges import calls, llm, prompts, selectors, single_flight
from judges.models import CachedCompletion, FewShotExample, Judge, JudgeRun, JudgeVersion, RunChunk, Verdict

if TYPE_CHECKING:
    from celery.contrib.django.task import DjangoTask

logger = logging.getLogger(__name__)

MAX_EXAMPLES = 20
BINARY_VERDICTS = ("pass", "fail")
PAIRWISE_VERDICTS = ("a", "b", "tie")

Actor = AuthUser | AnonymousUser


def _actor(actor: Actor | None) -> AuthUser | None:
    return actor if isinstance(actor, AuthUser) and actor.is_authenticated else None


# --- Judges and versions --------------------------------------------------------------------------------------


def judge_create(*, project: Project, criterion_key: str, name: str = "", actor: Actor | None = None) -> Judge:
    """The judge of one criterion of the project's current rubric. A criterion has at most one judge."""
    criterion = annotate_selectors.criteria_current(project=project).filter(key=criterion_key).first()
    if criterion is None:
        raise ValidationError(f"The current rubric has no criterion {criterion_key!r}.")
    try:
        with transaction.atomic():
            return Judge.objects.create(
                project=project,
                criterion_key=criterion_key,
                name=(name or criterion.name)[:200],
                created_by=_actor(actor),
            )
    except IntegrityError:
        raise ValidationError(f"The criterion “{criterion.name}” already has a judge: add a version to it.") from None


TARGET_FIELDS = ("target_tpr", "target_tnr", "target_kappa", "target_accuracy")
TARGET_NUMBERS = {
    Judge.Target.TPR_TNR: ("target_tpr", "target_tnr"),
    Judge.Target.KAPPA: ("target_kappa",),
    Judge.Target.ACCURACY: ("target_accuracy",),
}


def judge_target_set(
    *, judge: Judge, target: str, numbers: dict[str, float | None], single_label_reference: bool | None = None
) -> Judge:
    """Set the bar a run must clear for the judge to count as calibrated. Numbers the kind of target does not use are
    cleared, so what is stored is exactly the target shown; the ranges are checked by Postgres constraints.

    `single_label_reference` (None: unchanged) says whether items with one human label and no gold label serve as the
    human reference for the judge's figures. It applies to runs that finish from now on: a finished run's report keeps
    the setting it was computed with, and its pages follow the report (selectors.single_labels_serve)."""
    if target not in Judge.Target.values:
        raise ValidationError(f"Unknown target {target!r}.")
    if target == Judge.Target.TPR_TNR and judge.project.is_pairwise:
        raise ValidationError("TPR and TNR targets apply to pass/fail judges only.")
    used = TARGET_NUMBERS.get(Judge.Target(target), ())
    fields = {name: (numbers.get(name) if name in used else None) for name in TARGET_FIELDS}
    if missing := [name for name in used if fields[name] is None]:
        raise ValidationError(f"This target needs {', '.join(missing)}.")
    settings_: dict[str, object] = {"target": target, **fields}
    if single_label_reference is not None:
        settings_["single_label_reference"] = single_label_reference
    Judge.objects.filter(pk=judge.pk).update(**settings_)
    judge.refresh_from_db(fields=list(settings_))
    return judge


@dataclass(frozen=True)
class ExampleData:
    external_id: str
    verdict: str
    reasoning: str = ""


def examples_parse(text: str) -> tuple[list[ExampleData], list[str]]:
    """Read the editor's few-shot box: one example per line, `EXTERNAL_ID VERDICT` then optionally `| reasoning`."""
    examples, problems = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        head, _, reasoning = line.partition("|")
        parts = head.split()
        if len(parts) != 2:
            problems.append(f"Examples, line {n}: write the item's external id, then its verdict (and | reasoning).")
            continue
        examples.append(ExampleData(external_id=parts[0], verdict=parts[1], reasoning=reasoning.strip()))
    return examples, problems


def _check_examples(
    *, project: Project, examples: Sequence[ExampleData]
) -> tuple[list[tuple[Item, str, str]], list[str]]:
    """The examples' items and canonical verdicts, or problems. Only train items qualify: dev and test stay unseen."""
    problems: list[str] = []
    if len(examples) > MAX_EXAMPLES:
        problems.append(f"At most {MAX_EXAMPLES} few-shot examples.")
    allowed = PAIRWISE_VERDICTS if project.is_pairwise else BINARY_VERDICTS
    items = {
        i.external_id: i
        for i in Item.objects.filter(project=project, external_id__in=[e.external_id for e in examples])
    }
    found: list[tuple[Item, str, str]] = []
    seen: set[str] = set()
    for example in examples:
        item = items.get(example.external_id)
        verdict = example.verdict.strip().lower()
        if item is None:
            problems.append(f"Example {example.external_id!r}: no such item in this project.")
        elif item.split != Item.Split.TRAIN:
            problems.append(
                f"Example {example.external_id!r} is in the {item.split} split: few-shot examples may only come from "
                f"train, so that dev and test stay unseen by the prompt."
            )
        elif verdict not in allowed:
            problems.append(f"Example {example.external_id!r}: the verdict must be one of {', '.join(allowed)}.")
        elif example.external_id in seen:
            problems.append(f"Example {example.external_id!r} is listed twice.")
        else:
            found.append((item, verdict, example.reasoning[:2000]))
        seen.add(example.external_id)
    return found, problems


def examples_problems(*, project: Project, examples: Sequence[ExampleData]) -> list[str]:
    """What is wrong with these few-shot examples (for the editor; judge_version_create checks the same)."""
    return _check_examples(project=project, examples=examples)[1]


def judge_version_create(
    *,
    judge: Judge,
    user_template: str,
    system_template: str = "",
    endpoint: str,
    model: str,
    temperature: float = 0.0,
    max_tokens: int = 400,
    examples: Sequence[ExampleData] = (),
    allow_alias: bool = False,
    parent: JudgeVersion | None = None,
    change_note: str = "",
    actor: Actor | None = None,
) -> JudgeVersion:
    """A new version of the judge: version n+1, whose parent is the version it was edited from. Versions are never
    edited in place, so every verdict refers to exactly the prompt that produced it.

    Every problem is reported at once (ValidationError with one message each): unknown placeholders by name, a
    floating model alias without the override, an endpoint not configured, few-shot examples outside train.
    """
    project = judge.project
    problems = prompts.version_problems(
        system=system_template, user=user_template, kind=project.kind, n_examples=len(examples)
    )
    model = model.strip()
    is_alias = not prompts.model_is_pinned(model)
    if not model:
        problems.append("Name the model, as a dated snapshot such as gpt-4o-2024-08-06.")
    elif is_alias and not allow_alias:
        problems.append(
            f"{model!r} is a floating alias: the model behind it can change without notice. Use a dated snapshot "
            f"(such as gpt-4o-2024-08-06), or tick the override to accept the risk."
        )
    try:
        llm.endpoint_get(endpoint)
    except llm.EndpointError as exc:
        problems.append(str(exc))
    if not 0 <= temperature <= 2:
        problems.append("The temperature must be between 0 and 2.")
    if not 1 <= max_tokens <= 32000:
        problems.append("Max tokens must be between 1 and 32000.")
    if parent is not None and parent.judge_id != judge.pk:
        problems.append("The parent version belongs to another judge.")
    if parent is not None and not change_note.strip():
        problems.append("Say what changed from the parent version (the change note).")
    found, example_problems = _check_examples(project=project, examples=examples)
    problems += example_problems
    if problems:
        raise ValidationError(problems)
    with transaction.atomic():
        # Lock the judge so two editors cannot both create version n+1.
        Judge.objects.select_for_update().filter(pk=judge.pk).first()
        last = JudgeVersion.objects.filter(judge=judge).order_by("-number").values_list("number", flat=True).first()
        version = JudgeVersion.objects.create(
            judge=judge,
            number=(last or 0) + 1,
            parent=parent,
            change_note=change_note.strip()[:500],
            system_template=system_template,
            user_template=user_template,
            endpoint=endpoint,
            model=model,
            model_is_alias=is_alias,
            temperature=temperature,
            max_tokens=max_tokens,
            created_by=_actor(actor),
        )
        FewShotExample.objects.bulk_create(
            FewShotExample(version=version, item=item, position=n, verdict=verdict, reasoning=reasoning)
            for n, (item, verdict, reasoning) in enumerate(found)
        )
    return version


# --- Starting and cancelling runs -----------------------------------------------------------------------------


def _chunk_task() -> DjangoTask[[int], str]:
    from judges import tasks  # tasks import this module, so not at the top

    return tasks.judge_chunk_run


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
    starter = _actor(actor)
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
        _chunk_task().delay(chunk_id)
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


def _run_fail(run_id: int, message: str) -> None:
    with transaction.atomic():
        JudgeRun.objects.filter(pk=run_id, status__in=JudgeRun.ACTIVE).update(
            status=JudgeRun.Status.FAILED, error=message[:300], finished_at=timezone.now()
        )
        RunChunk.objects.filter(run_id=run_id, state=RunChunk.State.QUEUED).update(state=RunChunk.State.CANCELLED)


# --- Working on chunks (the Celery task's body) ---------------------------------------------------------------


def _claim(chunk_id: int, token: str) -> bool:
    """Claim a queued chunk, or take over one whose worker went quiet (a redelivered message after a crash)."""
    now = timezone.now()
    fields = {"state": RunChunk.State.RUNNING, "token": token, "heartbeat_at": now, "attempts": F("attempts") + 1}
    if RunChunk.objects.filter(pk=chunk_id, state=RunChunk.State.QUEUED).update(**fields):
        return True
    stale = now - dt.timedelta(seconds=settings.JUDGE_STALE_SECONDS)
    return bool(
        RunChunk.objects.filter(pk=chunk_id, state=RunChunk.State.RUNNING, heartbeat_at__lt=stale).update(**fields)
    )


def _claim_next(run_id: int, token: str) -> RunChunk | None:
    """Claim the run's next queued chunk, or None. SKIP LOCKED: concurrent workers each get a different one."""
    with transaction.atomic():
        chunk = (
            RunChunk.objects.select_for_update(skip_locked=True)
            .filter(run_id=run_id, state=RunChunk.State.QUEUED)
            .order_by("number")
            .first()
        )
        if chunk is None:
            return None
        RunChunk.objects.filter(pk=chunk.pk).update(
            state=RunChunk.State.RUNNING, token=token, heartbeat_at=timezone.now(), attempts=F("attempts") + 1
        )
    chunk.attempts += 1
    return chunk


def _chunk_set(chunk_id: int, token: str, state: str) -> None:
    RunChunk.objects.filter(pk=chunk_id, token=token, state=RunChunk.State.RUNNING).update(state=state)


def judge_chunk_process(*, chunk_id: int) -> str:
    """Judge the items of one chunk, then of further queued chunks of the same run while the thread pool has room.
    Safe to call any number of times, concurrently too. Returns what happened (for the task's log)."""
    token = uuid.uuid4().hex
    if not _claim(chunk_id, token):
        return "not claimed"
    chunk = RunChunk.objects.select_related("run__version__judge__project", "run__rubric_version").get(pk=chunk_id)
    run = chunk.run
    if run.status not in JudgeRun.ACTIVE:
        _chunk_set(chunk_id, token, RunChunk.State.CANCELLED)
        return "run not active"
    now = timezone.now()
    JudgeRun.objects.filter(pk=run.pk, status=JudgeRun.Status.QUEUED).update(
        status=JudgeRun.Status.RUNNING, started_at=now, progress_at=now
    )
    worker: _Worker | None = None
    try:
        worker = _Worker(run, token)
        outcome = worker.work(chunk)
    except (LookupError, llm.EndpointError) as exc:
        for held in worker.held if worker else {chunk_id}:
            _chunk_set(held, token, RunChunk.State.FAILED)
        _run_fail(run.pk, str(exc))
        return "failed"
    except BaseException:
        # Hand the chunks back (attempts counted, so a chunk that always fails ends its run): the reconciler sends
        # them again on its next round.
        RunChunk.objects.filter(pk__in=worker.held if worker else {chunk_id}, token=token).update(
            state=RunChunk.State.QUEUED, token="", enqueued_at=None
        )
        raise
    leftover = {"cancelled": RunChunk.State.CANCELLED, "fatal": RunChunk.State.FAILED}.get(outcome)
    if leftover is not None:
        for held in worker.held:
            _chunk_set(held, token, leftover)
    if outcome == "done":
        run_finish_if_complete(run_id=run.pk)
    return f"{outcome}: {worker.n_chunks} chunk(s), {worker.n_calls} call(s)"


# Reading answers is shared with the judge card runner, which has no database (judges/calls.py).
canonical = calls.canonical
Judgement = calls.Judgement


def completion_of(row: CachedCompletion) -> llm.Completion:
    """A cached answer as a completion (no attempt, no latency: nothing was called)."""
    return llm.Completion(
        content=row.content,
        tokens_in=row.tokens_in,
        tokens_out=row.tokens_out,
        finish_reason=row.finish_reason,
        attempts=0,
        latency_ms=0,
    )


def cache_row(*, key: str, endpoint: llm.Endpoint, model: str, completion: llm.Completion) -> CachedCompletion:
    """The cache row for one answer (store with bulk_create(ignore_conflicts=True): the first answer stays)."""
    return CachedCompletion(
        key=key,
        endpoint=endpoint.name,
        model=model,
        content=completion.content,
        tokens_in=completion.tokens_in,
        tokens_out=completion.tokens_out,
        finish_reason=completion.finish_reason[:32],
    )


def cached_answers(keys: Sequence[str]) -> dict[str, CachedCompletion]:
    """The cached answers among these keys, by key."""
    wanted = list(dict.fromkeys(keys))
    found: dict[str, CachedCompletion] = {}
    for start in range(0, len(wanted), 2000):
        found.update((c.key, c) for c in CachedCompletion.objects.filter(key__in=wanted[start : start + 2000]))
    return found


judgement_of = calls.judgement_of


GroupKey = tuple[int, str]  # (chunk id, cache key): identical requests within a chunk are made once


class _Worker:
    """One task's work on a run: the chunk it was sent for, then the run's next queued chunks whenever fewer calls
    wait than the pool has threads, so calls flow without a gap at chunk boundaries. Only this object's thread
    touches the database; the pool's threads only call the model."""

    def __init__(self, run: JudgeRun, token: str) -> None:
        self.run = run
        self.token = token
        self.context = selectors.render_context(version=run.version, rubric_version=run.rubric_version)
        self.threads = max(1, min(self.context.endpoint.max_concurrency, settings.JUDGE_MAX_THREADS))
        self.stop = threading.Event()
        self.held: set[int] = set()  # chunks claimed and not finished
        self.remaining: Counter[int] = Counter()  # calls still out, per chunk
        self.groups: dict[GroupKey, list[selectors.PlannedCall]] = {}
        self.futures: dict[Future[llm.CallResult], GroupKey] = {}
        # Futures report here when they finish, so the loop wakes on each answer without re-waiting on all of them.
        self.finished: queue.SimpleQueue[Future[llm.CallResult]] = queue.SimpleQueue()
        self.beat = self.progress = 0.0
        self.n_chunks = 0
        self.n_calls = 0

    def verdict(self, call: selectors.PlannedCall, result: llm.Completion | llm.Failure, *, cached: bool) -> Verdict:
        verdict = Verdict(run=self.run, item_id=call.item_id, order=call.order, cache_key=call.key, cached=cached)
        if isinstance(result, llm.Failure):
            verdict.status, verdict.error = Verdict.Status.ERROR, result.category
            verdict.attempts, verdict.latency_ms = result.attempts, result.latency_ms
            return verdict
        verdict.tokens_in, verdict.tokens_out = result.tokens_in, result.tokens_out
        verdict.attempts, verdict.latency_ms = (0, 0) if cached else (result.attempts, result.latency_ms)
        judged = judgement_of(result.content, kind=self.context.kind, order=call.order)
        verdict.status, verdict.answer, verdict.value = judged.status, judged.answer, judged.value
        verdict.reasoning, verdict.raw = judged.reasoning, judged.raw
        return verdict

    def take(self, chunk: RunChunk, pool: ThreadPoolExecutor) -> str | None:
        """Start on a claimed chunk: skip what has a verdict, answer from the cache, send the rest to the pool."""
        if chunk.attempts > settings.JUDGE_CHUNK_MAX_ATTEMPTS:
            _chunk_set(chunk.pk, self.token, RunChunk.State.FAILED)
            _run_fail(self.run.pk, f"Chunk {chunk.number} was started {chunk.attempts - 1} times without finishing.")
            return "fatal"
        self.held.add(chunk.pk)
        self.n_chunks += 1
        have = set(Verdict.objects.filter(run=self.run, item_id__in=chunk.item_ids).values_list("item_id", "order"))
        items = Item.objects.filter(project_id=self.run.project_id, pk__in=chunk.item_ids).order_by("id")
        planned = [p for p in selectors.plan_calls(self.context, items) if (p.item_id, p.order) not in have]
        cache = cached_answers([p.key for p in planned])
        hits = [self.verdict(p, completion_of(cache[p.key]), cached=True) for p in planned if p.key in cache]
        if hits and not self.store(hits, []):
            return "lost"
        groups: dict[GroupKey, list[selectors.PlannedCall]] = defaultdict(list)
        for p in planned:
            if p.key not in cache:
                groups[(chunk.pk, p.key)].append(p)
        self.groups.update(groups)
        for group_key, group in groups.items():
            # Identical requests in flight elsewhere (another chunk, another worker) share one call.
            future = pool.submit(
                single_flight.call, self.context.endpoint, group[0].request, group_key[1], should_stop=self.stop.is_set
            )
            self.futures[future] = group_key
            future.add_done_callback(self.finished.put)
        self.remaining[chunk.pk] = len(groups)
        if not groups:
            self.finish(chunk.pk)
        return None

    def finish(self, chunk_id: int) -> None:
        _chunk_set(chunk_id, self.token, RunChunk.State.DONE)
        self.held.discard(chunk_id)

    def work(self, first: RunChunk) -> str:
        """Returns done, cancelled, lost (another worker took a chunk over) or fatal (the endpoint refuses us)."""
        pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix=f"judge-run-{self.run.pk}")
        try:
            return self._loop(first, pool)
        finally:
            # Normally every future has been collected by now. After an error, stop the calls, and give back the
            # slots of answers that came in but were never stored (a local limiter would lose them for good).
            self.stop.set()
            for future in self.futures:
                future.cancel()
            pool.shutdown(wait=True)
            for future in self.futures:
                if future.done() and not future.cancelled() and future.exception() is None:
                    future.result().release()

    def _loop(self, first: RunChunk, pool: ThreadPoolExecutor) -> str:
        outcome = self.take(first, pool) or "done"
        checked = looked = time.monotonic()
        # Pulling stops after a while, so that a task ends in bounded time (a worker's warm shutdown waits for it);
        # the chunks left keep their own messages in the queue.
        pull_until = checked + settings.JUDGE_TASK_PULL_SECONDS
        more = True
        while True:
            # Keep the pool fed from the run's queued chunks (looking again at most twice a second once empty).
            while (
                outcome == "done"
                and len(self.futures) < self.threads
                and (more or time.monotonic() > looked)
                and time.monotonic() < pull_until
            ):
                chunk = _claim_next(self.run.pk, self.token)
                more, looked = chunk is not None, time.monotonic() + 0.5
                if chunk is None:
                    break
                outcome = self.take(chunk, pool) or "done"
            if not self.futures:
                return outcome
            outcome = self.collect(self._drain(), outcome)
            if outcome == "done" and time.monotonic() - checked > 0.5:
                checked = time.monotonic()
                status = JudgeRun.objects.filter(pk=self.run.pk).values_list("status", flat=True).first()
                if status not in JudgeRun.ACTIVE:
                    outcome = "cancelled"
            if outcome != "done" and not self.stop.is_set():
                # Calls not started are dropped; calls in flight come back (as "cancelled" if still waiting for a
                # slot or a backoff) and whatever they got is stored.
                self.stop.set()
                for future in list(self.futures):
                    if future.cancel():
                        del self.futures[future]

    def _drain(self) -> list[Future[llm.CallResult]]:
        """The futures that finished since last time, waiting up to half a second for the first."""
        try:
            finished = [self.finished.get(timeout=0.5)]
        except queue.Empty:
            return []
        while True:
            try:
                finished.append(self.finished.get_nowait())
            except queue.Empty:
                return [f for f in finished if f in self.futures and not f.cancelled()]

    def collect(self, finished: list[Future[llm.CallResult]], outcome: str) -> str:
        results = [(self.futures.pop(f), f.result()) for f in finished]
        verdicts: list[Verdict] = []
        answers: list[CachedCompletion] = []
        done: list[int] = []
        fatal: llm.Failure | None = None
        for (chunk_id, key), result in results:
            out = result.outcome
            if isinstance(out, llm.Failure) and out.cancelled:
                continue
            # A Completion without attempts is the answer of an identical call made elsewhere (judges.single_flight).
            shared = isinstance(out, llm.Completion) and out.attempts == 0
            self.n_calls += not shared
            if isinstance(out, llm.Failure) and out.fatal:
                fatal = out
            group = self.groups.pop((chunk_id, key))
            if isinstance(out, llm.Completion):
                answers.append(
                    cache_row(key=key, endpoint=self.context.endpoint, model=group[0].request.model, completion=out)
                )
            # The first (item, order) with this request paid for the call; a twin got the answer for free.
            verdicts += [
                self.verdict(p, out, cached=(n > 0 or shared) and isinstance(out, llm.Completion))
                for n, p in enumerate(group)
            ]
            self.remaining[chunk_id] -= 1
            if self.remaining[chunk_id] == 0:
                done.append(chunk_id)
        try:
            # Store what came in; with nothing new, still beat the heartbeat every second.
            if (verdicts or time.monotonic() - self.beat > 1) and not self.store(verdicts, answers):
                outcome = "lost"
        finally:
            # Only now, with the answers stored, may others use these slots (see the module's docstring).
            for _key, result in results:
                result.release()
        for chunk_id in done:
            self.finish(chunk_id)
        if fatal is not None and outcome == "done":
            _run_fail(self.run.pk, f"The endpoint refused the request ({fatal.category}); check its key and model.")
            return "fatal"
        return outcome

    def store(self, verdicts: Sequence[Verdict], answers: Sequence[CachedCompletion]) -> bool:
        """Store answers and verdicts in one transaction; about once a second also note the run's progress and beat
        the heartbeat of every chunk held. False when a claim was lost (the reconciler gave a chunk to another
        worker): what was stored still counts, and the caller stops."""
        now = timezone.now()
        clock = time.monotonic()
        with transaction.atomic():
            if answers:
                CachedCompletion.objects.bulk_create(answers, ignore_conflicts=True)
            if verdicts:
                Verdict.objects.bulk_create(verdicts, ignore_conflicts=True)
                if clock - self.progress > 1:
                    self.progress = clock
                    JudgeRun.objects.filter(pk=self.run.pk).update(progress_at=now)
            if not self.held or clock - self.beat <= 1:
                return True
            self.beat = clock
            beaten = RunChunk.objects.filter(pk__in=self.held, token=self.token).update(heartbeat_at=now)
        return beaten == len(self.held)


# --- Finishing, the report, the reconciler --------------------------------------------------------------------


def run_finish_if_complete(*, run_id: int) -> bool:
    """Close a running run whose chunks are all done: compute and store its report. Safe to call repeatedly."""
    chunks = Counter(RunChunk.objects.filter(run_id=run_id).values_list("state", flat=True))
    if chunks[RunChunk.State.FAILED]:
        _run_fail(run_id, "A chunk of this run failed.")
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


def run_report(*, run: JudgeRun) -> dict[str, object]:
    """The judge–human report for a run, as stored JSON (numbers from stats.agreement; this only arranges them).

    Human reference per item (selectors.references_of_run): a lead's gold label where there is one, else the strict
    majority of two or more humans' labels on the judge's criterion under the run's rubric version, else a single
    label if the judge lets single labels serve. Items without one (unlabeled production samples, split votes, single
    labels the judge does not use) are judged but not compared; the report counts the items of each reference kind.
    Pairwise items count only when the judge gave the same verdict in both orders; the share that did not is the
    position bias.
    """
    project = run.version.judge.project
    kind = project.kind
    pairwise = kind == Project.Kind.PAIRWISE
    codes = reports.PAIRWISE_CODES if pairwise else reports.BINARY_CODES
    criterion = selectors.criterion_of_run(rubric_version=run.rubric_version, key=run.version.judge.criterion_key)
    rows = Verdict.objects.filter(run=run).values_list("item_id", "order", "status", "value")
    by_item: dict[int, dict[str, str | None]] = defaultdict(dict)
    status_counts: Counter[str] = Counter()
    for item_id, order, status, value in rows:
        status_counts[status] += 1
        by_item[item_id][order] = value if status == Verdict.Status.OK else None
    judge_value: dict[int, str] = {}
    ab: list[int] = []
    ba: list[int] = []
    for item_id, orders in by_item.items():
        if pairwise:
            first, second = orders.get(Verdict.Order.AB), orders.get(Verdict.Order.BA)
            if first is not None and second is not None:
                ab.append(codes[first])
                ba.append(codes[second])
                if first == second:
                    judge_value[item_id] = first
        elif orders.get(Verdict.Order.ONE) is not None:
            judge_value[item_id] = str(orders[Verdict.Order.ONE])

    # The human reference of every item of the run, of each kind (stats.reference), as the report pages read it.
    references = selectors.references_of_run(run=run, item_ids=by_item)
    single = selectors.single_labels_serve(run)
    human = {i: codes[ref.value] for i, ref in references.items() if ref.value is not None}
    compared = sorted(set(human) & set(judge_value))
    human_codes = np.array([human[i] for i in compared], dtype=np.int64)
    judge_codes = np.array([codes[judge_value[i]] for i in compared], dtype=np.int64)
    kinds_all = Counter(ref.kind for ref in references.values())
    kinds_compared = Counter(references[i].kind for i in compared)
    report: dict[str, object] = {
        "kind": kind,
        "scope": run.scope,
        "test_run_number": run.test_run_number,
        "rubric_version": run.rubric_version.number,
        "criterion": run.version.judge.criterion_key,
        # The version the criterion's definition dates from: labels given since then count (annotate.carry).
        "criterion_defined_in": (
            RubricVersion.objects.filter(pk=criterion.defined_in_id).values_list("number", flat=True).first()
            if criterion is not None
            else None
        ),
        "n": len(compared),
        "n_items": len(by_item),
        "n_with_reference": len(human),
        "n_without_reference": len(by_item) - len(human),
        "n_invalid": status_counts[Verdict.Status.INVALID],
        "n_errors": status_counts[Verdict.Status.ERROR],
        "judge_counts": dict(Counter(judge_value.values())),
        # The run's items by reference kind (unlabeled ones in none), and the compared items (the figures' n) by the
        # kind of reference they were compared with.
        "single_label_reference": single,
        "reference_kinds": {name: kinds_all[name] for name in reference.SHOWN},
        "n_unlabeled": len(by_item) - len(references),
        "compared_kinds": {name: kinds_compared[name] for name in reference.SHOWN},
        "reference": reference.description(single=single),
    }
    if not human:
        report["empty_reason"] = carry.no_labels_warning(
            rubric_version=run.rubric_version, key=run.version.judge.criterion_key
        ) or ("No item of this run has a human reference yet (unlabeled, or the annotators' votes are split).")
    if pairwise:
        result = agreement.pairwise_judge_report(human_codes, judge_codes)
        consistency = agreement.position_consistency(np.array(ab, dtype=np.int64), np.array(ba, dtype=np.int64))
        report |= {
            "labels": ["a", "b", "tie"],
            "confusion": [list(row) for row in result.confusion],
            "figures": {
                "agreement": reports.figure_json(result.agreement),
                "agreement_without_ties": reports.figure_json(result.agreement_without_ties),
                "kappa": reports.figure_json(result.kappa),
                "position_consistency": reports.figure_json(consistency),
            },
            "n_both_orders": len(ab),
            "n_inconsistent": len(ab) - sum(1 for x, y in zip(ab, ba, strict=True) if x == y),
        }
    else:
        binary = agreement.binary_judge_report(human_codes, judge_codes)
        report |= {
            "labels": ["fail", "pass"],
            "confusion": [list(row) for row in binary.confusion],
            "figures": {
                "accuracy": reports.figure_json(binary.accuracy),
                "kappa": reports.figure_json(binary.kappa),
                "tpr": reports.figure_json(binary.tpr),
                "tnr": reports.figure_json(binary.tnr),
                "fail_precision": reports.figure_json(binary.fail_precision),
                "fail_recall": reports.figure_json(binary.fail_recall),
            },
        }
    return report


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
    task = _chunk_task()
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
        task.delay(chunk_id)
    for run_id in sorted({run_id for run_id, _ in again}):
        logger.warning("judge run %s: re-enqueued chunks of dead or lost workers", run_id)
    for run_id in active.filter(status=JudgeRun.Status.RUNNING).values_list("pk", flat=True):
        run_finish_if_complete(run_id=run_id)
    return len(again)
