"""Reads behind the production-quality page and the run page's bias probe: a run's verdicts joined with the human
reference labels, turned into the arrays judges/estimates.py takes. The maths lives there; this module only selects.

Production records are the project's items that came from the daily production sample (Item.Source.SAMPLE): the
daily job draws them at random from a day's traffic and the queue offers them in a shuffled order, so the ones humans
have labeled so far are a random subset of them, which is what PPI++ needs. Items imported by hand are not
production traffic and are left out of the pass-rate estimates (the bias probe uses every item of the run).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.db.models.functions import Length

from annotate.models import Item, Project
from annotate.stats import agreement
from judges import estimates, run_reference
from judges.models import JudgeRun, Verdict

# A metadata field offered for comparisons has at most this many distinct values on the records (more is an id).
MAX_FIELD_VALUES = 50
# The bias probe gives each of this many most common values of a field (after the most common, the baseline) its own
# effect against the baseline; rarer values are pooled with the baseline.
MAX_PROBE_LEVELS = 5


@dataclass(frozen=True)
class RunRows:
    """One row per item of the run with a settled pass/fail verdict (invalid answers and failed calls are left out)."""

    verdict: np.ndarray  # 1.0 pass, 0.0 fail
    human: np.ndarray  # 1.0 pass, 0.0 fail, nan without a reference label
    sample: np.ndarray  # bool: a production record (daily sample item)
    length: np.ndarray  # characters of the output the judge saw
    metadata: list[dict[str, Any]]

    @property
    def labeled(self) -> np.ndarray:
        return ~np.isnan(self.human)


def run_rows(*, run: JudgeRun) -> RunRows:
    values = run_reference.judge_values(run=run).values
    references = run_reference.human_reference(run=run, item_ids=values).labeled
    # The run's items by subquery (not a list of ids in the SQL), and only the output's length, not its text.
    items = (
        Item.objects.filter(pk__in=Verdict.objects.filter(run=run).values("item_id"))
        .annotate(output_length=Length("output"))
        .order_by("pk")
        .values_list("pk", "source", "output_length", "metadata")
    )
    verdict, human, sample, length, metadata = [], [], [], [], []
    for pk, source, output_length, meta in items.iterator(chunk_size=2000):
        if pk not in values:
            continue  # invalid answers and failed calls only: no verdict to explain
        ref = references.get(pk)
        verdict.append(1.0 if values[pk] == "pass" else 0.0)
        human.append(np.nan if ref is None else (1.0 if ref.value == "pass" else 0.0))
        sample.append(source == Item.Source.SAMPLE)
        length.append(output_length)
        metadata.append(meta if isinstance(meta, dict) else {})
    return RunRows(
        np.array(verdict, dtype=np.float64),
        np.array(human, dtype=np.float64),
        np.array(sample, dtype=np.bool_),
        np.array(length, dtype=np.float64),
        metadata,
    )


def _value(meta: dict[str, Any], key: str) -> str | None:
    found = meta.get(key)
    return None if found is None or isinstance(found, dict | list) else str(found)


def field_values(metadata: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Metadata fields with a handful of plain values (not ids, not nested), each with its values, most common first."""
    counts: dict[str, Counter[str]] = {}
    for meta in metadata:
        for key in meta:
            value = _value(meta, key)
            if value is not None:
                counts.setdefault(key, Counter())[value] += 1
    return {
        key: [value for value, _ in counter.most_common()]
        for key, counter in sorted(counts.items())
        if len(counter) <= MAX_FIELD_VALUES
    }


@dataclass(frozen=True)
class Quality:
    """The three estimates of one criterion's pass rate on production records, side by side."""

    ppi: estimates.Estimate
    human: estimates.Estimate
    rogan_gladen: agreement.Figure
    n_records: int


def quality(verdict: np.ndarray, human: np.ndarray) -> Quality:
    """PPI++, human-only and Rogan–Gladen on the same records: labeled ones have a human label, the rest only a
    verdict. Rogan–Gladen corrects the judge's rate on the unlabeled records with its TPR/TNR on the labeled ones."""
    labeled = ~np.isnan(human)
    y, f_lab, f_unl = human[labeled], verdict[labeled], verdict[~labeled]
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    tpr = float(f_lab[y == 1].mean()) if n_pos else 0.0
    tnr = float(1.0 - f_lab[y == 0].mean()) if n_neg else 0.0
    observed = float(f_unl.mean()) if f_unl.size else 0.0
    return Quality(
        ppi=estimates.ppi_mean(y, f_lab, f_unl),
        human=estimates.human_mean(y),
        rogan_gladen=agreement.corrected_pass_rate(observed, int(f_unl.size), tpr, tnr, n_pos, n_neg),
        n_records=int(verdict.size),
    )


@dataclass
class Production:
    """What the production-quality page shows for one run."""

    binary: bool
    overall: Quality | None = None
    fields: dict[str, list[str]] = field(default_factory=dict)
    compare_field: str = ""
    compare_values: tuple[str, str] = ("", "")
    sides: tuple[Quality, Quality] | None = None
    difference: estimates.Estimate | None = None
    problems: list[str] = field(default_factory=list)


def production(*, run: JudgeRun, compare_field: str = "", first: str = "", second: str = "") -> Production:
    """The run's criterion's pass rate on production records, and, when a metadata field and two of its values are
    chosen, the corrected difference between the two groups of records (say two releases)."""
    if run.project.kind != Project.Kind.BINARY:
        return Production(binary=False)
    rows = run_rows(run=run)
    verdict, human = rows.verdict[rows.sample], rows.human[rows.sample]
    metadata = [meta for meta, keep in zip(rows.metadata, rows.sample.tolist(), strict=True) if keep]
    out = Production(binary=True, overall=quality(verdict, human), fields=field_values(metadata))
    if not compare_field:
        return out
    out.compare_field, out.compare_values = compare_field, (first, second)
    if compare_field not in out.fields:
        out.problems.append("Choose a metadata field that the production records carry.")
        return out
    if not first or not second or first == second:
        out.problems.append("Choose two different values of the field to compare.")
        return out
    values = np.array([_value(meta, compare_field) for meta in metadata], dtype=object)
    sides = tuple(quality(verdict[values == v], human[values == v]) for v in (first, second))
    out.sides = (sides[0], sides[1])
    out.difference = estimates.difference(sides[0].ppi, sides[1].ppi)
    return out


@dataclass(frozen=True)
class Probe:
    """The run page's bias probe, with what a reader needs to read the effects."""

    result: estimates.BiasProbe
    length_sd: float
    probe_field: str
    baseline: str | None
    fields: list[str]


def bias_probe(*, run: JudgeRun, probe_field: str = "") -> Probe | None:
    """Does this run's verdict depend on the output's length (and on `probe_field`'s value) at the same human label?
    Over every item of the run with a verdict and a reference label. None for pairwise projects."""
    if run.project.kind != Project.Kind.BINARY:
        return None
    rows = run_rows(run=run)
    keep = rows.labeled
    z, _mean, sd = estimates.standardise(rows.length[keep])
    covariates: dict[str, np.ndarray] = {"output length (+1 SD)": z}
    baseline = None
    metadata = [meta for meta, k in zip(rows.metadata, keep.tolist(), strict=True) if k]
    fields = field_values(metadata)
    if probe_field and probe_field in fields:
        values = [_value(meta, probe_field) or "(missing)" for meta in metadata]
        levels = [value for value, _ in Counter(values).most_common(MAX_PROBE_LEVELS + 1)]
        baseline = levels[0]
        for level in levels[1:]:
            covariates[f"{probe_field} = {level}"] = np.array([v == level for v in values], dtype=np.float64)
    result = estimates.bias_probe(rows.verdict[keep], rows.human[keep], covariates)
    return Probe(result, sd, probe_field if baseline else "", baseline, list(fields))
