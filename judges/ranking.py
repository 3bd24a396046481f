"""Every configuration of a judge ranked: each version (its prompt on its model) by its newest finished dev run's
figure, with position consistency and cost per 1,000 verdicts beside it, and the cheapest configuration that meets
the target marked. The model-choice groups (selectors.model_choices) compare models on one prompt; this ranks prompts
and models together. Reads only; the figures are the stored reports'."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from judges import recorded, selectors
from judges.models import FewShotExample, Judge


@dataclass(frozen=True)
class Ranked:
    choice: selectors.ModelChoice
    rank: int
    prompt: str  # "Chain of thought" for a recorded LLMBar strategy, else "Prompt 2" (numbered by first version)
    consistency: dict[str, Any]  # pairwise: the position consistency figure; empty for binary judges
    coverage: float | None  # pairwise: the share of the run's items judged the same in both orders (the figure's n)


def _prompt_names(choices: list[selectors.ModelChoice], keys: dict[int, str]) -> dict[str, str]:
    names: dict[str, str] = {}
    for choice in sorted(choices, key=lambda c: c.version.number):
        key = keys[choice.version.pk]
        if key in names:
            continue
        found = choice.version.recording
        names[key] = recorded.STRATEGY_LABELS[found.strategy] if found else f"Prompt {len(names) + 1}"
    return names


def configuration_ranking(*, judge: Judge) -> list[Ranked]:
    """Best figure first (configurations whose figure is undefined last); `best` on the cheapest one that meets the
    target, as in the model-choice groups, but over every configuration."""
    runs = selectors.latest_done_runs(judge=judge)
    if len(runs) < 2:
        return []
    examples: dict[int, list[tuple[str, str, str]]] = {}
    for ex in FewShotExample.objects.filter(version_id__in=list(runs)).order_by("position"):
        examples.setdefault(ex.version_id, []).append((str(ex.item_id), ex.verdict, ex.reasoning))
    choices = [c for group in selectors.model_choices(judge=judge, min_models=1) for c in group]
    keys = {c.version.pk: selectors.prompt_key(c.version, examples.get(c.version.pk, [])) for c in choices}
    names = _prompt_names(choices, keys)
    meeting = [c for c in choices if c.check.status == "calibrated" and c.cost_per_1000 is not None]
    best = min(meeting, key=lambda c: (c.cost_per_1000, -c.version.number)) if meeting else None

    def order(c: selectors.ModelChoice) -> tuple[bool, float, int]:
        value = c.figure.get("value")
        return (value is None, -(value or 0.0), c.version.number)

    ranked = []
    for n, choice in enumerate(sorted(choices, key=order), 1):
        report = choice.run.report or {}
        n_items = report.get("n_items") or 0
        ranked.append(
            Ranked(
                choice=replace(choice, best=choice is best),
                rank=n,
                prompt=names[keys[choice.version.pk]],
                consistency=report.get("figures", {}).get("position_consistency", {}),
                coverage=(report.get("n", 0) / n_items) if n_items and "n_both_orders" in report else None,
            )
        )
    return ranked
