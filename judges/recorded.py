"""Recorded judges: what five real LLM judges answered on LLMBar's 419 items (annotate/demo_data/llmbar, MIT, Zeng et
al. ICLR 2024), replayed offline.

The stand-in model server (judges/standin.py) serves them on its `recorded` endpoint: a request whose model and
rendered prompt match a recording, an LLMBar item in either order and one of the authors' prompt templates as
`templates()` turns it into the app's placeholders, gets what that model answered there, in the app's verdict format
with the model's own text as the reasoning. Anything else gets the plain stand-in's answer, labelled as such.

Pure and without Django (the stand-in runs without it): the standard library and judges.prompts only.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from judges import prompts

DATA = Path(__file__).resolve().parent.parent / "annotate" / "demo_data" / "llmbar"
SUBSETS = ("Natural", "Adversarial/Neighbor", "Adversarial/GPTInst", "Adversarial/GPTOut", "Adversarial/Manual")
# The authors' prompting strategies whose template needs nothing but the instruction and the two outputs (SOURCE.md).
STRATEGIES = ("Vanilla_NoRules", "Vanilla", "Vanilla_1shot", "CoT")
STRATEGY_LABELS = {
    "Vanilla_NoRules": "Vanilla, no rules",
    "Vanilla": "Vanilla (with rules)",
    "Vanilla_1shot": "Vanilla, one-shot",
    "CoT": "Chain of thought",
}
ATTRIBUTION = (
    "LLMBar (Zeng et al., “Evaluating Large Language Models at Evaluating Instruction Following”, ICLR 2024; "
    "princeton-nlp/LLMBar, MIT)"
)


@dataclass(frozen=True)
class Model:
    folder: str  # the recording's folder name in LLMBar (evaluators/<folder>/)
    model: str  # the model name a judge version uses to replay it
    label: str


MODELS = (
    Model("GPT-4", "gpt-4-0613", "GPT-4 (0613)"),
    Model("ChatGPT-0301", "gpt-3.5-turbo-0301", "ChatGPT (gpt-3.5-turbo-0301)"),
    Model("PaLM2", "text-bison-001", "PaLM 2 (text-bison-001)"),
    Model("LLaMA2", "llama-2-70b-chat", "Llama 2 70B chat"),
    Model("Falcon", "falcon-180b-chat", "Falcon 180B chat"),
)
BY_MODEL = {m.model: m for m in MODELS}


@dataclass(frozen=True)
class Item:
    id: str  # "<subset>/<index in the subset's dataset.json>"
    subset: str
    input: str
    output_1: str
    output_2: str
    label: int  # the experts' gold label: 1 or 2


@dataclass(frozen=True)
class Answer:
    """What a model answered about one item in one order: its text, and the output it chose in the dataset's
    numbering ("1" is output_1 wherever it was shown), or None when the authors could not read a choice."""

    completion: str
    winner: str | None


@dataclass(frozen=True)
class Recording:
    model: Model
    strategy: str
    answers: tuple[tuple[Answer, Answer], ...]  # per item of items(): (swap = False, swap = True)
    statistics: Mapping[str, Mapping[str, Any]]  # the authors' statistics.json, by subset

    @property
    def label(self) -> str:
        return f"{self.model.label} · {STRATEGY_LABELS[self.strategy]}"


@cache
def items() -> tuple[Item, ...]:
    with (DATA / "items.jsonl").open(encoding="utf-8") as f:
        return tuple(Item(**json.loads(line)) for line in f if line.strip())


@cache
def recordings() -> dict[tuple[str, str], Recording]:
    """Every recording by (model name, strategy), in the order of MODELS and STRATEGIES."""
    found: dict[tuple[str, str], Recording] = {}
    folders = {m.folder: m for m in MODELS}
    with (DATA / "answers.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            model = folders[row["model"]]
            answers = tuple((Answer(a[0], a[1]), Answer(a[2], a[3])) for a in row["answers"])
            found[(model.model, row["strategy"])] = Recording(model, row["strategy"], answers, row["statistics"])
    order = {(m.model, s): n for n, (m, s) in enumerate((m, s) for m in MODELS for s in STRATEGIES)}
    return dict(sorted(found.items(), key=lambda kv: order[kv[0]]))


PLACEHOLDERS = {"{input}": "{{ input }}", "{output_1}": "{{ output_a }}", "{output_2}": "{{ output_b }}"}


@cache
def templates(strategy: str) -> tuple[str, str]:
    """The authors' template as the app's (system, user) templates: their system turn, and everything from their
    first user turn to the end (the one-shot example's turns stay in it, written as the authors wrote them, since the
    app sends one system and one user message). {input}, {output_1} and {output_2} become {{ input }},
    {{ output_a }} and {{ output_b }}: the output shown first and second."""
    if strategy not in STRATEGIES:
        raise KeyError(strategy)
    text = (DATA / "prompts" / "comparison" / f"{strategy}.txt").read_text(encoding="utf-8")
    system_start, user_start, end = "<|im_start|>system\n", "<|im_start|>user\n", "<|im_end|>"
    system = text[text.index(system_start) + len(system_start) : text.index(end)].strip()
    user = text[text.index(user_start) + len(user_start) :]
    user = user.removesuffix(end).rstrip("\n")
    for theirs, ours in PLACEHOLDERS.items():
        user = user.replace(theirs, ours)
    return system, user


def recording_of(*, model: str, system_template: str, user_template: str) -> Recording | None:
    """The recording a judge version replays: its model is a recorded one and its templates are a strategy's."""
    if model not in BY_MODEL:
        return None
    for strategy in STRATEGIES:
        if templates(strategy) == (system_template, user_template):
            return recordings().get((model, strategy))
    return None


def _key(system: str, user: str) -> bytes:
    return hashlib.sha256(f"{len(system)}:{system}{user}".encode()).digest()


def messages_for(strategy: str, item: Item, *, swapped: bool) -> list[dict[str, str]]:
    """The messages the app sends for this item in this order with this strategy's templates (judges.prompts)."""
    system, user = templates(strategy)
    first, second = (item.output_2, item.output_1) if swapped else (item.output_1, item.output_2)
    return prompts.render_messages(
        system_template=system,
        user_template=user,
        kind="pairwise",
        item=prompts.ItemData(external_id=item.id, input=item.input, output_a=first, output_b=second),
        criterion_name="",
        criterion_description="",
    )


_index_lock = threading.Lock()
_index: dict[bytes, tuple[str, int, bool]] | None = None


def _messages_index() -> dict[bytes, tuple[str, int, bool]]:
    """(strategy, item number, swapped) by the hash of the rendered system and user messages. The templates use no
    criterion placeholder, so what a project calls its criterion does not change the messages."""
    global _index
    with _index_lock:
        if _index is None:
            index = {}
            for strategy in STRATEGIES:
                for n, item in enumerate(items()):
                    for swapped in (False, True):
                        system, user = (m["content"] for m in messages_for(strategy, item, swapped=swapped))
                        index[_key(system, user)] = (strategy, n, swapped)
            _index = index
        return _index


@dataclass(frozen=True)
class Reply:
    content: str
    tokens_out: int
    recording: Recording
    item: Item
    swapped: bool


def shown_verdict(winner: str | None, *, swapped: bool) -> str | None:
    """The recorded choice as the position it was shown in: A (first) or B (second)."""
    if winner not in ("1", "2"):
        return None
    first = "2" if swapped else "1"
    return "A" if winner == first else "B"


def reply_content(answer: Answer, *, swapped: bool) -> str:
    """The recorded answer in the app's verdict format, the model's own text as the reasoning. An answer the authors
    could not read either is sent as the model wrote it, so the app stores it as invalid with its text kept."""
    verdict = shown_verdict(answer.winner, swapped=swapped)
    if verdict is None:
        return answer.completion
    return json.dumps({"reasoning": answer.completion, "verdict": verdict}, ensure_ascii=False)


def tokens(text: str) -> int:
    """The stand-in's token count: one per four characters."""
    return math.ceil(len(text) / 4)


def reply_for(model: str, messages: Sequence[Mapping[str, Any]]) -> Reply | None:
    """What the recorded model answered to these messages, or None when no recording matches them."""
    if model not in BY_MODEL:
        return None
    system = next((str(m.get("content", "")) for m in messages if m.get("role") == "system"), "")
    user = next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), "")
    found = _messages_index().get(_key(system, user))
    if found is None:
        return None
    strategy, n, swapped = found
    recording = recordings().get((model, strategy))
    if recording is None:
        return None
    answer = recording.answers[n][1 if swapped else 0]
    return Reply(reply_content(answer, swapped=swapped), tokens(answer.completion), recording, items()[n], swapped)
