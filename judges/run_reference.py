"""The human reference of a run's items and the judge's values on them: what every judge figure compares.

One function makes each: `human_reference` (each item's reference label and kind, and so the n a figure is over) and
`judge_values` (the judge's settled verdict per item). The stored report (judges.services.run_reports), the
disagreements and comparisons on the report pages (judges.selectors), and the production estimates
(judges.production) all read them, so they cannot disagree on an item's reference, its kind or the n.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from annotate import reports
from annotate import selectors as annotate_selectors
from annotate.models import GoldLabel, Project
from annotate.stats import agreement
from annotate.stats import reference as refkind
from judges.models import JudgeRun, Verdict


@dataclass(frozen=True)
class Reference:
    """An item's human reference on the run's criterion: its label (None when it has none for this judge) and its
    kind, as annotate.stats.reference names it ("gold", "majority", "single" or "unsettled")."""

    value: str | None  # pass/fail or a/b/tie
    kind: str


def single_labels_serve(run: JudgeRun) -> bool:
    """Whether single labels are a reference for this run: as its stored report says (the setting when it finished),
    else as its judge is set now (a running run, or a report from before the setting existed)."""
    stored = (run.report or {}).get("single_label_reference")
    return bool(stored) if stored is not None else run.version.judge.single_label_reference


def _references(*, run: JudgeRun, single: bool, item_ids: Iterable[int] | None) -> dict[int, Reference]:
    """Every item with a human label or a gold label on the run's criterion (see human_reference)."""
    project = run.project
    pairwise = project.kind == Project.Kind.PAIRWISE
    codes = reports.PAIRWISE_CODES if pairwise else reports.BINARY_CODES
    names = {code: name for name, code in codes.items()}
    key = run.version.judge.criterion_key
    criterion = next((c for c in annotate_selectors.criteria_of_version(run.rubric_version.pk) if c.key == key), None)
    if criterion is None:
        return {}
    arrays = reports.labels_load(project=project, rubric_version=run.rubric_version)
    mask = np.zeros(arrays.item.size, dtype=np.bool_)
    if criterion.pk in arrays.criterion_ids:
        mask = arrays.criterion == arrays.criterion_ids.index(criterion.pk)
    labeled = arrays.item_ids[arrays.item[mask]]
    # A gold label is a reference even on an item nobody labeled.
    gold_rows = list(GoldLabel.objects.filter(criterion=criterion).values_list("item_id", "value"))
    gold_ids = np.array([item_id for item_id, _ in gold_rows], dtype=np.int64)
    ids = np.union1d(labeled, gold_ids).astype(np.int64)
    item = np.searchsorted(ids, labeled)
    gold = np.full(ids.size, -1, dtype=np.int64)
    gold[np.searchsorted(ids, gold_ids)] = [codes[value] for _, value in gold_rows]
    found = agreement.consensus(item, arrays.value[mask], 3 if pairwise else 2, gold=gold, n_items=ids.size)
    label, kind = refkind.labels(found, single=single)
    wanted = None if item_ids is None else set(item_ids)
    out = {}
    for item_id, code, k in zip(ids.tolist(), label.tolist(), kind.tolist(), strict=True):
        name = refkind.NAMES[k]
        if name is not None and (wanted is None or item_id in wanted):
            out[item_id] = Reference(names[code] if code >= 0 else None, name)
    return out


@dataclass(frozen=True)
class HumanReference:
    """The human reference of a run's items: what every judge figure compares the judge with. Only `human_reference`
    makes one, and the stored report (judges.services.run_reports), the disagreements, the comparison of two runs and
    the production estimates all read it, so they cannot disagree on an item's reference, its kind or the n."""

    items: dict[int, Reference]  # every item with a label or a gold label; value None where it has no reference label
    single: bool  # whether single labels serve as the reference (single_labels_serve)

    @property
    def labeled(self) -> dict[int, Reference]:
        """The items with a reference label (value never None)."""
        return {i: ref for i, ref in self.items.items() if ref.value is not None}

    def compared(self, judged: Iterable[int]) -> list[int]:
        """The judged items a figure compares: those with a reference label, by id (the figures' n is its length)."""
        return sorted(i for i in set(judged) if i in self.items and self.items[i].value is not None)

    def kinds(self, item_ids: Iterable[int] | None = None) -> dict[str, int]:
        """How many of these items (default: all with a label or gold label) are of each reference kind, in
        annotate.stats.reference.SHOWN order."""
        ids = self.items if item_ids is None else [i for i in item_ids if i in self.items]
        counted = Counter(self.items[i].kind for i in ids)
        return {name: counted[name] for name in refkind.SHOWN}


def human_reference(*, run: JudgeRun, item_ids: Iterable[int] | None = None) -> HumanReference:
    """The human reference of the run's items on its criterion under its rubric version, each with its kind
    (stats.reference.kinds) and label: gold where a lead set one, else the strict majority of two or more labels,
    else the single label where single labels serve for this run (single_labels_serve). Split items have kind
    "unsettled" and no label. `item_ids` narrows it (the run's items, say)."""
    single = single_labels_serve(run)
    return HumanReference(_references(run=run, single=single, item_ids=item_ids), single)


@dataclass(frozen=True)
class JudgeValues:
    """A run's verdicts per item, as the judge figures read them (judge_values)."""

    values: dict[int, str]  # the settled verdict per item (pairwise: the verdict given in both orders)
    inconsistent: set[int]  # pairwise items whose two orders disagree (position-inconsistent)
    items: set[int]  # every item with a verdict row, of any status
    statuses: Counter[str]  # verdict rows by status
    both_orders: list[tuple[str, str]]  # pairwise: (A first, B first) of every item answered validly in both orders


def judge_values(*, run: JudgeRun) -> JudgeValues:
    """The run's settled verdict per item (binary: the OK verdict; pairwise: the verdict given in both orders), the
    pairwise items whose two orders disagree, and the counts the report states."""
    pairwise = run.project.kind == Project.Kind.PAIRWISE
    by_item: dict[int, dict[str, str | None]] = {}
    statuses: Counter[str] = Counter()
    rows = Verdict.objects.filter(run=run).values_list("item_id", "order", "status", "value")
    for item_id, order, status, value in rows.iterator(chunk_size=5000):
        statuses[status] += 1
        by_item.setdefault(item_id, {})[order] = value if status == Verdict.Status.OK else None
    values: dict[int, str] = {}
    inconsistent: set[int] = set()
    both: list[tuple[str, str]] = []
    for item_id, orders in by_item.items():
        if pairwise:
            first, second = orders.get(Verdict.Order.AB), orders.get(Verdict.Order.BA)
            if first is not None and second is not None:
                both.append((first, second))
                if first == second:
                    values[item_id] = first
                else:
                    inconsistent.add(item_id)
        elif orders.get(Verdict.Order.ONE):
            values[item_id] = str(orders[Verdict.Order.ONE])
    return JudgeValues(values, inconsistent, set(by_item), statuses, both)
