"""PPI++ on real judge errors: LLMBar's 419 items with experts' gold labels and what ChatGPT-0301 and GPT-4 answered
(shared/datasets/llmbar-judges, MIT, Zeng et al. ICLR 2024). The "pass" here is "output 1 is the better one": a rate
with a true value known from all 419 gold labels. Humans "label" a random 60 of them and the judge the rest, many
times over; the interval must hold the true rate as often as it claims, with the real judge's real mistakes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from judges import estimates

ROOT = Path(__file__).resolve().parents[3] / "shared/datasets/llmbar-judges"
SUBSETS = ("Natural", "Adversarial/Neighbor", "Adversarial/GPTInst", "Adversarial/GPTOut", "Adversarial/Manual")

pytestmark = pytest.mark.skipif(not ROOT.exists(), reason="the shared LLMBar dataset is not on this machine")


def _load(model: str) -> tuple[np.ndarray, np.ndarray]:
    gold, judge = [], []
    for subset in SUBSETS:
        for row in json.loads((ROOT / subset / "evaluators" / model / "Vanilla" / "result.json").read_text()):
            gold.append(1.0 if row["label"] == 1 else 0.0)
            judge.append(1.0 if row["results"][0]["swap = False"]["winner"] == "1" else 0.0)
    return np.array(gold), np.array(judge)


@pytest.mark.parametrize("model", ["ChatGPT-0301", "GPT-4"])
def test_ppi_covers_the_true_rate_with_real_judge_errors(model):
    gold, judge = _load(model)
    assert gold.size == 419
    truth = gold.mean()
    rng = np.random.default_rng(419)
    hits, widths, human_widths = 0, [], []
    for _ in range(1000):
        labeled = np.zeros(gold.size, dtype=bool)
        labeled[rng.choice(gold.size, 60, replace=False)] = True
        found = estimates.ppi_mean(gold[labeled], judge[labeled], judge[~labeled])
        assert found.low is not None and found.high is not None and found.width is not None
        hits += found.low <= truth <= found.high
        widths.append(found.width)
        human_widths.append(estimates.human_mean(gold[labeled]).width)
    # Sampling 60 of 419 without replacement makes the interval a little conservative, never liberal.
    assert hits / 1000 >= 0.94
    if model == "GPT-4":
        # GPT-4 agrees with the experts on most items: its verdicts narrow the interval.
        assert np.mean(widths) < 0.9 * np.mean(human_widths)
