"""The daily monitor: a criterion's chosen, calibrated judge version judges a day's production records, and the
judge's pass rate, corrected for its measured errors, goes on the dashboard and the API with its 95% interval.

- Which records: all of the day's records (up to MONITOR_MAX_RECORDS, or the monitor's daily sample cap), or, with a
  daily budget, the longest prefix of a random order seeded by (project, criterion, day) whose estimated cost fits
  the budget. A prefix of a random permutation is a uniform random sample, and the same day always gives the same
  sample. The estimate counts every record at its full price (cached or not), so the sample does not grow when a
  re-run finds its answers cached.
- One computation of a day at a time: each takes the day's MonitorDayClaim first (unique per monitor and day, taken
  under a row lock), so beat's task and a manual re-run started together never both call and pay.
- Cost per call: the rendered prompt's estimated tokens (scaled by how far the estimate fell short on this version's
  past run) at the model's input price, plus the most completion tokens one of this version's past paid calls
  used (max_tokens, an upper bound, when it has none) at its output price.
- Answers come from the completion cache when there (judges.models.CachedCompletion, the same exact-match key as
  runs), so recomputing a day makes no call, costs 0 and gives the same figures (the interval's seed is fixed too).
- Correction: TPR and TNR of the version's latest finished calibration run (held-out test split preferred, then dev,
  then all items), and `daily_estimate`, the one place that calls the estimator.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import User as AuthUser
from django.core.exceptions import NON_FIELD_ERRORS as NON_FIELD
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Case, Max, Q, Sum, Value, When
from django.utils import timezone

from annotate import enqueue
from annotate import selectors as annotate_selectors
from annotate.models import ProductionRecord, Project
from annotate.stats import agreement
from judges import calls, compare, llm, prompts, selectors
from judges.models import CachedCompletion, Judge, JudgeRun, JudgeVersion, Monitor, MonitorDay, MonitorDayClaim, Verdict
from judges.services import answer_cache

log = logging.getLogger(__name__)

ESTIMATOR = "Rogan–Gladen, Jeffreys-Beta simulation interval"
CALIBRATION_SCOPES = (JudgeRun.Scope.TEST, JudgeRun.Scope.DEV, JudgeRun.Scope.ALL)


# --- Calibration and the estimate -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """The judge's measured error rates: TPR on `n_pos` items humans passed, TNR on `n_neg` they failed."""

    run: JudgeRun
    tpr: float
    tnr: float
    n_pos: int
    n_neg: int


def calibration_of(*, version: JudgeVersion) -> Calibration | None:
    """TPR and TNR from the confusion table of the version's latest finished run (test, else dev, else all items).
    None when the version has no finished run or its run compared no items humans passed or failed."""
    for scope in CALIBRATION_SCOPES:
        run = selectors.latest_done_run(version=version, scope=scope)
        if run is None or not run.report or run.report.get("labels") != ["fail", "pass"]:
            continue
        (tn, fp), (fn, tp) = run.report["confusion"]
        n_neg, n_pos = tn + fp, fn + tp
        if n_pos == 0 or n_neg == 0:
            continue
        return Calibration(run=run, tpr=tp / n_pos, tnr=tn / n_neg, n_pos=n_pos, n_neg=n_neg)
    return None


@dataclass(frozen=True)
class VersionStanding:
    """A version as the monitor page offers it: `check` is the judges pages' decision on whether it is calibrated
    (selectors.run_target_check on its newest finished dev run, None without one); `calibration` the TPR and TNR
    that would correct its pass rate (None: it cannot monitor)."""

    version: JudgeVersion
    run: JudgeRun | None
    check: compare.TargetCheck | None
    calibration: Calibration | None


def version_standings(*, judge: Judge) -> list[VersionStanding]:
    """The judge's versions, newest first, each with its target check and its calibration."""
    runs = selectors.latest_done_runs(judge=judge)
    out = []
    for version in judge.versions.order_by("-number"):
        run = runs.get(version.pk)
        if run is not None:
            version.judge = judge
            run.version = version
        check = selectors.run_target_check(run=run) if run is not None else None
        out.append(VersionStanding(version, run, check, calibration_of(version=version)))
    return out


def project_refusal(project: Project) -> str | None:
    """Why the project's judges cannot be monitored at all, or None when they can."""
    if project.kind != Project.Kind.BINARY:
        return "The daily monitor tracks a pass rate: it needs a pass/fail project."
    return None


def daily_estimate(*, n_pass: int, n_judged: int, calibration: Calibration, seed: int) -> agreement.Figure:
    """The corrected pass rate of one day and its 95% interval: the only call of the estimator in the monitor."""
    observed = n_pass / n_judged if n_judged else 0.0
    return agreement.corrected_pass_rate(
        observed, n_judged, calibration.tpr, calibration.tnr, calibration.n_pos, calibration.n_neg, seed=seed
    )


# --- Settings -------------------------------------------------------------------------------------------------


BUDGET_MAX = Decimal("1000000")  # the column holds 10 digits, 4 after the point


def monitor_check(
    *,
    judge: Judge,
    version: JudgeVersion,
    daily_budget_usd: Decimal | None,
    threshold: float | None,
    daily_sample_cap: int | None,
) -> None:
    """Whether these settings can monitor the judge's criterion: raises one ValidationError naming every problem, by
    field (`version`, `daily_budget_usd`, `threshold`, `daily_sample_cap`; a problem of the project under NON_FIELD).
    The one check of the settings, for the page's form and the API alike."""
    problems: dict[str, list[str]] = {}

    def refuse(field: str, message: str) -> None:
        problems.setdefault(field, []).append(message)

    refused = project_refusal(judge.project)
    if refused is not None:
        refuse(NON_FIELD, refused)
    if version.judge_id != judge.pk:
        refuse("version", "That version belongs to another judge.")
    elif calibration_of(version=version) is None:
        refuse(
            "version",
            f"Version {version.number} has no finished run that compared it with items humans passed and failed: "
            "run it on dev or test items first, so that its TPR and TNR can correct its pass rate.",
        )
    if daily_budget_usd is not None:
        if not daily_budget_usd.is_finite():
            refuse("daily_budget_usd", "The daily budget must be a number of US dollars.")
        elif daily_budget_usd < 0:
            refuse("daily_budget_usd", "The daily budget cannot be negative.")
        elif daily_budget_usd >= BUDGET_MAX:
            refuse("daily_budget_usd", f"The daily budget must be below ${BUDGET_MAX:,}.")
        elif daily_budget_usd != daily_budget_usd.quantize(Decimal("0.0001")):
            refuse("daily_budget_usd", "The daily budget has at most 4 decimal places.")
    if threshold is not None and not (math.isfinite(threshold) and 0 <= threshold <= 1):
        refuse("threshold", "The threshold is a pass rate between 0 and 1.")
    if daily_sample_cap is not None and not 1 <= daily_sample_cap <= settings.MONITOR_MAX_RECORDS:
        refuse(
            "daily_sample_cap",
            f"The daily sample cap is a number of records from 1 to {settings.MONITOR_MAX_RECORDS} "
            "(MONITOR_MAX_RECORDS); leave it empty for no cap of its own.",
        )
    if problems:
        raise ValidationError(problems)


def monitor_set(
    *,
    judge: Judge,
    version: JudgeVersion,
    daily_budget_usd: Decimal | None,
    threshold: float | None,
    daily_sample_cap: int | None = None,
    enabled: bool = True,
    actor: AuthUser | None = None,
) -> Monitor:
    """Choose the version that monitors the judge's criterion, its daily budget and sample cap and its pass-rate
    floor. Refused, with nothing written, as `monitor_check` says."""
    monitor_check(
        judge=judge,
        version=version,
        daily_budget_usd=daily_budget_usd,
        threshold=threshold,
        daily_sample_cap=daily_sample_cap,
    )
    with transaction.atomic():
        monitor, _ = Monitor.objects.update_or_create(
            judge=judge,
            defaults={
                "version": version,
                "daily_budget_usd": daily_budget_usd,
                "daily_sample_cap": daily_sample_cap,
                "threshold": threshold,
                "enabled": enabled,
                "updated_by": actor,
            },
        )
        # The days already computed are judged against the new threshold too, so the chart, the banner and the API
        # never mix floors; their figures do not change.
        days = MonitorDay.objects.filter(project=judge.project, criterion_key=judge.criterion_key)
        if threshold is None:
            days.update(threshold=None, alert=False)
        else:
            days.update(
                threshold=threshold,
                alert=Case(When(ci_high__lt=threshold, then=Value(True)), default=Value(False)),
            )
    return monitor


# --- Sampling within the budget -------------------------------------------------------------------------------


def day_seed(*, project: Project, criterion_key: str, day: dt.date) -> str:
    return hashlib.sha256(f"monitor\x1f{project.slug}\x1f{criterion_key}\x1f{day.isoformat()}".encode()).hexdigest()


def _rank(seed: str, content_hash: str) -> bytes:
    return hashlib.sha256(f"{seed}\x1f{content_hash}".encode()).digest()


def prompt_tokens_ratio(*, version: JudgeVersion) -> float:
    """How many prompt tokens the model counted per token `prompts.estimate_tokens` estimated, on this version's
    latest run that called for every item (its stored estimate against its verdicts); at least 1, so the budget
    is never planned on a smaller count than the estimate's. 1 when no such run exists."""
    for run in JudgeRun.objects.filter(version=version, status=JudgeRun.Status.DONE).order_by("-id")[:10]:
        estimated = (run.estimate or {}).get("tokens_in") or 0
        if not estimated or (run.estimate or {}).get("n_cached"):
            continue
        actual = Verdict.objects.filter(run=run, cached=False).aggregate(total=Sum("tokens_in"))["total"] or 0
        if actual:
            return max(1.0, actual / estimated)
    return 1.0


def tokens_out_per_call(*, version: JudgeVersion) -> int | None:
    """The most completion tokens one of this version's past paid calls used (a cautious per-call figure: the budget
    is planned on it), or None when it made none."""
    rows = Verdict.objects.filter(run__version=version, cached=False, status=Verdict.Status.OK, tokens_out__gt=0)
    return rows.aggregate(most=Max("tokens_out"))["most"]


@dataclass(frozen=True)
class Planned:
    record: ProductionRecord
    request: llm.ChatRequest
    key: str
    cost: Decimal | None  # estimated; None when the model has no price


def plan_records(
    *,
    context: selectors.RenderContext,
    records: list[ProductionRecord],
    seed: str,
    budget: Decimal | None,
    cap: int | None = None,
) -> tuple[list[Planned], Decimal | None, str]:
    """The records to judge, in the seeded random order, their estimated total cost, and a note on how they were
    chosen. Pure apart from reading the version's past token counts."""
    version = context.version
    ordered = sorted(records, key=lambda r: _rank(seed, r.content_hash))
    price = selectors.price_for(version.model)
    tokens_out = tokens_out_per_call(version=version)
    ratio = Decimal(str(prompt_tokens_ratio(version=version)))
    out = float(version.max_tokens) if tokens_out is None else tokens_out
    planned: list[Planned] = []
    limit = settings.MONITOR_MAX_RECORDS if cap is None else min(cap, settings.MONITOR_MAX_RECORDS)
    chosen = ordered[:limit]
    # A monitored project is pass/fail: one request per record, rendered and keyed as a run's (selectors.plan_calls).
    for record, call in zip(chosen, selectors.plan_calls(context, chosen), strict=True):
        cost = None
        if price is not None:
            tokens_in = Decimal(prompts.estimate_tokens(call.request.messages)) * ratio
            cost = (tokens_in * price[0] + Decimal(out) * price[1]) / Decimal(1_000_000)
        planned.append(Planned(record, call.request, call.key, cost))
    note = ""
    if len(ordered) > limit:
        note = (
            f"a random {limit} of {len(records)} records (the daily sample cap)"
            if limit == cap
            else f"at most {settings.MONITOR_MAX_RECORDS} records a day (MONITOR_MAX_RECORDS)"
        )
    if price is None:
        return planned, None, note or "the model has no price: no budget could be applied"
    if budget is not None:
        spent, fits = Decimal(0), 0
        for p in planned:
            assert p.cost is not None
            if spent + p.cost > budget:
                break
            spent += p.cost
            fits += 1
        if fits < len(planned):
            planned = planned[:fits]
            note = f"a random {fits} of {len(records)} records fit the budget of ${budget}"
    total = sum((p.cost for p in planned if p.cost is not None), Decimal(0))
    return planned, total, note


# --- Judging a day --------------------------------------------------------------------------------------------


def _call_all(context: selectors.RenderContext, to_call: dict[str, Planned]) -> dict[str, llm.Completion | llm.Failure]:
    """Call the model once per distinct request; each answer is cached as it arrives, then its slot released. An
    endpoint that refuses us (bad key, unknown model) stops the calls not yet made, as in a run."""
    results: dict[str, llm.Completion | llm.Failure] = {}
    if not to_call:
        return results
    stop = threading.Event()

    def ask(request: llm.ChatRequest) -> llm.CallResult:
        # Checked here, in the calling thread, so that no call starts after a refusal came back.
        if stop.is_set():
            return llm.CallResult(llm.Failure("cancelled", 0, 0, cancelled=True), None)
        result = llm.call(context.endpoint, request, should_stop=stop.is_set)
        if isinstance(result.outcome, llm.Failure) and result.outcome.fatal:
            stop.set()
        return result

    threads = max(1, min(context.endpoint.max_concurrency, settings.JUDGE_MAX_THREADS, len(to_call)))
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="judge-monitor") as pool:
        futures = {pool.submit(ask, p.request): key for key, p in to_call.items()}
        for future in as_completed(futures):
            key = futures[future]
            result = future.result()
            try:
                if isinstance(result.outcome, llm.Completion):
                    row = answer_cache.cache_row(
                        key=key, endpoint=context.endpoint, model=context.version.model, completion=result.outcome
                    )
                    CachedCompletion.objects.bulk_create([row], ignore_conflicts=True)
                elif result.outcome.fatal:
                    log.warning("daily monitor: the endpoint refused the request (%s)", result.outcome.category)
                results[key] = result.outcome
            finally:
                result.release()
    return results


class DayBusy(Exception):
    """Another computation of the same monitor's day holds its claim: this one does nothing."""


def _claim_day(*, monitor_id: int, day: dt.date) -> str | None:
    """Take the claim on (monitor, day) under a row lock, or None when a live computation holds it. The unique
    constraint makes the row exist once: of two computations starting together one creates it, the other waits on
    its lock (or the unique index) and then finds it taken."""
    now = timezone.now()
    token = uuid.uuid4().hex
    stale_before = now - dt.timedelta(seconds=settings.MONITOR_RESEND_SECONDS)
    with transaction.atomic():
        claim, created = MonitorDayClaim.objects.select_for_update().get_or_create(
            monitor_id=monitor_id, day=day, defaults={"token": token, "claimed_at": now}
        )
        if created:
            return token
        if claim.finished_at is None and claim.claimed_at >= stale_before:
            return None
        claim.token, claim.claimed_at, claim.finished_at = token, now, None
        claim.save(update_fields=["token", "claimed_at", "finished_at"])
    return token


def _release_day(*, monitor_id: int, day: dt.date, token: str) -> None:
    MonitorDayClaim.objects.filter(monitor_id=monitor_id, day=day, token=token).update(finished_at=timezone.now())


def monitor_day_compute(*, monitor_id: int, day: dt.date) -> MonitorDay | None:
    """Judge `day`'s production records of the monitor's criterion and store the day's row. Safe to run again: the
    sample is fixed by the day, the answers come from the cache, the row is updated in place. None when the monitor
    is gone or off. Two computations of the same day never overlap: the second raises DayBusy before any call (see
    MonitorDayClaim), so nothing is judged or paid twice."""
    monitor = (
        Monitor.objects.select_related("judge__project", "version__judge__project")
        .filter(pk=monitor_id, enabled=True)
        .first()
    )
    if monitor is None:
        return None
    token = _claim_day(monitor_id=monitor_id, day=day)
    if token is None:
        raise DayBusy(f"day {day.isoformat()} of monitor {monitor_id} is being computed by another task")
    try:
        return _compute_day(monitor=monitor, day=day)
    finally:
        _release_day(monitor_id=monitor_id, day=day, token=token)


def _compute_day(*, monitor: Monitor, day: dt.date) -> MonitorDay:
    judge, version, project = monitor.judge, monitor.version, monitor.judge.project
    calibration = calibration_of(version=version)
    rubric = calibration.run.rubric_version if calibration else annotate_selectors.rubric_current(project=project)
    if rubric is None:
        raise ValidationError("The project has no rubric yet.")
    context = selectors.render_context(version=version, rubric_version=rubric)
    seed = day_seed(project=project, criterion_key=judge.criterion_key, day=day)
    records = list(ProductionRecord.objects.filter(project=project, received_on=day).order_by("id"))
    planned, estimated, note = plan_records(
        context=context, records=records, seed=seed, budget=monitor.daily_budget_usd, cap=monitor.daily_sample_cap
    )
    cached = answer_cache.cached_answers([p.key for p in planned])
    to_call = {p.key: p for p in planned if p.key not in cached}
    fresh = _call_all(context, to_call)
    n_pass = n_ok = n_invalid = n_errors = 0
    for p in planned:
        outcome = fresh.get(p.key)
        if outcome is None and p.key in cached:
            content = cached[p.key].content
        elif isinstance(outcome, llm.Completion):
            content = outcome.content
        else:
            n_errors += 1
            continue
        judged = calls.judgement_of(content, kind=context.kind, order=calls.ORDER_ONE)
        if judged.status != calls.STATUS_OK:
            n_invalid += 1
            continue
        n_ok += 1
        n_pass += judged.value == "pass"
    price = selectors.price_for(version.model)
    paid = [o for o in fresh.values() if isinstance(o, llm.Completion)]
    cost = selectors.cost_of(sum(o.tokens_in for o in paid), sum(o.tokens_out for o in paid), *price) if price else None
    figure: agreement.Figure | None = None
    reason = "the version has no finished calibration run"
    if calibration is not None:
        figure = daily_estimate(n_pass=n_pass, n_judged=n_ok, calibration=calibration, seed=day.toordinal())
        reason = figure.reason or ""
    if not n_ok:
        reason = (
            f"no record was judged ({len(records)} received, {len(planned)} sampled, {n_invalid} invalid answers, "
            f"{n_errors} failed calls)"
        )
    threshold = monitor.threshold
    ci_high = figure.ci_high if figure else None
    alert = threshold is not None and ci_high is not None and ci_high < threshold
    with transaction.atomic():
        previous = (
            MonitorDay.objects.select_for_update()
            .filter(project=project, criterion_key=judge.criterion_key, day=day)
            .first()
        )
        total = cost
        if previous is not None and previous.total_cost_usd is not None:
            total = previous.total_cost_usd + (cost or Decimal(0))
        row, _ = MonitorDay.objects.update_or_create(
            project=project,
            criterion_key=judge.criterion_key,
            day=day,
            defaults={
                "version": version,
                "calibration_run": calibration.run if calibration else None,
                "seed": seed,
                "n_records": len(records),
                "n_sampled": len(planned),
                "n_ok": n_ok,
                "n_pass": n_pass,
                "n_invalid": n_invalid,
                "n_errors": n_errors,
                "n_called": len(to_call),
                "n_cached": len(planned) - sum(1 for p in planned if p.key in to_call),
                "cost_usd": cost,
                "total_cost_usd": total,
                "budget_usd": monitor.daily_budget_usd,
                "estimated_cost_usd": estimated,
                "sample_note": note[:300],
                "observed_pass_rate": n_pass / n_ok if n_ok else None,
                "tpr": calibration.tpr if calibration else None,
                "tnr": calibration.tnr if calibration else None,
                "n_pos": calibration.n_pos if calibration else 0,
                "n_neg": calibration.n_neg if calibration else 0,
                "value": figure.value if figure else None,
                "ci_low": figure.ci_low if figure else None,
                "ci_high": ci_high,
                "reason": reason[:300],
                "estimator": ESTIMATOR,
                "threshold": threshold,
                "alert": alert,
            },
        )
    return row


def monitors_run_due(*, now: dt.datetime | None = None) -> int:
    """Send one task per enabled monitor whose yesterday (local time) has no row yet, once MONITOR_HOUR has come
    (beat, every MONITOR_CHECK_SECONDS). Returns how many were sent.

    Each send is claimed by a conditional update of the monitor (sent_day, sent_at), so a day still being judged
    (a large day on a rate-limited endpoint can outlast the check period) is not sent again, and paid for twice,
    before MONITOR_RESEND_SECONDS: after that a task that died is replaced. A second message is harmless anyway:
    the task is idempotent."""
    now = timezone.localtime(now or timezone.now())
    if now.hour < settings.MONITOR_HOUR:
        return 0
    day = now.date() - dt.timedelta(days=1)
    resend_before = now - dt.timedelta(seconds=settings.MONITOR_RESEND_SECONDS)
    due = []
    for monitor in Monitor.objects.filter(enabled=True, judge__project__status=Project.Status.ACTIVE).select_related(
        "judge"
    ):
        exists = MonitorDay.objects.filter(
            project_id=monitor.judge.project_id, criterion_key=monitor.judge.criterion_key, day=day
        ).exists()
        if exists:
            continue
        claimed = (
            Monitor.objects.filter(pk=monitor.pk)
            .filter(Q(sent_day__isnull=True) | ~Q(sent_day=day) | Q(sent_at__lt=resend_before))
            .update(sent_day=day, sent_at=now)
        )
        if claimed:
            due.append(monitor.pk)
    for monitor_id in due:
        enqueue.after_commit("judges.tasks.monitor_day_run", monitor_id, day.isoformat())
    if due:
        log.info("daily monitor of %s: %d criterion(s) sent", day, len(due))
    return len(due)
