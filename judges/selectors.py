"""Reads for judges that views, services, tasks, the command and the API share.

Access: every lookup here takes the project that `annotate.selectors.project_for_user` returned and scopes the object
to it, so an id from another project is a 404 like any other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import cast

from django.conf import settings
from django.db.models import Count, Q, QuerySet, Sum
from django.http import Http404

from annotate import selectors as annotate_selectors
from annotate.models import Criterion, Item, Project, RubricVersion
from judges import llm, prompts
from judges.models import CachedCompletion, FewShotExample, Judge, JudgeRun, JudgeVersion, Verdict

MILLION = Decimal(1_000_000)


# --- Scoped lookups -------------------------------------------------------------------------------------------


def judge_for_project(*, project: Project, judge_id: int) -> Judge:
    judge = Judge.objects.filter(project=project, pk=judge_id).first()
    if judge is None:
        raise Http404("No such judge.")
    return judge


def version_for_project(*, project: Project, version_id: int) -> JudgeVersion:
    version = JudgeVersion.objects.filter(judge__project=project, pk=version_id).select_related("judge").first()
    if version is None:
        raise Http404("No such judge version.")
    return version


def run_for_project(*, project: Project, run_id: int) -> JudgeRun:
    run = (
        JudgeRun.objects.filter(project=project, pk=run_id)
        .select_related("version__judge", "rubric_version", "started_by")
        .first()
    )
    if run is None:
        raise Http404("No such run.")
    return run


# --- Lists ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgeRow:
    criterion: Criterion
    judge: Judge | None
    latest: JudgeVersion | None
    n_versions: int
    n_runs: int
    n_test_runs: int


def judges_for_project(*, project: Project) -> list[JudgeRow]:
    """One row per criterion of the current rubric, with its judge if it has one, then judges of retired criteria."""
    judges = {
        j.criterion_key: j
        for j in Judge.objects.filter(project=project).annotate(
            n_versions=Count("versions", distinct=True),
            n_runs=Count("versions__runs", distinct=True),
            n_test_runs=Count("versions__runs", filter=Q(versions__runs__scope="test"), distinct=True),
        )
    }
    latest: dict[int, JudgeVersion] = {}
    for version in JudgeVersion.objects.filter(judge__project=project).order_by("judge_id", "-number"):
        latest.setdefault(version.judge_id, version)
    rows = []
    for criterion in annotate_selectors.criteria_current(project=project):
        judge = judges.pop(criterion.key, None)
        rows.append(_row(criterion, judge, latest))
    for key, judge in sorted(judges.items()):
        retired = Criterion(key=key, name=f"{key} (not in the current rubric)", description="")
        rows.append(_row(retired, judge, latest))
    return rows


def _row(criterion: Criterion, judge: Judge | None, latest: dict[int, JudgeVersion]) -> JudgeRow:
    return JudgeRow(
        criterion=criterion,
        judge=judge,
        latest=latest.get(judge.pk) if judge else None,
        n_versions=getattr(judge, "n_versions", 0),
        n_runs=getattr(judge, "n_runs", 0),
        n_test_runs=getattr(judge, "n_test_runs", 0),
    )


def test_runs_count(*, judge: Judge) -> int:
    """How many times this judge has been run on the held-out test split (shown, so nobody tunes on test quietly)."""
    return JudgeRun.objects.filter(version__judge=judge, scope=JudgeRun.Scope.TEST).count()


def runs_of_judge(*, judge: Judge, limit: int = 50) -> list[JudgeRun]:
    return list(
        JudgeRun.objects.filter(version__judge=judge).select_related("version", "started_by").order_by("-id")[:limit]
    )


def criterion_of_run(*, rubric_version: RubricVersion, key: str) -> Criterion | None:
    return next((c for c in annotate_selectors.criteria_of_version(rubric_version.pk) if c.key == key), None)


# --- Rendering what a run will send ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderContext:
    version: JudgeVersion
    kind: str
    criterion: Criterion
    endpoint: llm.Endpoint
    examples: tuple[prompts.Example, ...]


@dataclass(frozen=True)
class PlannedCall:
    item_id: int
    order: str
    request: llm.ChatRequest
    key: str


def orders_for(kind: str) -> tuple[str, ...]:
    return (Verdict.Order.AB, Verdict.Order.BA) if kind == Project.Kind.PAIRWISE else (Verdict.Order.ONE,)


def render_context(*, version: JudgeVersion, rubric_version: RubricVersion) -> RenderContext:
    """Everything needed to render a version's requests under one rubric version. Raises EndpointError, LookupError."""
    project = version.judge.project
    criterion = criterion_of_run(rubric_version=rubric_version, key=version.judge.criterion_key)
    if criterion is None:
        raise LookupError(
            f"The criterion {version.judge.criterion_key!r} is not in rubric version {rubric_version.number}."
        )
    examples = tuple(
        prompts.Example(
            input=ex.item.input,
            output=ex.item.output,
            output_a=ex.item.output_a,
            output_b=ex.item.output_b,
            verdict=ex.verdict,
            reasoning=ex.reasoning,
        )
        for ex in FewShotExample.objects.filter(version=version).select_related("item").order_by("position")
    )
    return RenderContext(
        version=version,
        kind=project.kind,
        criterion=criterion,
        endpoint=llm.endpoint_get(version.endpoint),
        examples=examples,
    )


def item_data(item: Item, order: str) -> prompts.ItemData:
    """The item as the template sees it in this order: for "ba", output B is shown first (as {{ output_a }})."""
    first, second = (item.output_b, item.output_a) if order == Verdict.Order.BA else (item.output_a, item.output_b)
    return prompts.ItemData(
        external_id=item.external_id,
        input=item.input,
        output=item.output,
        output_a=first,
        output_b=second,
        metadata=item.metadata,
    )


def plan_calls(context: RenderContext, items: Iterable[Item]) -> list[PlannedCall]:
    version = context.version
    planned = []
    for item in items:
        for order in orders_for(context.kind):
            messages = prompts.render_messages(
                system_template=version.system_template,
                user_template=version.user_template,
                kind=context.kind,
                item=item_data(item, order),
                criterion_name=context.criterion.name,
                criterion_description=context.criterion.description,
                examples=context.examples,
            )
            request = llm.build_request(
                endpoint=context.endpoint,
                kind=context.kind,
                model=version.model,
                messages=messages,
                temperature=version.temperature,
                max_tokens=version.max_tokens,
            )
            planned.append(PlannedCall(item.pk, order, request, request.cache_key(context.endpoint)))
    return planned


def items_for_scope(*, project: Project, scope: str, item_ids: Sequence[int] | None = None) -> QuerySet[Item]:
    items = Item.objects.filter(project=project)
    if scope in (JudgeRun.Scope.DEV, JudgeRun.Scope.TEST):
        items = items.filter(split=scope)
    elif scope == JudgeRun.Scope.ITEMS:
        items = items.filter(pk__in=list(item_ids or []))
    return items.order_by("id")


def cached_keys(keys: Iterable[str]) -> set[str]:
    wanted = list(dict.fromkeys(keys))
    found: set[str] = set()
    for start in range(0, len(wanted), 2000):
        found.update(
            CachedCompletion.objects.filter(key__in=wanted[start : start + 2000]).values_list("key", flat=True)
        )
    return found


# --- Prices and estimates -------------------------------------------------------------------------------------


def price_for(model: str) -> tuple[Decimal, Decimal] | None:
    """USD per 1M tokens (input, output) from settings.JUDGE_PRICES, or None: then no cost is shown, never a guess."""
    price = settings.JUDGE_PRICES.get(model)
    if price is None:
        return None
    return Decimal(str(price[0])), Decimal(str(price[1]))


def cost_of(tokens_in: int, tokens_out: int, price_in: Decimal | None, price_out: Decimal | None) -> Decimal | None:
    if price_in is None or price_out is None:
        return None
    return (Decimal(tokens_in) * price_in + Decimal(tokens_out) * price_out) / MILLION


@dataclass(frozen=True)
class Estimate:
    n_items: int
    n_calls: int
    n_cached: int
    tokens_in: int  # estimated for the calls still to make
    tokens_out_max: int  # max_tokens for each call still to make: an upper bound
    cost_max: Decimal | None  # None: the model has no price in JUDGE_PRICES

    @property
    def n_to_call(self) -> int:
        return self.n_calls - self.n_cached

    def as_json(self) -> dict[str, object]:
        return {
            "n_items": self.n_items,
            "n_calls": self.n_calls,
            "n_cached": self.n_cached,
            "tokens_in": self.tokens_in,
            "tokens_out_max": self.tokens_out_max,
            "cost_max": None if self.cost_max is None else str(self.cost_max.quantize(Decimal("0.000001"))),
            "method": f"prompt tokens = characters / {prompts.CHARS_PER_TOKEN} + {prompts.TOKENS_PER_MESSAGE} per "
            f"message; output tokens = max_tokens per call (an upper bound); cached calls cost nothing",
        }


def estimate_for(*, context: RenderContext, planned: Sequence[PlannedCall], n_items: int) -> Estimate:
    cached = cached_keys(p.key for p in planned)
    to_call = {p.key: p for p in planned if p.key not in cached}  # identical requests are made once
    tokens_in = sum(prompts.estimate_tokens(p.request.messages) for p in to_call.values())
    tokens_out = context.version.max_tokens * len(to_call)
    price = price_for(context.version.model)
    return Estimate(
        n_items=n_items,
        n_calls=len(planned),
        n_cached=len(planned) - sum(1 for p in planned if p.key in to_call),
        tokens_in=tokens_in,
        tokens_out_max=tokens_out,
        cost_max=cost_of(tokens_in, tokens_out, *price) if price else None,
    )


def run_estimate(
    *, version: JudgeVersion, scope: str, item_ids: Sequence[int] | None = None, rubric_version: RubricVersion
) -> Estimate:
    """What a run would cost before it starts. Raises EndpointError or LookupError like render_context."""
    context = render_context(version=version, rubric_version=rubric_version)
    items = list(items_for_scope(project=version.judge.project, scope=scope, item_ids=item_ids))
    return estimate_for(context=context, planned=plan_calls(context, items), n_items=len(items))


# --- Totals of runs (counted from the verdicts) ---------------------------------------------------------------


@dataclass(frozen=True)
class RunTotals:
    n_verdicts: int
    n_ok: int
    n_invalid: int
    n_errors: int
    cache_hits: int
    calls_made: int
    tokens_in: int
    tokens_out: int
    cost: Decimal | None


_TOTALS = {
    "n_verdicts": Count("id"),
    "n_ok": Count("id", filter=Q(status=Verdict.Status.OK)),
    "n_invalid": Count("id", filter=Q(status=Verdict.Status.INVALID)),
    "n_errors": Count("id", filter=Q(status=Verdict.Status.ERROR)),
    "cache_hits": Count("id", filter=Q(cached=True)),
    "calls_made": Count("id", filter=Q(cached=False)),
    "tokens_in": Sum("tokens_in", filter=Q(cached=False), default=0),
    "tokens_out": Sum("tokens_out", filter=Q(cached=False), default=0),
}


def _totals(row: dict[str, int], run: JudgeRun) -> RunTotals:
    return RunTotals(
        n_verdicts=row.get("n_verdicts", 0),
        n_ok=row.get("n_ok", 0),
        n_invalid=row.get("n_invalid", 0),
        n_errors=row.get("n_errors", 0),
        cache_hits=row.get("cache_hits", 0),
        calls_made=row.get("calls_made", 0),
        tokens_in=row.get("tokens_in", 0),
        tokens_out=row.get("tokens_out", 0),
        cost=cost_of(row.get("tokens_in", 0), row.get("tokens_out", 0), run.price_in, run.price_out),
    )


def run_totals(*, run: JudgeRun) -> RunTotals:
    """Progress, cache hits and misses, invalid answers, tokens and the actual cost of one run, in one query.

    A cache miss is a call made to the model; its tokens are billed. A hit costs nothing.
    """
    return _totals(Verdict.objects.filter(run=run).aggregate(**_TOTALS), run)


def runs_totals(*, runs: Sequence[JudgeRun]) -> dict[int, RunTotals]:
    """run_totals for several runs in one grouped query."""
    grouped = Verdict.objects.filter(run__in=[r.pk for r in runs]).values("run_id").annotate(**_TOTALS)
    rows: dict[int, dict[str, int]] = {row["run_id"]: cast(dict[str, int], row) for row in grouped}
    return {run.pk: _totals(rows.get(run.pk, {}), run) for run in runs}


def verdicts_of_run(*, run: JudgeRun, show: str = "all") -> QuerySet[Verdict]:
    verdicts = Verdict.objects.filter(run=run).select_related("item").order_by("item_id", "order")
    if show == "invalid":
        verdicts = verdicts.filter(status=Verdict.Status.INVALID)
    elif show == "errors":
        verdicts = verdicts.filter(status=Verdict.Status.ERROR)
    return verdicts


def train_items(*, project: Project, limit: int = 50) -> list[Item]:
    """Train items a lead may pick few-shot examples from."""
    return list(Item.objects.filter(project=project, split=Item.Split.TRAIN).order_by("id")[:limit])
