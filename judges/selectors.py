"""Reads for judges that views, services, tasks, the command and the API share.

Access: every lookup here takes the project that `annotate.selectors.project_for_user` returned and scopes the object
to it, so an id from another project is a 404 like any other.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, cast

import numpy as np
from django.conf import settings
from django.db.models import Count, Q, QuerySet, Sum
from django.http import Http404

from annotate import selectors as annotate_selectors
from annotate.models import (
    AgreementReport,
    Criterion,
    GoldLabel,
    Item,
    Label,
    ProductionRecord,
    Project,
    RubricVersion,
)
from annotate.stats import agreement
from annotate.stats import reference as refkind
from judges import calls, compare, llm, prompts, run_reference
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
            # Every run with test items is a look at test, whatever its scope (judge_run_start numbers them).
            n_test_runs=Count("versions__runs", filter=Q(versions__runs__n_test_items__gt=0), distinct=True),
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
    """How many times this judge's runs have looked at the held-out test split (shown, so nobody tunes on test
    quietly): every run with test items counts, on the test split, all items or chosen items."""
    return JudgeRun.objects.filter(version__judge=judge, n_test_items__gt=0).count()


def runs_of_judge(*, judge: Judge, limit: int = 50) -> list[JudgeRun]:
    return list(
        JudgeRun.objects.filter(version__judge=judge).select_related("version", "started_by").order_by("-id")[:limit]
    )


def criterion_of_run(*, rubric_version: RubricVersion, key: str) -> Criterion | None:
    return next((c for c in annotate_selectors.criteria_of_version(rubric_version.pk) if c.key == key), None)


# --- Rendering what a run will send ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderContext:
    scope: str  # the project's slug: cached answers are shared within a project only
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
        scope=project.slug,
        version=version,
        kind=project.kind,
        criterion=criterion,
        endpoint=llm.endpoint_get(version.endpoint),
        examples=examples,
    )


def item_data(item: Item, order: str) -> prompts.ItemData:
    return calls.item_data(item, order)


def plan_calls(context: RenderContext, items: Iterable[Item | ProductionRecord]) -> list[PlannedCall]:
    """Every request of these items, in order (judges/calls.py renders them, as the card runner does). Runs plan their
    items with it and the daily monitor its production records (`item_id` is then the record's id)."""
    version = context.version
    planned = []
    for item in items:
        for order in orders_for(context.kind):
            request, key = calls.request_for(
                endpoint=context.endpoint,
                scope=context.scope,
                kind=context.kind,
                system_template=version.system_template,
                user_template=version.user_template,
                model=version.model,
                temperature=version.temperature,
                max_tokens=version.max_tokens,
                criterion_name=context.criterion.name,
                criterion_description=context.criterion.description,
                examples=context.examples,
                item=item,
                order=order,
            )
            planned.append(PlannedCall(item.pk, order, request, key))
    return planned


def items_for_scope(
    *, project: Project, scope: str, item_ids: Sequence[int] | None = None, include_test: bool = False
) -> QuerySet[Item]:
    """The items a run of `scope` judges. "All items" leaves the held-out test split out unless `include_test` (the
    run then counts as a look at test); chosen items are all returned: judge_run_start refuses test ones unconfirmed."""
    items = Item.objects.filter(project=project)
    if scope in (JudgeRun.Scope.DEV, JudgeRun.Scope.TEST):
        items = items.filter(split=scope)
    elif scope == JudgeRun.Scope.ALL and not include_test:
        items = items.exclude(split=Item.Split.TEST)
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


STANDIN_PRICE = (Decimal(0), Decimal(0))


def price_for(model: str, *, endpoint: str | None = None) -> tuple[Decimal, Decimal] | None:
    """USD per 1M tokens (input, output) from settings.JUDGE_PRICES, or None: then no cost is shown, never a guess.

    A model served by the stand-in (`endpoint`, see llm.is_standin) costs nothing, whatever its name: a stand-in
    version named gpt-4o is not priced as gpt-4o."""
    if endpoint is not None and llm.is_standin(endpoint):
        return STANDIN_PRICE
    price = settings.JUDGE_PRICES.get(model) or settings.JUDGE_RECORDED_PRICES.get(model)
    if price is None:
        return None
    return Decimal(str(price[0])), Decimal(str(price[1]))


def run_prices(run: JudgeRun) -> tuple[Decimal | None, Decimal | None]:
    """The prices a run's cost is counted at: those stored when it started, or none for a stand-in's run (one started
    before stand-in runs were priced at $0 stored its model name's price)."""
    if run.version.uses_standin:
        return STANDIN_PRICE
    return run.price_in, run.price_out


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
    price = price_for(context.version.model, endpoint=context.version.endpoint)
    return Estimate(
        n_items=n_items,
        n_calls=len(planned),
        n_cached=len(planned) - sum(1 for p in planned if p.key in to_call),
        tokens_in=tokens_in,
        tokens_out_max=tokens_out,
        cost_max=cost_of(tokens_in, tokens_out, *price) if price else None,
    )


def run_estimate(
    *,
    version: JudgeVersion,
    scope: str,
    item_ids: Sequence[int] | None = None,
    rubric_version: RubricVersion,
    include_test: bool = False,
) -> Estimate:
    """What a run would cost before it starts. Raises EndpointError or LookupError like render_context."""
    context = render_context(version=version, rubric_version=rubric_version)
    project = version.judge.project
    items = list(items_for_scope(project=project, scope=scope, item_ids=item_ids, include_test=include_test))
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
        cost=cost_of(row.get("tokens_in", 0), row.get("tokens_out", 0), *run_prices(run)),
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


# --- Disagreements and comparisons (the judge report pages; the human reference is judges.run_reference) -------


# The kinds of disagreement a lead filters by, per project kind: (key, label).
DISAGREEMENT_KINDS = {
    "binary": (("lenient", "Judge too lenient (passes what humans failed)"), ("strict", "Judge too strict")),
    "pairwise": (
        ("lenient", "Judge prefers the output humans rejected"),
        ("strict", "Judge and humans differ on a tie"),
        ("order", "Inconsistent order (the answer changes with the order)"),
    ),
}


def disagreement_kind(*, judge: str, human: str) -> str:
    """lenient: the judge passes what humans failed, or prefers the output they rejected. strict: the judge fails what
    humans passed, or a tie on one side only."""
    if judge == "pass" or (judge in ("a", "b") and human in ("a", "b")):
        return "lenient"
    return "strict"


@dataclass(frozen=True)
class Disagreements:
    rows: list[tuple[int, str]]  # (item id, kind), by item id
    counts: dict[str, int]
    reference: dict[
        int, run_reference.Reference
    ]  # every judged item with a label or gold label, with or without a reference label


def disagreements_of_run(*, run: JudgeRun) -> Disagreements:
    """Every item where the run's judge and the humans differ, and every position-inconsistent pairwise item."""
    judged = run_reference.judge_values(run=run)
    values, inconsistent = judged.values, judged.inconsistent
    reference = run_reference.human_reference(run=run, item_ids=set(values) | inconsistent).items
    rows = []
    for item_id in sorted(set(values) | inconsistent):
        human = reference[item_id].value if item_id in reference else None
        if item_id in inconsistent:
            rows.append((item_id, "order"))
        elif human is not None and values[item_id] != human:
            rows.append((item_id, disagreement_kind(judge=values[item_id], human=human)))
    counts = {key: 0 for key, _ in DISAGREEMENT_KINDS[run.project.kind]}
    for _, kind in rows:
        counts[kind] = counts.get(kind, 0) + 1
    return Disagreements(rows, counts, reference)


@dataclass(frozen=True)
class ItemCard:
    """One item as the report pages show it: the text, every human label with its note, and each run's verdicts."""

    item: Item
    kind: str
    reference: run_reference.Reference | None
    labels: list[Label]
    gold: GoldLabel | None
    verdicts: dict[int, list[Verdict]]  # run id -> verdicts of that run on the item, in order


def item_cards(
    *, runs: Sequence[JudgeRun], items: Sequence[tuple[int, str]], reference: dict[int, run_reference.Reference]
) -> list[ItemCard]:
    """Cards for a page of items (a handful of queries, whatever the page size)."""
    if not runs or not items:
        return []
    run = runs[-1]
    ids = [item_id for item_id, _ in items]
    criterion = criterion_of_run(rubric_version=run.rubric_version, key=run.version.judge.criterion_key)
    by_id = Item.objects.in_bulk(ids)
    labels: dict[int, list[Label]] = {}
    gold: dict[int, GoldLabel] = {}
    if criterion is not None:
        for label in (
            Label.objects.filter(item_id__in=ids, criterion=criterion)
            .select_related("annotator")
            .order_by("item_id", "annotator__username")
        ):
            labels.setdefault(label.item_id, []).append(label)
        gold = {
            g.item_id: g
            for g in GoldLabel.objects.filter(item_id__in=ids, criterion=criterion).select_related("set_by")
        }
    verdicts: dict[tuple[int, int], list[Verdict]] = {}
    for verdict in Verdict.objects.filter(run__in=[r.pk for r in runs], item_id__in=ids).order_by("order"):
        verdicts.setdefault((verdict.item_id, verdict.run_id), []).append(verdict)
    return [
        ItemCard(
            item=by_id[item_id],
            kind=kind,
            reference=reference.get(item_id),
            labels=labels.get(item_id, []),
            gold=gold.get(item_id),
            verdicts={r.pk: verdicts.get((item_id, r.pk), []) for r in runs},
        )
        for item_id, kind in items
        if item_id in by_id
    ]


def human_kappa(*, run: JudgeRun) -> float | None:
    """The humans' own κ on the run's criterion (Fleiss' κ among annotators) from the stored agreement report of the
    run's rubric version, or None when no report is stored or the figure is not defined."""
    stored = AgreementReport.objects.filter(project=run.project, rubric_version=run.rubric_version).first()
    if stored is None:
        return None
    section = stored.data.get("criteria", {}).get(run.version.judge.criterion_key, {})
    value = section.get("human", {}).get("fleiss_kappa", {}).get("value")
    return float(value) if value is not None else None


def target_of(judge: Judge) -> dict[str, float | None]:
    return {
        "tpr": judge.target_tpr,
        "tnr": judge.target_tnr,
        "kappa": judge.target_kappa,
        "accuracy": judge.target_accuracy,
    }


def run_target_check(*, run: JudgeRun, human_kappa_value: float | None = None) -> compare.TargetCheck:
    judge = run.version.judge
    if not run.report:
        return compare.TargetCheck("unknown", (), "The run has no report yet.")
    if judge.target == Judge.Target.KAPPA_HUMAN and human_kappa_value is None:
        human_kappa_value = human_kappa(run=run)
    return compare.target_check(
        target=judge.target,
        thresholds=target_of(judge),
        kind=run.report.get("kind", run.project.kind),
        figures=run.report.get("figures", {}),
        human_kappa=human_kappa_value,
    )


def latest_done_run(*, version: JudgeVersion, scope: str = JudgeRun.Scope.DEV) -> JudgeRun | None:
    return (
        JudgeRun.objects.filter(version=version, scope=scope, status=JudgeRun.Status.DONE)
        .select_related("version__judge", "rubric_version")
        .order_by("-id")
        .first()
    )


def latest_run(*, version: JudgeVersion, scope: str = JudgeRun.Scope.DEV) -> JudgeRun | None:
    """The newest run of the version on the scope that is done or still going (not failed or cancelled)."""
    return (
        JudgeRun.objects.filter(version=version, scope=scope)
        .exclude(status__in=[JudgeRun.Status.FAILED, JudgeRun.Status.CANCELLED])
        .select_related("version__judge", "rubric_version")
        .order_by("-id")
        .first()
    )


def latest_done_runs(*, judge: Judge, scope: str = JudgeRun.Scope.DEV) -> dict[int, JudgeRun]:
    """Per version of the judge, its newest finished run on the scope (one query)."""
    out: dict[int, JudgeRun] = {}
    runs = (
        JudgeRun.objects.filter(version__judge=judge, scope=scope, status=JudgeRun.Status.DONE)
        .select_related("version", "rubric_version")
        .order_by("version_id", "-id")
    )
    for run in runs:
        out.setdefault(run.version_id, run)
    return out


@dataclass(frozen=True)
class Comparison:
    a: JudgeRun
    b: JudgeRun
    deltas: list[compare.Delta]
    flips: compare.Flips
    common: list[int]  # item ids, aligned with the positions in `flips`
    n_only_a: int
    n_only_b: int
    reference: dict[int, run_reference.Reference]
    common_kinds: dict[str, int]  # the common items by reference kind (gold, majority, single)


def comparison(*, a: JudgeRun, b: JudgeRun, n_boot: int = agreement.N_BOOT) -> Comparison:
    """Two finished runs of the same judge on the items both settled a verdict on and the humans have a reference for
    (under run b's rubric version: one reference for both)."""
    kind = a.project.kind
    codes = {"fail": agreement.FAIL, "pass": agreement.PASS, "a": agreement.A, "b": agreement.B, "tie": agreement.TIE}
    values_a, values_b = run_reference.judge_values(run=a).values, run_reference.judge_values(run=b).values
    found = run_reference.human_reference(run=b, item_ids=set(values_a) | set(values_b))
    reference = found.labeled
    common = found.compared(set(values_a) & set(values_b))
    human = np.array([codes[str(reference[i].value)] for i in common], dtype=np.int64)
    va = np.array([codes[values_a[i]] for i in common], dtype=np.int64)
    vb = np.array([codes[values_b[i]] for i in common], dtype=np.int64)
    return Comparison(
        a=a,
        b=b,
        deltas=compare.paired_deltas(human, va, vb, kind=kind, n_boot=n_boot),
        flips=compare.flips(human, va, vb, kind=kind),
        common=common,
        n_only_a=len((set(values_a) - set(values_b)) & set(reference)),
        n_only_b=len((set(values_b) - set(values_a)) & set(reference)),
        reference=reference,
        common_kinds={name: sum(1 for i in common if reference[i].kind == name) for name in refkind.SHOWN[:3]},
    )


@dataclass(frozen=True)
class ModelChoice:
    """One configuration (a version: same templates, one model) with its newest finished dev run."""

    version: JudgeVersion
    run: JudgeRun
    figure: dict[str, Any]  # the figure the target is about, else κ
    cost_per_1000: Decimal | None  # as if every verdict were a call: cache hits priced like misses
    check: compare.TargetCheck
    best: bool = False


def prompt_key(version: JudgeVersion, examples: Sequence[tuple[str, str, str]]) -> str:
    """Versions with the same key send the same prompt (templates and few-shot examples); only the model differs."""
    text = json.dumps([version.system_template, version.user_template, list(examples)])
    return hashlib.sha256(text.encode()).hexdigest()


def model_choices(*, judge: Judge, min_models: int = 2) -> list[list[ModelChoice]]:
    """Groups of versions with the same prompt on `min_models` or more models, each with its newest dev run's
    agreement and cost per 1,000 verdicts; in each group the cheapest configuration that meets the target is marked
    `best`."""
    runs = latest_done_runs(judge=judge)
    if not runs:
        return []
    examples: dict[int, list[tuple[str, str, str]]] = {}
    for ex in FewShotExample.objects.filter(version_id__in=list(runs)).order_by("position"):
        examples.setdefault(ex.version_id, []).append((str(ex.item_id), ex.verdict, ex.reasoning))
    tokens = {
        row["run_id"]: row
        for row in Verdict.objects.filter(run__in=list(runs.values()))
        .values("run_id")
        .annotate(n=Count("id"), tin=Sum("tokens_in", default=0), tout=Sum("tokens_out", default=0))
    }
    groups: dict[str, list[ModelChoice]] = {}
    figure_name = (compare.target_figures(target=judge.target, kind=judge.project.kind) or ("kappa",))[0]
    for version_id, run in runs.items():
        version = run.version
        row = tokens.get(run.pk, {"n": 0, "tin": 0, "tout": 0})
        cost = cost_of(row["tin"], row["tout"], *run_prices(run))
        per_1000 = cost * 1000 / row["n"] if cost is not None and row["n"] else None
        version.judge = judge
        run.version = version
        choice = ModelChoice(
            version=version,
            run=run,
            figure=(run.report or {}).get("figures", {}).get(figure_name, {}),
            cost_per_1000=per_1000,
            check=run_target_check(run=run),
        )
        groups.setdefault(prompt_key(version, examples.get(version_id, [])), []).append(choice)
    out = []
    for group in groups.values():
        if len({c.version.model for c in group}) < min_models:
            continue
        meeting = [c for c in group if c.check.status == "calibrated" and c.cost_per_1000 is not None]
        best = min(meeting, key=lambda c: (c.cost_per_1000, -c.version.number)) if meeting else None
        out.append(
            sorted(
                (replace(c, best=c is best) for c in group),
                key=lambda c: (c.cost_per_1000 is None, c.cost_per_1000 or 0),
            )
        )
    return out


def latest_alignment(*, project: Project) -> dict[int, JudgeRun]:
    """Per judge of the project, its newest finished run on dev (the judge list's "latest alignment")."""
    out: dict[int, JudgeRun] = {}
    runs = (
        JudgeRun.objects.filter(project=project, scope=JudgeRun.Scope.DEV, status=JudgeRun.Status.DONE)
        .select_related("version__judge", "rubric_version")
        .order_by("-id")
    )
    for run in runs:
        out.setdefault(run.version.judge_id, run)
    return out
