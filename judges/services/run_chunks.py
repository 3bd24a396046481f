"""The work of a chunk task (judges.tasks.judge_chunk_run): claim the chunk, answer what the cache has, call the model
for the rest in a thread pool, store each answer as it comes in, and go on with the run's next queued chunks while
the pool has room. How this survives dead workers is told in judges.services.judge_runs."""

from __future__ import annotations

import datetime as dt
import queue
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotate.models import Item
from judges import calls, llm, selectors, single_flight
from judges.models import CachedCompletion, JudgeRun, RunChunk, Verdict
from judges.services.answer_cache import cache_row, cached_answers, completion_of
from judges.services.judge_runs import run_fail, run_finish_if_complete


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
        run_fail(run.pk, str(exc))
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
        judged = calls.judgement_of(result.content, kind=self.context.kind, order=call.order)
        verdict.status, verdict.answer, verdict.value = judged.status, judged.answer, judged.value
        verdict.reasoning, verdict.raw = judged.reasoning, judged.raw
        return verdict

    def take(self, chunk: RunChunk, pool: ThreadPoolExecutor) -> str | None:
        """Start on a claimed chunk: skip what has a verdict, answer from the cache, send the rest to the pool."""
        if chunk.attempts > settings.JUDGE_CHUNK_MAX_ATTEMPTS:
            _chunk_set(chunk.pk, self.token, RunChunk.State.FAILED)
            run_fail(self.run.pk, f"Chunk {chunk.number} was started {chunk.attempts - 1} times without finishing.")
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
            run_fail(self.run.pk, f"The endpoint refused the request ({fatal.category}); check its key and model.")
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
