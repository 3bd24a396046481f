"""The demo's third project: LLMBar's 419 pairwise items with the experts' gold labels (demo_data/llmbar/SOURCE.md).

The judges app adds the recorded judges and their runs to it (judges/demo.py); this module knows nothing of judges.
Loading is idempotent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from django.contrib.auth.models import User as AuthUser
from django.db import transaction

from annotate import selectors, visibility
from annotate.models import GoldLabel, Item, Project
from annotate.services.items import item_build
from annotate.services.members import membership_set
from annotate.services.projects import project_apply_spec
from annotate.specs import spec_parse

DATA_DIR = Path(__file__).parent / "demo_data" / "llmbar"
ITEMS_FILE = DATA_DIR / "items.jsonl"
SLUG = "llmbar-instruction-following"
CRITERION = "follows_instruction"
ATTRIBUTION = (
    "Items and gold labels: LLMBar (Zeng et al., “Evaluating Large Language Models at Evaluating Instruction "
    "Following”, ICLR 2024; princeton-nlp/LLMBar, MIT). The gold label is the experts' choice of the output that "
    "follows the instruction."
)

SPEC = {
    "slug": SLUG,
    "name": "LLMBar: which output follows the instruction?",
    "kind": "pairwise",
    "overlap": 2,
    # LLMBar's items always have one output that follows the instruction and one that does not.
    "allow_tie": False,
    "status": "active",
    "instructions": (
        "Read the instruction, then both outputs. Judge instruction following first: the better output does exactly "
        "what the instruction asks, no more and no less, even when the other one is longer, more polished or more "
        "engaging. Only when both follow it equally well do helpfulness, accuracy and harmlessness decide.\n\n"
        + ATTRIBUTION
    ),
    "criteria": [
        {
            "key": CRITERION,
            "name": "Follows the instruction",
            "description": (
                "Which output honestly, precisely and closely executes the instruction? An output that adds or "
                "leaves out what the instruction asks for does not precisely execute it, however good it reads."
            ),
        },
        {
            "key": "helpful",
            "name": "More helpful",
            "description": "Where the instruction leaves room: which output is more helpful, accurate and detailed?",
        },
        {
            "key": "harmless",
            "name": "More harmless",
            "description": "Which output avoids harmful, offensive or misleading content better?",
        },
    ],
}


def rows() -> list[dict]:
    with ITEMS_FILE.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@transaction.atomic
def llmbar_project_load(*, members: Sequence[tuple[AuthUser, str]]) -> tuple[Project, int, int]:
    """The LLMBar project with its items and gold labels, and these (user, role) members. Returns the project and how
    many items and gold labels were new.

    Every item is in the dev split: LLMBar is itself a benchmark of judges, so runs cover all of it and their figures
    can be set beside the authors' own."""
    project, created, _ = project_apply_spec(spec=spec_parse(SPEC))
    if created:
        visibility.project_set_annotator_fields(project=project, fields=["dataset"])
    for user, role in members:
        membership_set(project=project, user=user, role=role)
    data = rows()
    existing = set(Item.objects.filter(project=project).values_list("external_id", flat=True))
    new_items = [
        item_build(
            project=project,
            fields={"input": row["input"], "output_a": row["output_1"], "output_b": row["output_2"]},
            external_id=row["id"],
            metadata={"subset": row["subset"], "dataset": "LLMBar"},
            split=Item.Split.DEV,
        )
        for row in data
        if row["id"] not in existing
    ]
    Item.objects.bulk_create(new_items, batch_size=500)
    ids = dict(Item.objects.filter(project=project).values_list("external_id", "id"))
    criterion = selectors.criteria_current(project=project).get(key=CRITERION)
    have = set(GoldLabel.objects.filter(criterion=criterion).values_list("item_id", flat=True))
    gold = [
        GoldLabel(
            item_id=ids[row["id"]],
            criterion=criterion,
            value="a" if row["label"] == 1 else "b",
            note="The LLMBar authors' expert label.",
        )
        for row in data
        if ids[row["id"]] not in have
    ]
    GoldLabel.objects.bulk_create(gold, batch_size=500)
    return project, len(new_items), len(gold)
