"""The demo's recorded judges: on the LLMBar project (annotate/demo_llmbar.py), one judge version per recording of a
real judge model with one of the authors' prompting strategies (judges/recorded.py), each with a finished run over
all 419 items whose verdicts are what that model answered, in both orders.

How the runs are made: each starts through judges.judge_runs.judge_run_start, like any run, and its requests are
rendered by judges.selectors.plan_calls; the answer to each request is the one the stand-in's `recorded` endpoint
gives over HTTP (judges.recorded.reply_for, the same function), read by judges.calls.judgement_of as the chunk worker
reads it, and stored with the answer cached; then judges.judge_runs.run_finish_if_complete computes the report. Only
the HTTP round trip is left out, to keep `make run` quick (16,000 requests); tests/judges/test_llmbar_demo.py checks
that a run through the stand-in over HTTP stores the same verdicts.

Loading is idempotent: versions and runs that exist are kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from annotate import demo_llmbar
from annotate.models import Item, Project
from judges import calls, llm, recorded, selectors
from judges.models import CachedCompletion, Judge, JudgeRun, JudgeVersion, RunChunk, Verdict
from judges.services import answer_cache, judge_runs, judge_versions

JUDGE_NAME = "LLMBar: follows the instruction"
# The demo judge's bar: agreement with the experts of at least 80% on the items judged the same in both orders.
TARGET_ACCURACY = 0.80


@dataclass(frozen=True)
class DemoJudges:
    judge: Judge
    versions_created: int
    runs_created: int


@transaction.atomic
def llmbar_judges_load() -> DemoJudges:
    """The recorded judge versions and their runs on the LLMBar demo project (which annotate.demo loads first)."""
    project = Project.objects.get(slug=demo_llmbar.SLUG)
    judge = Judge.objects.filter(project=project, criterion_key=demo_llmbar.CRITERION).first()
    if judge is None:
        judge = judge_versions.judge_create(project=project, criterion_key=demo_llmbar.CRITERION, name=JUDGE_NAME)
        judge_versions.judge_target_set(
            judge=judge, target=Judge.Target.ACCURACY, numbers={"target_accuracy": TARGET_ACCURACY}
        )
    versions = {}
    for existing in JudgeVersion.objects.filter(judge=judge).order_by("number"):
        if (found := existing.recording) is not None:
            versions[(found.model.model, found.strategy)] = existing
    created = runs = 0
    parent: JudgeVersion | None = JudgeVersion.objects.filter(judge=judge).order_by("-number").first()
    for key, recording in recorded.recordings().items():
        version = versions.get(key) or _version_create(judge=judge, recording=recording, parent=parent)
        created += key not in versions
        parent = version
        if not JudgeRun.objects.filter(version=version, status=JudgeRun.Status.DONE).exists():
            replay_run(version=version)
            runs += 1
    return DemoJudges(judge, created, runs)


def _version_create(*, judge: Judge, recording: recorded.Recording, parent: JudgeVersion | None) -> JudgeVersion:
    system, user = recorded.templates(recording.strategy)
    return judge_versions.judge_version_create(
        judge=judge,
        system_template=system,
        user_template=user,
        endpoint=llm.RECORDED,
        model=recording.model.model,
        # Open-weight and retired models have no dated snapshot name; the recording itself does not change.
        allow_alias=True,
        max_tokens=1024,
        parent=parent,
        change_note=f"{recording.model.label} with the LLMBar authors' “{recording.strategy}” prompt (recorded).",
    )


@transaction.atomic
def replay_run(*, version: JudgeVersion) -> JudgeRun:
    """A finished dev run of a recorded version: every verdict is the recorded endpoint's answer (see the module's
    docstring). The run's chunks are done before its transaction commits, so the chunk tasks it sends claim nothing."""
    if version.recording is None:
        raise ValueError(f"{version} replays no recording.")
    run = judge_runs.judge_run_start(version=version, scope=JudgeRun.Scope.DEV)
    context = selectors.render_context(version=version, rubric_version=run.rubric_version)
    item_ids = [i for chunk in RunChunk.objects.filter(run=run) for i in chunk.item_ids]
    items = Item.objects.filter(project_id=run.project_id, pk__in=item_ids).order_by("id")
    verdicts, answers = [], []
    for call in selectors.plan_calls(context, items):
        reply = recorded.reply_for(call.request.model, call.request.messages)
        if reply is None:
            raise LookupError(f"No recorded answer for item {call.item_id} ({call.order}) of {version}.")
        completion = llm.Completion(
            content=reply.content,
            tokens_in=sum(recorded.tokens(m["content"]) + 4 for m in call.request.messages),
            tokens_out=reply.tokens_out,
            finish_reason="stop",
            attempts=1,
            latency_ms=0,
        )
        answers.append(
            answer_cache.cache_row(
                key=call.key, endpoint=context.endpoint, model=call.request.model, completion=completion
            )
        )
        judged = calls.judgement_of(completion.content, kind=context.kind, order=call.order)
        verdicts.append(
            Verdict(
                run=run,
                item_id=call.item_id,
                order=call.order,
                cache_key=call.key,
                status=judged.status,
                answer=judged.answer,
                value=judged.value,
                reasoning=judged.reasoning,
                raw=judged.raw,
                tokens_in=completion.tokens_in,
                tokens_out=completion.tokens_out,
                attempts=completion.attempts,
            )
        )
    CachedCompletion.objects.bulk_create(answers, batch_size=500, ignore_conflicts=True)
    Verdict.objects.bulk_create(verdicts, batch_size=500)
    now = timezone.now()
    RunChunk.objects.filter(run=run).update(state=RunChunk.State.DONE, heartbeat_at=now)
    JudgeRun.objects.filter(pk=run.pk).update(status=JudgeRun.Status.RUNNING, started_at=now, progress_at=now)
    judge_runs.run_finish_if_complete(run_id=run.pk)
    run.refresh_from_db()
    return run
