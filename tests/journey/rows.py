"""The small file the lead imports in the journey: three real pairwise items.

Source: LLMBar (Zeng et al., "Evaluating Large Language Models at Evaluating Instruction Following", ICLR 2024), the
public repository princeton-nlp/LLMBar at commit 900616bff90b6c6c8e1681f7d079250637c55992, file
Dataset/LLMBar/Natural/dataset.json, rows 20, 21 and 24 (0-based), copied unchanged from
/work/shared/datasets/llmbar-judges/Natural/dataset.json. License: MIT, Copyright (c) 2023 Princeton Natural Language
Processing. `label` is the expert's gold choice (1 = output_1 follows the instruction better), kept as metadata.
"""

from __future__ import annotations

import json

LLMBAR_NATURAL = [
    {
        "row": 20,
        "input": "Generate two rhymes for the following word. Moon",
        "output_1": "Soon, Loon",
        "output_2": "Clone, June, Nore, Tune",
        "label": 1,
    },
    {
        "row": 21,
        "input": (
            "Given the following input statement, provide the type of sentiment in the statement and the extent of "
            "sentiment in terms of sentiment scores. This restaurant has the best service I've ever seen. You can "
            "design the score scale by yourself."
        ),
        "output_1": "This statement has a sentiment score of 9 / 10",
        "output_2": "Positive sentiment, sentiment score: 9.5 out of 10",
        "label": 2,
    },
    {
        "row": 24,
        "input": (
            "Generate a new sentence combining two of the following given sentences, with a correct relationship "
            "between them. My daughter was jumping up and down. She was excited to go out to the park."
        ),
        "output_1": "My daughter was jumping up and down, because she was excited to go out to the park.",
        "output_2": "My daughter was jumping up and down, but she was excited to go out to the park.",
        "label": 1,
    },
]


def pairwise_items() -> list[dict]:
    """The rows as the app's pairwise import fields (JSON Lines objects)."""
    return [
        {
            "external_id": f"llmbar-natural-{row['row']}",
            "input": row["input"],
            "output_a": row["output_1"],
            "output_b": row["output_2"],
            "metadata": {"source": "LLMBar Natural (MIT)", "gold": "a" if row["label"] == 1 else "b"},
        }
        for row in LLMBAR_NATURAL
    ]


def pairwise_jsonl() -> str:
    return "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in pairwise_items())
