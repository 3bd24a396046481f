"""Judge cards: a calibrated judge version as one JSON file, and the runner that uses it as a guardrail elsewhere.

    python -m judges.card CARD.json ITEMS.jsonl [-o VERDICTS.jsonl]

A card holds what decides a verdict (both templates, the endpoint's name and the pinned model, temperature and
max_tokens, the few-shot examples with the block the prompt shows, the rubric version's criterion) and what was
measured (the figures of the version's latest finished run on each split, with intervals and dates, and how often the
judge met the test split). It is signed with the deployment's SECRET_KEY, so a card edited by hand is refused.

The runner renders each item with the same functions as an in-app run (judges.selectors.plan_calls,
judges.prompts), asks the endpoint configured under the card's endpoint name through judges.llm.call (same retries and
shared rate limits), and reads answers and uses the completion cache as judges.services does: same cache key, same
table. So what was calibrated here is exactly what runs there, and a request already answered is never paid twice.

ITEMS.jsonl holds one JSON object per line: `input`, and `output` (binary) or `output_a` and `output_b` (pairwise);
`id` (else `external_id`) names the item in the verdicts; `external_id` and `metadata` are optional. The JSON Lines
export (`manage.py export_labels --format jsonl`) is such a file. A bad card or items file is refused before any call,
with exit code 2, and nothing is written.

This module is run as `python -m judges.card` before Django is set up, so it imports models inside functions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.core import signing

from judges import llm, prompts

if TYPE_CHECKING:
    from judges.models import JudgeVersion
    from judges.selectors import PlannedCall, RenderContext

SCHEMA = 1
SALT = "judges.card"
KINDS = ("binary", "pairwise")
VERDICTS = {"binary": ("pass", "fail"), "pairwise": ("a", "b", "tie")}
MAX_ITEMS = 1_000_000


class CardError(ValueError):
    """A card or items file that cannot be used; the message says what is wrong, for people."""


# --- Export ---------------------------------------------------------------------------------------------------


def _canonical(card: dict[str, Any]) -> str:
    body = {k: v for k, v in card.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _sign(card: dict[str, Any]) -> dict[str, Any]:
    return card | {"signature": signing.Signer(salt=SALT).signature(_canonical(card))}


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def card_build(*, version: JudgeVersion) -> dict[str, Any]:
    """The card of one judge version, signed. Its rubric is the one its latest finished run measured under (else the
    project's current rubric); `measured` holds the latest finished run on each split under that rubric version."""
    from annotate import exports
    from annotate import selectors as annotate_selectors
    from judges import selectors
    from judges.models import FewShotExample, JudgeRun

    judge = version.judge
    project = judge.project
    done = list(
        JudgeRun.objects.filter(version=version, status=JudgeRun.Status.DONE, report__isnull=False)
        .select_related("rubric_version")
        .order_by("-finished_at", "-id")
    )
    rubric = done[0].rubric_version if done else annotate_selectors.rubric_current(project=project)
    if rubric is None:
        raise CardError("The project has no rubric yet.")
    criterion = selectors.criterion_of_run(rubric_version=rubric, key=judge.criterion_key)
    if criterion is None:
        raise CardError(f"The criterion {judge.criterion_key!r} is not in rubric version {rubric.number}.")
    examples = list(FewShotExample.objects.filter(version=version).select_related("item").order_by("position"))
    as_prompt = [
        prompts.Example(
            input=ex.item.input,
            output=ex.item.output,
            output_a=ex.item.output_a,
            output_b=ex.item.output_b,
            verdict=ex.verdict,
            reasoning=ex.reasoning,
        )
        for ex in examples
    ]
    measured = []
    seen: set[str] = set()
    for run in done:
        if run.scope in seen or run.rubric_version_id != rubric.pk:
            continue
        seen.add(run.scope)
        report = run.report or {}
        measured.append(
            {
                "scope": run.scope,
                "split": JudgeRun.Scope(run.scope).label,
                "run_id": run.pk,
                "test_run_number": run.test_run_number,
                "rubric_version": rubric.number,
                "started_at": _iso(run.started_at),
                "finished_at": _iso(run.finished_at),
                "n_items": report.get("n_items"),
                "n_compared": report.get("n"),
                "n_invalid": report.get("n_invalid"),
                "n_errors": report.get("n_errors"),
                "reference": report.get("reference"),
                "labels": report.get("labels"),
                "confusion": report.get("confusion"),
                "figures": report.get("figures", {}),
            }
        )
    order = {JudgeRun.Scope.TEST: 0, JudgeRun.Scope.DEV: 1, JudgeRun.Scope.ALL: 2, JudgeRun.Scope.ITEMS: 3}
    measured.sort(key=lambda m: order.get(m["scope"], 9))
    card: dict[str, Any] = {
        "card_schema": SCHEMA,
        "project": {"slug": project.slug, "kind": project.kind},
        "judge": {"name": judge.name, "criterion_key": judge.criterion_key, "version": version.number},
        "created_at": _iso(version.created_at),
        "change_note": version.change_note,
        "prompt": {
            "system_template": version.system_template,
            "user_template": version.user_template,
            "answer_format": prompts.PAIRWISE_FORMAT if project.is_pairwise else prompts.BINARY_FORMAT,
        },
        "model": {
            "endpoint": version.endpoint,
            "model": version.model,
            "model_is_alias": version.model_is_alias,
            "temperature": version.temperature,
            "max_tokens": version.max_tokens,
        },
        "examples": [
            {
                "external_id": ex.item.external_id,
                "input": ex.item.input,
                "output": ex.item.output,
                "output_a": ex.item.output_a,
                "output_b": ex.item.output_b,
                "verdict": ex.verdict,
                "reasoning": ex.reasoning,
            }
            for ex in examples
        ],
        "examples_text": prompts.examples_text(as_prompt, kind=project.kind),
        "rubric": {
            "version": rubric.number,
            "criterion": {"key": criterion.key, "name": criterion.name, "description": criterion.description},
        },
        "measured": measured,
        "test_runs": {
            "of_this_version": JudgeRun.objects.filter(version=version, scope=JudgeRun.Scope.TEST).count(),
            "of_this_judge": selectors.test_runs_count(judge=judge),
        },
        "app_version": exports.app_version(),
    }
    return _sign(card)


def card_filename(card: dict[str, Any]) -> str:
    judge = card["judge"]
    return f"{card['project']['slug']}-{judge['criterion_key']}-judge-v{judge['version']}.card.json"


# --- Reading a card -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Card:
    project_slug: str
    kind: str
    endpoint: str
    model: str
    temperature: float
    max_tokens: int
    system_template: str
    user_template: str
    examples: tuple[prompts.Example, ...]
    criterion_key: str
    criterion_name: str
    criterion_description: str


def _field(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise CardError(f"The card has no {where}{key}.")
    value = obj[key]
    # JSON's true and false are ints to Python: never take them for a number.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise CardError(f"The card's {where}{key} has the wrong type.")
    return value


def card_read(data: Any) -> Card:
    """Check a card (schema, signature, every field the runner uses) and return what the runner needs.

    Raises CardError naming the first problem.
    """
    if not isinstance(data, dict):
        raise CardError("A card is a JSON object.")
    schema = data.get("card_schema")
    if schema != SCHEMA:
        raise CardError(f"Unknown card_schema {schema!r}: this version of annotate reads card_schema {SCHEMA}.")
    signature = data.get("signature")
    if not isinstance(signature, str):
        raise CardError("The card is not signed.")
    try:
        signing.Signer(salt=SALT).unsign(f"{_canonical(data)}:{signature}")
    except signing.BadSignature:
        raise CardError(
            "The card's signature does not match: it was changed after export, or exported by another deployment "
            "(another SECRET_KEY). Export it again."
        ) from None
    project = _field(data, "project", dict, "")
    kind = _field(project, "kind", str, "project.")
    if kind not in KINDS:
        raise CardError(f"Unknown project kind {kind!r}.")
    prompt = _field(data, "prompt", dict, "")
    model = _field(data, "model", dict, "")
    criterion = _field(_field(data, "rubric", dict, ""), "criterion", dict, "rubric.")
    examples = []
    for n, raw in enumerate(_field(data, "examples", list, "")):
        where = f"examples[{n}]."
        verdict = _field(raw, "verdict", str, where)
        if verdict not in VERDICTS[kind]:
            raise CardError(f"The card's {where}verdict must be one of {', '.join(VERDICTS[kind])}.")
        examples.append(
            prompts.Example(
                input=_field(raw, "input", str, where),
                output=_field(raw, "output", str, where),
                output_a=_field(raw, "output_a", str, where),
                output_b=_field(raw, "output_b", str, where),
                verdict=verdict,
                reasoning=_field(raw, "reasoning", str, where),
            )
        )
    if prompts.examples_text(examples, kind=kind) != _field(data, "examples_text", str, ""):
        raise CardError("The card's examples_text is not what its examples render to.")
    card = Card(
        project_slug=_field(project, "slug", str, "project."),
        kind=kind,
        endpoint=_field(model, "endpoint", str, "model."),
        model=_field(model, "model", str, "model."),
        temperature=float(_field(model, "temperature", (int, float), "model.")),
        max_tokens=_field(model, "max_tokens", int, "model."),
        system_template=_field(prompt, "system_template", str, "prompt."),
        user_template=_field(prompt, "user_template", str, "prompt."),
        examples=tuple(examples),
        criterion_key=_field(criterion, "key", str, "rubric.criterion."),
        criterion_name=_field(criterion, "name", str, "rubric.criterion."),
        criterion_description=_field(criterion, "description", str, "rubric.criterion."),
    )
    problems = prompts.version_problems(
        system=card.system_template, user=card.user_template, kind=kind, n_examples=len(examples)
    )
    if not card.model.strip():
        problems.append("The card names no model.")
    if not 0 <= card.temperature <= 2:
        problems.append("The temperature must be between 0 and 2.")
    if not 1 <= card.max_tokens <= 32000:
        problems.append("Max tokens must be between 1 and 32000.")
    if problems:
        raise CardError(" ".join(problems))
    return card


def card_load(path: Path) -> Card:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CardError(f"Cannot read the card {path}: {exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CardError(f"The card {path} is not JSON: {exc}") from None
    return card_read(data)


# --- Items ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CardItem:
    id: str | int
    fields: dict[str, Any]


def items_read(lines: Iterator[str], *, kind: str) -> list[CardItem]:
    """The items of an items file, all checked before any is judged. Raises CardError naming the line."""
    needed = ("input", "output_a", "output_b") if kind == "pairwise" else ("input", "output")
    items: list[CardItem] = []
    seen: set[str | int] = set()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise CardError(f"Items, line {n}: not JSON ({exc}).") from None
        if not isinstance(obj, dict):
            raise CardError(f"Items, line {n}: each line is a JSON object.")
        item_id = obj.get("id", obj.get("external_id"))
        if not isinstance(item_id, str | int) or isinstance(item_id, bool) or item_id == "":
            raise CardError(f"Items, line {n}: give each item an `id` (a string or an integer) or an `external_id`.")
        if item_id in seen:
            raise CardError(f"Items, line {n}: the id {item_id!r} is used twice.")
        seen.add(item_id)
        for key in needed:
            if not isinstance(obj.get(key), str):
                raise CardError(f"Items, line {n}: `{key}` must be a string ({kind} judge).")
        external_id = obj.get("external_id", str(item_id))
        metadata = obj.get("metadata") or {}
        if not isinstance(external_id, str) or not isinstance(metadata, dict):
            raise CardError(f"Items, line {n}: `external_id` must be a string and `metadata` an object.")
        fields = {key: obj[key] for key in needed} | {"external_id": external_id, "metadata": metadata}
        items.append(CardItem(item_id, fields))
        if len(items) > MAX_ITEMS:
            raise CardError(f"Items: at most {MAX_ITEMS:,} items per run.")
    if not items:
        raise CardError("Items: the file holds no items.")
    return items


# --- Running --------------------------------------------------------------------------------------------------


def _context(card: Card) -> RenderContext:
    """The in-app render context, built from the card instead of the database (nothing is saved)."""
    from annotate.models import Criterion
    from judges.models import JudgeVersion
    from judges.selectors import RenderContext

    try:
        endpoint = llm.endpoint_get(card.endpoint)
    except llm.EndpointError as exc:
        raise CardError(str(exc)) from None
    if not llm.endpoint_has_key(endpoint):
        raise CardError(f"The environment variable {endpoint.key_env} holding the endpoint's key is not set.")
    version = JudgeVersion(
        system_template=card.system_template,
        user_template=card.user_template,
        endpoint=card.endpoint,
        model=card.model,
        temperature=card.temperature,
        max_tokens=card.max_tokens,
    )
    criterion = Criterion(key=card.criterion_key, name=card.criterion_name, description=card.criterion_description)
    # Scoped like the app's cache (the signed card names its project): a card run here reuses the project's answers.
    return RenderContext(
        scope=card.project_slug,
        version=version,
        kind=card.kind,
        criterion=criterion,
        endpoint=endpoint,
        examples=card.examples,
    )


@dataclass
class Outcome:
    calls: int = 0
    cached: int = 0


def card_run(card: Card, items: Sequence[CardItem]) -> tuple[list[dict[str, Any]], Outcome]:
    """One verdict per item, in the items' order. Cached answers are used; new answers are cached as they arrive."""
    from django.conf import settings

    from annotate.models import Item
    from judges import selectors, services
    from judges.models import CachedCompletion

    context = _context(card)
    # Unsaved items as the renderer's input; their position stands in for a database id.
    rows = [Item(pk=n, **item.fields) for n, item in enumerate(items)]
    planned = selectors.plan_calls(context, rows)
    cache = services.cached_answers([p.key for p in planned])
    outcome = Outcome()
    answers: dict[str, tuple[llm.Completion | llm.Failure, bool]] = {
        key: (services.completion_of(row), True) for key, row in cache.items()
    }
    to_call = {p.key: p for p in planned if p.key not in answers}  # identical requests are made once
    threads = max(1, min(context.endpoint.max_concurrency, settings.JUDGE_MAX_THREADS))
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="judge-card") as pool:
        futures: dict[Future[llm.CallResult], PlannedCall] = {
            pool.submit(llm.call, context.endpoint, p.request): p for p in to_call.values()
        }
        for future in as_completed(futures):
            result = future.result()
            try:
                outcome.calls += 1
                if isinstance(result.outcome, llm.Completion):
                    CachedCompletion.objects.bulk_create(
                        [
                            services.cache_row(
                                key=futures[future].key,
                                endpoint=context.endpoint,
                                model=card.model,
                                completion=result.outcome,
                            )
                        ],
                        ignore_conflicts=True,
                    )
                answers[futures[future].key] = (result.outcome, False)
            finally:
                result.release()
    by_item: dict[int, list[dict[str, Any]]] = {}
    for p in planned:
        answer, was_cached = answers[p.key]
        by_item.setdefault(p.item_id, []).append(_order_verdict(p, answer, cached=was_cached, kind=card.kind))
    verdicts = [_item_verdict(item, by_item[n], kind=card.kind) for n, item in enumerate(items)]
    outcome.cached = sum(1 for p in planned if answers[p.key][1])
    return verdicts, outcome


def _order_verdict(
    call: PlannedCall, result: llm.Completion | llm.Failure, *, cached: bool, kind: str
) -> dict[str, Any]:
    from judges import services

    if isinstance(result, llm.Failure):
        return {
            "order": call.order,
            "status": "error",
            "verdict": None,
            "reasoning": "",
            "error": result.category,
            "cached": False,
            "tokens_in": 0,
            "tokens_out": 0,
        }
    judged = services.judgement_of(result.content, kind=kind, order=call.order)
    out: dict[str, Any] = {
        "order": call.order,
        "status": judged.status,
        "verdict": judged.value or None,
        "reasoning": judged.reasoning,
        "cached": cached,
        "tokens_in": result.tokens_in,
        "tokens_out": result.tokens_out,
    }
    if judged.raw:
        out["raw"] = judged.raw
    return out


def _item_verdict(item: CardItem, orders: list[dict[str, Any]], *, kind: str) -> dict[str, Any]:
    """Binary: the one answer. Pairwise: a verdict only when both orders agree (as an in-app report counts it)."""
    first = orders[0]
    out: dict[str, Any] = {
        "id": item.id,
        "verdict": first["verdict"],
        "status": first["status"],
        "reasoning": first["reasoning"],
        "cached": all(o["cached"] for o in orders),
        "tokens_in": sum(o["tokens_in"] for o in orders),
        "tokens_out": sum(o["tokens_out"] for o in orders),
    }
    if kind == "pairwise":
        statuses = {o["status"] for o in orders}
        values = {o["verdict"] for o in orders}
        if statuses == {"ok"}:
            out["status"] = "ok" if len(values) == 1 else "inconsistent"
            out["verdict"] = first["verdict"] if len(values) == 1 else None
        else:
            out["status"] = "error" if "error" in statuses else "invalid"
            out["verdict"] = None
        out["orders"] = {o["order"]: {k: v for k, v in o.items() if k != "order"} for o in orders}
    else:
        for key in ("error", "raw"):
            if key in first:
                out[key] = first[key]
    return out


# --- Command line ---------------------------------------------------------------------------------------------


def _write(verdicts: list[dict[str, Any]], output: str | None) -> None:
    lines = "".join(json.dumps(v, ensure_ascii=False) + "\n" for v in verdicts)
    if not output or output == "-":
        sys.stdout.write(lines)
        return
    # Written beside the target and renamed at the end: never half a file.
    partial = Path(f"{output}.partial")
    try:
        partial.write_text(lines, encoding="utf-8")
        os.replace(partial, output)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m judges.card", description="Run a judge card over items and write one verdict per item."
    )
    parser.add_argument("card", type=Path, help="the card, as exported from the judge version's page or the API")
    parser.add_argument("items", type=Path, help="JSON Lines: input and output (or output_a, output_b), and an id")
    parser.add_argument("-o", "--output", help="file to write (default: stdout)")
    args = parser.parse_args(argv)
    try:
        card = card_load(args.card)
        try:
            with args.items.open(encoding="utf-8") as f:
                items = items_read(iter(f), kind=card.kind)
        except (OSError, UnicodeDecodeError) as exc:
            raise CardError(f"Cannot read the items {args.items}: {exc}") from None
        verdicts, outcome = card_run(card, items)
    except CardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _write(verdicts, args.output)
    ok = sum(1 for v in verdicts if v["status"] == "ok")
    print(
        f"{len(verdicts)} verdicts ({ok} ok), {outcome.calls} model calls, {outcome.cached} answers from the cache.",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotate.settings")
    import django

    django.setup()
    sys.exit(main())
