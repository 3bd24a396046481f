"""The export formats: which exist, which project kinds each fits, and the rows of those that a named tool loads.

Each format is written for a tool that loads it with its own loader, and tests/annotate/test_export_loaders.py
proves it with that tool installed (dev dependencies):

- `jsonl`: one JSON object per item, every criterion's reference label (annotate's own shape).
- `csv`: the same, flat, one column per criterion field; optionally with a UTF-8 BOM for spreadsheets.
- `openai-evals-api`: the OpenAI Evals API's JSONL data source (`{"item": {...}}` per line), for a model-graded
  check: the item carries the conversation (`input` as text, `messages` as chat messages), the graded `output` and
  the human `reference` label. ITEM_SCHEMA is its `custom` data source's item_schema; LABEL_GRADER and
  MATCH_GRADER are grader templates whose `{{item.x}}` all resolve. The old id `openai-evals` is an alias.
- `inspect-ai`: Inspect AI's JSON dataset (`inspect_ai.dataset.json_dataset`): `id`, `input` (chat messages),
  `target` (the reference label), `metadata` (the graded output and the label's source, margin and count).
- `hf-datasets`: JSON Lines that `datasets.load_dataset("json", data_files=...)` loads whatever its size: every
  field has one type in every row (no nulls: "" for no reference, metadata as JSON text), because the loader infers
  the column types from the first block and fails on a later row whose value has another type.
- `preference`: pairwise `prompt`, `chosen`, `rejected` (TRL's preference dataset shape).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

JSONL = "application/jsonl; charset=utf-8"


@dataclass(frozen=True)
class Format:
    id: str
    label: str
    kinds: tuple[str, ...]  # the project kinds it fits
    content_type: str = JSONL
    extension: str = "jsonl"
    # One criterion (the one given, else the rubric's first) and only items with a reference on it.
    one_criterion: bool = False
    # A sentence for people: what it is for and how it loads.
    help: str = ""


BOTH = ("binary", "pairwise")
REGISTRY: dict[str, Format] = {
    f.id: f
    for f in (
        Format("jsonl", "JSON Lines", BOTH, help="One object per item with every criterion's reference label."),
        Format(
            "csv",
            "CSV",
            BOTH,
            content_type="text/csv; charset=utf-8",
            extension="csv",
            help="One row per item, one column per criterion field.",
        ),
        Format(
            "openai-evals-api",
            "OpenAI Evals API data source",
            ("binary",),
            one_criterion=True,
            help='Rows of {"item": {input, messages, output, reference, …}} for an eval\'s custom data source.',
        ),
        Format(
            "inspect-ai",
            "Inspect AI dataset",
            BOTH,
            one_criterion=True,
            help="For inspect_ai.dataset.json_dataset: input messages, the reference label as target.",
        ),
        Format(
            "hf-datasets",
            "Hugging Face datasets",
            BOTH,
            help='For datasets.load_dataset("json", data_files=...): one type per column, no nulls.',
        ),
        Format(
            "preference",
            "Preference pairs",
            ("pairwise",),
            one_criterion=True,
            help="prompt, chosen, rejected per item (ties and items without a reference are left out).",
        ),
    )
}
# Former ids, still accepted (pipelines use them): each names the format that replaced it.
ALIASES = {"openai-evals": "openai-evals-api"}
FORMATS = tuple(REGISTRY)
ACCEPTED = (*FORMATS, *ALIASES)


def resolve(fmt: str) -> str:
    """The format id for `fmt`, a current id or a former one (ALIASES); unknown ids are returned as they are."""
    return ALIASES.get(fmt, fmt)


def refusal(*, fmt: str, pairwise: bool) -> str:
    """Why a project of this kind cannot have `fmt` (a known format or alias), or "" when it can."""
    spec = REGISTRY.get(resolve(fmt))
    if spec is None:
        return ""
    kind = "pairwise" if pairwise else "binary"
    if kind in spec.kinds:
        return ""
    if spec.id == "preference":
        return "Preference pairs need a pairwise project: this one is binary."
    return (
        f"{spec.label} rows have one ideal answer, which a pairwise project does not give: "
        "export preference pairs or an Inspect AI dataset instead."
    )


def for_kind(*, pairwise: bool) -> list[Format]:
    """The formats this project kind can have, in REGISTRY order."""
    kind = "pairwise" if pairwise else "binary"
    return [f for f in REGISTRY.values() if kind in f.kinds]


def choices(*, pairwise: bool) -> list[tuple[str, str]]:
    return [(f.id, f.label) for f in for_kind(pairwise=pairwise)]


# --- The OpenAI Evals API data source ---------------------------------------------------------------------------

# The `item_schema` of a `{"type": "custom"}` data_source_config for these rows.
ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "external_id": {"type": "string"},
        "criterion": {"type": "string"},
        "input": {"type": "string"},
        "messages": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"role": {"type": "string"}, "content": {}},
                "required": ["role", "content"],
            },
            "minItems": 1,
        },
        "output": {"type": "string"},
        "reference": {"type": "string", "enum": ["pass", "fail"]},
    },
    "required": ["external_id", "criterion", "input", "messages", "output", "reference"],
    "additionalProperties": False,
}
# A label_model grader that has a model judge the exported output; its label is compared with the humans' through
# MATCH_GRADER or by reading the run's per-item results against `reference`.
LABEL_GRADER: dict[str, Any] = {
    "type": "label_model",
    "name": "judge",
    "model": "gpt-4o-mini",
    "input": [
        {
            "role": "developer",
            "content": "Does the assistant's output meet the criterion {{item.criterion}}? Answer pass or fail.",
        },
        {"role": "user", "content": "Conversation:\n{{item.input}}\n\nOutput to grade:\n{{item.output}}"},
    ],
    "labels": ["pass", "fail"],
    "passing_labels": ["pass"],
}
# A string_check grader for a run whose model was asked (with {{item.input}} and {{item.output}}) for pass or fail:
# it passes when the model's answer is the humans' reference label.
MATCH_GRADER: dict[str, Any] = {
    "type": "string_check",
    "name": "agrees with the humans",
    "input": "{{sample.output_text}}",
    "reference": "{{item.reference}}",
    "operation": "eq",
}


def transcript_text(messages: list[dict[str, Any]]) -> str:
    """Chat messages as plain text, one `role: content` paragraph each (a lone user message: its content)."""
    if len(messages) == 1 and messages[0].get("role") == "user" and isinstance(messages[0].get("content"), str):
        return str(messages[0]["content"])
    return "\n\n".join(f"{m['role']}: {_content_text(m.get('content'))}" for m in messages)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: their text
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else json.dumps(content, ensure_ascii=False)


def openai_evals_api_row(
    *, messages: list[dict[str, Any]], external_id: str, output: str, reference: str, criterion: str
) -> dict[str, Any]:
    return {
        "item": {
            "external_id": external_id,
            "criterion": criterion,
            "input": transcript_text(messages),
            "messages": messages,
            "output": output,
            "reference": reference,
        }
    }


# --- Inspect AI -----------------------------------------------------------------------------------------------

_INSPECT_ROLES = frozenset({"system", "user", "assistant", "tool"})


def inspect_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages as Inspect's ChatMessage reads them: its four roles ("developer" is a system message, another
    role a user message naming it), text content, and a tool message's call id only where one was given."""
    out = []
    for message in messages:
        role = str(message.get("role"))
        content = _content_text(message.get("content"))
        if role == "developer":
            role = "system"
        elif role not in _INSPECT_ROLES:
            role, content = "user", f"{role}: {content}"
        entry: dict[str, Any] = {"role": role, "content": content}
        if role == "tool" and message.get("tool_call_id"):
            entry["tool_call_id"] = str(message["tool_call_id"])
        out.append(entry)
    return out


def inspect_row(
    *,
    messages: list[dict[str, Any]],
    item: dict[str, Any],
    pairwise: bool,
    criterion: str,
    ref: dict[str, Any],
) -> dict[str, Any]:
    outputs = {"output_a": item["output_a"], "output_b": item["output_b"]} if pairwise else {"output": item["output"]}
    return {
        "id": item["external_id"],
        "input": inspect_messages(messages),
        "target": ref["reference"],
        "metadata": {
            **outputs,
            "criterion": criterion,
            "source": ref["source"],
            "margin": ref["margin"],
            "n_labels": ref["n_labels"],
            "split": item["split"],
            "item_metadata": item["metadata"],
        },
    }


# --- Hugging Face datasets ------------------------------------------------------------------------------------


def hf_row(*, item: dict[str, Any], pairwise: bool, rubric_version: int, refs: dict[str, dict[str, Any]]) -> dict:
    """One row with one type per field in every row: strings ("" for none), integers (0 for none), metadata as
    JSON text (its keys and types differ from item to item)."""
    row: dict[str, Any] = {"external_id": item["external_id"], "input": item["input"]}
    if pairwise:
        row |= {"output_a": item["output_a"], "output_b": item["output_b"]}
    else:
        row["output"] = item["output"]
    row |= {
        "metadata": json.dumps(item["metadata"], ensure_ascii=False, sort_keys=True),
        "split": item["split"],
        "rubric_version": rubric_version,
        "labels": {
            key: {
                "reference": ref["reference"] or "",
                "source": ref["source"] or "",
                "margin": ref["margin"] or 0,
                "n_labels": ref["n_labels"],
            }
            for key, ref in refs.items()
        },
    }
    return row
