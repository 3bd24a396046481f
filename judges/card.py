"""Judge cards: a calibrated judge version as one JSON file, and the runner that uses it as a guardrail elsewhere.

    ANNOTATE_CARD_KEY=... OPENAI_API_KEY=... python -m judges.card CARD.json ITEMS.jsonl [-o VERDICTS.jsonl]
        [--cache answers.jsonl | --redis-url redis://...] [--base-url URL] [--key-file FILE]

A card holds what decides a verdict (both templates, the endpoint with the pinned model, temperature and max_tokens,
the few-shot examples with the block the prompt shows, the rubric version's criterion) and what was measured (the
figures of the version's latest finished run on each split, with intervals and dates, and how often the judge met the
test split). When the project's current rubric defines the criterion differently from the rubric the card was
measured under, the card says so (`criterion_changed`) and the runner warns on every run.

The card is signed with HMAC-SHA256 under the project's card key, which a lead downloads beside the card and gives
the pipeline as a secret (ANNOTATE_CARD_KEY or --key-file). The key is derived from the deployment's SECRET_KEY and
the project's slug, so it reveals neither, and the runner needs neither the SECRET_KEY nor anything else of the app.

The runner needs no Django, no settings and no database: it renders each item with the same functions as an in-app
run (judges.calls, judges.prompts), asks the card's endpoint through judges.llm.call (same retries; the endpoint's key
from the environment variable the card names), and reads answers as in-app runs do. Answers are cached under the same
key as the app's (scoped to the card's project) in an optional JSON Lines file (--cache) or Redis (--redis-url), so
a request already answered is never paid twice. `runner/` packages these modules alone (see the README).

ITEMS.jsonl holds one JSON object per line: `input`, and `output` (binary) or `output_a` and `output_b` (pairwise);
`id` (else `external_id`) names the item in the verdicts; `external_id` and `metadata` are optional. The JSON Lines
export (`manage.py export_labels --format jsonl`) is such a file. A bad card, key or items file is refused before any
call, with exit code 2, and nothing is written.

Django and the app's modules are imported only inside card_build and card_key (the export, in the app).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from judges import calls, llm, prompts

if TYPE_CHECKING:
    from judges.models import JudgeVersion

SCHEMA = 2
KEY_ENV = "ANNOTATE_CARD_KEY"
KEY_PREFIX = "ack1_"
_KEY_SALT = b"annotate.judges.card-key:"
KINDS = ("binary", "pairwise")
VERDICTS = {"binary": ("pass", "fail"), "pairwise": ("a", "b", "tie")}
MAX_ITEMS = 1_000_000


class CardError(ValueError):
    """A card or items file that cannot be used; the message says what is wrong, for people."""


# --- Export ---------------------------------------------------------------------------------------------------


def _canonical(card: dict[str, Any]) -> str:
    body = {k: v for k, v in card.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _mac(card: Mapping[str, Any], key: str) -> str:
    return hmac.new(key.encode(), _canonical(dict(card)).encode(), hashlib.sha256).hexdigest()


def card_key(project_slug: str) -> str:
    """The project's card key: HMAC-SHA256 of the slug under the deployment's SECRET_KEY. A lead hands it to the
    pipelines that run the project's cards; it reveals neither the SECRET_KEY nor another project's key."""
    from django.conf import settings

    digest = hmac.new(settings.SECRET_KEY.encode(), _KEY_SALT + project_slug.encode(), hashlib.sha256).hexdigest()
    return KEY_PREFIX + digest


def _sign(card: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    return card | {"signature": _mac(card, key or card_key(card["project"]["slug"]))}


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
    try:
        endpoint = llm.endpoint_get(version.endpoint)
    except llm.EndpointError as exc:
        raise CardError(str(exc)) from None
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
                # Which kinds of human reference the figures were computed on (gold, majority, single), and whether
                # single labels served (stats.reference); absent from reports computed before they were counted.
                "single_label_reference": report.get("single_label_reference"),
                "reference_kinds": report.get("compared_kinds"),
                "labels": report.get("labels"),
                "confusion": report.get("confusion"),
                "figures": report.get("figures", {}),
            }
        )
    changed: dict[str, Any] | None = None
    current = annotate_selectors.rubric_current(project=project)
    if current is not None and current.pk != rubric.pk:
        now = selectors.criterion_of_run(rubric_version=current, key=judge.criterion_key)
        if now is None:
            changed = {
                "current_rubric_version": current.number,
                "current": None,
                "message": f"The criterion {criterion.key!r} is no longer in the project's rubric (now "
                f"v{current.number}): this card judges by rubric v{rubric.number}.",
            }
        elif (now.name, now.description) != (criterion.name, criterion.description):
            changed = {
                "current_rubric_version": current.number,
                "current": {"key": now.key, "name": now.name, "description": now.description},
                "message": f"The criterion {criterion.key!r} changed in rubric v{current.number} after this card's "
                f"calibration: the card judges by its definition in rubric v{rubric.number}. Run the judge again "
                "under the current rubric and export a new card.",
            }
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
        "endpoint": {
            "name": endpoint.name,
            "base_url": endpoint.base_url,
            "key_env": endpoint.key_env,
            "structured_outputs": endpoint.structured_outputs,
            "max_tokens_param": endpoint.max_tokens_param,
            "max_concurrency": endpoint.max_concurrency,
            "rpm": endpoint.rpm,
            "timeout": endpoint.timeout,
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
        "criterion_changed": changed,
        "measured": measured,
        "test_runs": {
            "of_this_version": JudgeRun.objects.filter(version=version, n_test_items__gt=0).count(),
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
    endpoint: llm.Endpoint
    model: str
    temperature: float
    max_tokens: int
    system_template: str
    user_template: str
    examples: tuple[prompts.Example, ...]
    criterion_key: str
    criterion_name: str
    criterion_description: str
    criterion_changed: str | None  # what the card says when its criterion changed after calibration


def _field(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise CardError(f"The card has no {where}{key}.")
    value = obj[key]
    # JSON's true and false are ints to Python: never take them for a number.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise CardError(f"The card's {where}{key} has the wrong type.")
    return value


def _endpoint(raw: Any) -> llm.Endpoint:
    where = "endpoint."
    endpoint = llm.Endpoint(
        name=_field(raw, "name", str, where),
        base_url=_field(raw, "base_url", str, where).rstrip("/"),
        key_env=_field(raw, "key_env", str, where),
        structured_outputs=_field(raw, "structured_outputs", bool, where),
        max_tokens_param=_field(raw, "max_tokens_param", str, where),
        max_concurrency=_field(raw, "max_concurrency", int, where),
        rpm=_field(raw, "rpm", int, where),
        timeout=float(_field(raw, "timeout", (int, float), where)),
    )
    if endpoint.max_tokens_param not in ("max_tokens", "max_completion_tokens"):
        raise CardError("The card's endpoint.max_tokens_param is max_tokens or max_completion_tokens.")
    if not 1 <= endpoint.max_concurrency <= 512 or endpoint.rpm < 0 or not 0 < endpoint.timeout <= 3600:
        raise CardError("The card's endpoint limits are out of range.")
    return endpoint


def card_read(data: Any, *, key: str) -> Card:
    """Check a card (schema, signature under the project's card key, every field the runner uses) and return what
    the runner needs. Raises CardError naming the first problem."""
    if not isinstance(data, dict):
        raise CardError("A card is a JSON object.")
    schema = data.get("card_schema")
    if schema != SCHEMA:
        raise CardError(f"Unknown card_schema {schema!r}: this runner reads card_schema {SCHEMA}. Export it again.")
    signature = data.get("signature")
    if not isinstance(signature, str):
        raise CardError("The card is not signed.")
    if not hmac.compare_digest(signature, _mac(data, key)):
        raise CardError(
            "The card's signature does not match: it was changed after export, or the card key is not its project's "
            f"({KEY_ENV} or --key-file). Export it again, or use the key downloaded beside it."
        )
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
    changed = data.get("criterion_changed")
    if changed is not None:
        changed = _field(data, "criterion_changed", dict, "")
    card = Card(
        project_slug=_field(project, "slug", str, "project."),
        kind=kind,
        endpoint=_endpoint(_field(data, "endpoint", dict, "")),
        model=_field(model, "model", str, "model."),
        temperature=float(_field(model, "temperature", (int, float), "model.")),
        max_tokens=_field(model, "max_tokens", int, "model."),
        system_template=_field(prompt, "system_template", str, "prompt."),
        user_template=_field(prompt, "user_template", str, "prompt."),
        examples=tuple(examples),
        criterion_key=_field(criterion, "key", str, "rubric.criterion."),
        criterion_name=_field(criterion, "name", str, "rubric.criterion."),
        criterion_description=_field(criterion, "description", str, "rubric.criterion."),
        criterion_changed=_field(changed, "message", str, "criterion_changed.") if changed is not None else None,
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


def card_load(path: Path, *, key: str) -> Card:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CardError(f"Cannot read the card {path}: {exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CardError(f"The card {path} is not JSON: {exc}") from None
    return card_read(data, key=key)


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


@dataclass(frozen=True)
class _Fields:
    """An item as judges.calls renders it (the attributes of annotate.models.Item it reads)."""

    external_id: str
    input: str
    output: str = ""
    output_a: str = ""
    output_b: str = ""
    metadata: Any = None


@dataclass(frozen=True)
class _Planned:
    item: int  # position in the items file
    order: str
    request: llm.ChatRequest
    key: str


class AnswerCache(Protocol):
    """Answers by cache key (the app's key: judges.llm.ChatRequest.cache_key), as JSON objects."""

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]: ...

    def put(self, key: str, answer: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class NoCache:
    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {}

    def put(self, key: str, answer: dict[str, Any]) -> None:
        return None

    def close(self) -> None:
        return None


class FileCache:
    """A JSON Lines file of answers, one per line, appended as they arrive (the first answer for a key stays).
    A line cut short by a crash is skipped on the next run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.known: dict[str, dict[str, Any]] = {}
        try:
            with path.open(encoding="utf-8") as f:
                for line in f:
                    try:
                        row = json.loads(line)
                    except ValueError:
                        continue
                    usable = isinstance(row, dict) and isinstance(row.get("key"), str)
                    if usable and isinstance(row.get("content"), str):
                        self.known.setdefault(row["key"], row)
        except FileNotFoundError:
            pass
        except (OSError, UnicodeDecodeError) as exc:
            raise CardError(f"Cannot read the cache {path}: {exc}") from None
        try:
            self.file = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise CardError(f"Cannot write the cache {path}: {exc}") from None

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {k: self.known[k] for k in keys if k in self.known}

    def put(self, key: str, answer: dict[str, Any]) -> None:
        if key in self.known:
            return
        row = {"key": key} | answer
        self.known[key] = row
        self.file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class RedisCache:
    """Answers in Redis, one string per key, kept 30 days after they were first stored."""

    TTL_SECONDS = 30 * 24 * 3600

    def __init__(self, url: str) -> None:
        try:
            import redis
        except ImportError:
            raise CardError("--redis-url needs the redis package: install the runner with its [redis] extra.") from None
        self.redis = redis.Redis.from_url(url, socket_timeout=10)
        try:
            self.redis.ping()
        except redis.RedisError as exc:
            raise CardError(f"Redis does not answer at the --redis-url: {exc.__class__.__name__}.") from None

    @staticmethod
    def _name(key: str) -> str:
        return f"judges:card-cache:{key}"

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        wanted = list(dict.fromkeys(keys))
        for start in range(0, len(wanted), 1000):
            chunk = wanted[start : start + 1000]
            for key, raw in zip(chunk, self.redis.mget([self._name(k) for k in chunk]), strict=True):
                if raw is None:
                    continue
                try:
                    row = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(row, dict) and isinstance(row.get("content"), str):
                    found[key] = row
        return found

    def put(self, key: str, answer: dict[str, Any]) -> None:
        self.redis.set(self._name(key), json.dumps(answer, ensure_ascii=False), ex=self.TTL_SECONDS, nx=True)

    def close(self) -> None:
        self.redis.close()


@dataclass
class Outcome:
    calls: int = 0
    cached: int = 0


MAX_THREADS = 64


def plan(card: Card, items: Sequence[CardItem]) -> list[_Planned]:
    """Every request of these items, rendered and keyed exactly as an in-app run (judges.calls)."""
    planned = []
    for n, item in enumerate(items):
        fields = _Fields(**item.fields)
        for order in calls.orders_for(card.kind):
            request, key = calls.request_for(
                endpoint=card.endpoint,
                scope=card.project_slug,  # the signed card names its project: the app's cache keys, scoped alike
                kind=card.kind,
                system_template=card.system_template,
                user_template=card.user_template,
                model=card.model,
                temperature=card.temperature,
                max_tokens=card.max_tokens,
                criterion_name=card.criterion_name,
                criterion_description=card.criterion_description,
                examples=card.examples,
                item=fields,
                order=order,
            )
            planned.append(_Planned(n, order, request, key))
    return planned


def card_run(
    card: Card,
    items: Sequence[CardItem],
    *,
    cache: AnswerCache | None = None,
    limits: llm.Limiter | None = None,
    rules: llm.Policy | None = None,
) -> tuple[list[dict[str, Any]], Outcome]:
    """One verdict per item, in the items' order. Cached answers are used; new answers are cached as they arrive."""
    if card.endpoint.key_env and not os.environ.get(card.endpoint.key_env):
        raise CardError(f"The environment variable {card.endpoint.key_env} holding the endpoint's key is not set.")
    cache = cache or NoCache()
    limits = limits or llm.LocalLimiter()
    rules = rules or llm.Policy()
    planned = plan(card, items)
    outcome = Outcome()
    answers: dict[str, tuple[llm.Completion | llm.Failure, bool]] = {
        key: (calls.completion_from(row), True) for key, row in cache.get_many([p.key for p in planned]).items()
    }
    to_call = {p.key: p for p in planned if p.key not in answers}  # identical requests are made once
    threads = max(1, min(card.endpoint.max_concurrency, MAX_THREADS))
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="judge-card") as pool:
        futures: dict[Future[llm.CallResult], _Planned] = {
            pool.submit(llm.call, card.endpoint, p.request, limits=limits, rules=rules): p for p in to_call.values()
        }
        for future in as_completed(futures):
            result = future.result()
            try:
                outcome.calls += 1
                if isinstance(result.outcome, llm.Completion):
                    done = result.outcome
                    cache.put(
                        futures[future].key,
                        {
                            "endpoint": card.endpoint.name,
                            "model": card.model,
                            "content": done.content,
                            "tokens_in": done.tokens_in,
                            "tokens_out": done.tokens_out,
                            "finish_reason": done.finish_reason[:32],
                        },
                    )
                answers[futures[future].key] = (result.outcome, False)
            finally:
                result.release()
    by_item: dict[int, list[dict[str, Any]]] = {}
    for p in planned:
        answer, was_cached = answers[p.key]
        by_item.setdefault(p.item, []).append(_order_verdict(p, answer, cached=was_cached, kind=card.kind))
    verdicts = [_item_verdict(item, by_item[n], kind=card.kind) for n, item in enumerate(items)]
    outcome.cached = sum(1 for p in planned if answers[p.key][1])
    return verdicts, outcome


def _order_verdict(call: _Planned, result: llm.Completion | llm.Failure, *, cached: bool, kind: str) -> dict[str, Any]:
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
    judged = calls.judgement_of(result.content, kind=kind, order=call.order)
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


def _key(path: Path | None) -> str:
    if path is not None:
        try:
            key = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise CardError(f"Cannot read the card key {path}: {exc}") from None
    else:
        key = os.environ.get(KEY_ENV, "").strip()
    if not key:
        raise CardError(
            f"No card key: set {KEY_ENV} or pass --key-file with the project's card key (downloaded beside the card)."
        )
    return key


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m judges.card", description="Run a judge card over items and write one verdict per item."
    )
    parser.add_argument("card", type=Path, help="the card, as exported from the judge version's page or the API")
    parser.add_argument("items", type=Path, help="JSON Lines: input and output (or output_a, output_b), and an id")
    parser.add_argument("-o", "--output", help="file to write (default: stdout)")
    parser.add_argument("--key-file", type=Path, help=f"file holding the project's card key (default: ${KEY_ENV})")
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument("--cache", type=Path, help="JSON Lines file of cached answers, read and appended to")
    cache.add_argument("--redis-url", help="Redis for cached answers and rate limits shared between runners")
    parser.add_argument(
        "--base-url", help="the endpoint's base URL, when it is reached from here under another address"
    )
    args = parser.parse_args(argv)
    store: AnswerCache | None = None
    try:
        card = card_load(args.card, key=_key(args.key_file))
        if args.base_url:
            card = replace(card, endpoint=replace(card.endpoint, base_url=args.base_url.rstrip("/")))
        if card.criterion_changed:
            print(f"warning: {card.criterion_changed}", file=sys.stderr)
        try:
            with args.items.open(encoding="utf-8") as f:
                items = items_read(iter(f), kind=card.kind)
        except (OSError, UnicodeDecodeError) as exc:
            raise CardError(f"Cannot read the items {args.items}: {exc}") from None
        limits: llm.Limiter = llm.LocalLimiter()
        if args.redis_url:
            store = RedisCache(args.redis_url)
            limits = llm.RedisLimiter(args.redis_url, grace_seconds=5)
        elif args.cache:
            store = FileCache(args.cache)
        verdicts, outcome = card_run(card, items, cache=store, limits=limits)
    except CardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if store is not None:
            store.close()
    _write(verdicts, args.output)
    ok = sum(1 for v in verdicts if v["status"] == "ok")
    print(
        f"{len(verdicts)} verdicts ({ok} ok), {outcome.calls} model calls, {outcome.cached} answers from the cache.",
        file=sys.stderr,
    )
    if card.criterion_changed:
        print(f"warning: {card.criterion_changed}", file=sys.stderr)
    return 0


def main_exit() -> None:
    """The `annotate-judge-card` command of the runner package (runner/)."""
    sys.exit(main())


if __name__ == "__main__":
    main_exit()
