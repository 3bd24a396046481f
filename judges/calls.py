"""One item into one model request, and the model's answer into a verdict: the part of a judge run that needs no
database, shared by in-app runs (judges.selectors.plan_calls, judges.services) and the judge card runner
(judges/card.py), which runs where neither Django nor the app's database is installed. Keeping it in one place is
what makes a card render, key and read exactly as the app does.

Imports only the standard library, judges.prompts and judges.llm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from judges import llm, prompts

# The values of judges.models.Verdict.Order and Verdict.Status (TextChoices compare equal to these strings).
ORDER_ONE, ORDER_AB, ORDER_BA = "one", "ab", "ba"
STATUS_OK, STATUS_INVALID, STATUS_ERROR = "ok", "invalid", "error"
BINARY_VERDICTS = ("pass", "fail")


class ItemFields(Protocol):
    """What rendering reads of an item: annotate.models.Item, or the card runner's items."""

    @property
    def external_id(self) -> str: ...
    @property
    def input(self) -> str: ...
    @property
    def output(self) -> str: ...
    @property
    def output_a(self) -> str: ...
    @property
    def output_b(self) -> str: ...
    @property
    def metadata(self) -> Any: ...


def orders_for(kind: str) -> tuple[str, ...]:
    """The orders an item is shown in: pairwise items twice (A first, then B first), binary items once."""
    return (ORDER_AB, ORDER_BA) if kind == "pairwise" else (ORDER_ONE,)


def item_data(item: ItemFields, order: str) -> prompts.ItemData:
    """The item as the template sees it in this order: for "ba", output B is shown first (as {{ output_a }})."""
    first, second = (item.output_b, item.output_a) if order == ORDER_BA else (item.output_a, item.output_b)
    return prompts.ItemData(
        external_id=item.external_id,
        input=item.input,
        output=item.output,
        output_a=first,
        output_b=second,
        metadata=item.metadata,
    )


def request_for(
    *,
    endpoint: llm.Endpoint,
    scope: str,
    kind: str,
    system_template: str,
    user_template: str,
    model: str,
    temperature: float,
    max_tokens: int,
    criterion_name: str,
    criterion_description: str,
    examples: Sequence[prompts.Example],
    item: ItemFields,
    order: str,
) -> tuple[llm.ChatRequest, str]:
    """The request for one item in one order, and its cache key (scoped to the project: `scope` is its slug)."""
    messages = prompts.render_messages(
        system_template=system_template,
        user_template=user_template,
        kind=kind,
        item=item_data(item, order),
        criterion_name=criterion_name,
        criterion_description=criterion_description,
        examples=examples,
    )
    request = llm.build_request(
        endpoint=endpoint, kind=kind, model=model, messages=messages, temperature=temperature, max_tokens=max_tokens
    )
    return request, request.cache_key(endpoint, scope=scope)


def canonical(answer: str, *, order: str) -> str:
    """The model's answer in canonical terms: for pairwise shown B-first, its "A" is the item's output_b."""
    if answer in BINARY_VERDICTS:
        return answer
    if order == ORDER_BA:
        return {"A": "b", "B": "a", "tie": "tie"}[answer]
    return {"A": "a", "B": "b", "tie": "tie"}[answer]


@dataclass(frozen=True)
class Judgement:
    """The model's text read as a verdict: OK with its canonical value, or invalid with the raw text kept."""

    status: str
    answer: str = ""
    value: str = ""
    reasoning: str = ""
    raw: str = ""


def judgement_of(content: str, *, kind: str, order: str) -> Judgement:
    answer = llm.parse_answer(content, kind=kind)
    if answer is None:
        return Judgement(status=STATUS_INVALID, raw=content[:20_000])
    return Judgement(
        status=STATUS_OK,
        answer=answer.verdict,
        value=canonical(answer.verdict, order=order),
        reasoning=answer.reasoning[:5000],
    )


def completion_from(row: Mapping[str, Any]) -> llm.Completion:
    """A cached answer (content, tokens_in, tokens_out, finish_reason) as a completion: nothing was called."""
    return llm.Completion(
        content=str(row["content"]),
        tokens_in=int(row.get("tokens_in") or 0),
        tokens_out=int(row.get("tokens_out") or 0),
        finish_reason=str(row.get("finish_reason") or ""),
        attempts=0,
        latency_ms=0,
    )
