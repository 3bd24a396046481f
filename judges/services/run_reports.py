"""The judge–human report of a finished run, stored as JSON on the run (numbers from annotate.stats.agreement)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from annotate import carry, reports
from annotate.models import Project, RubricVersion
from annotate.stats import agreement, reference
from judges import run_reference, selectors
from judges.models import JudgeRun, Verdict


def run_report(*, run: JudgeRun) -> dict[str, object]:
    """The judge–human report for a run, as stored JSON (numbers from stats.agreement; this only arranges them).

    Human reference per item (run_reference.human_reference, which every judge figure reads): a lead's gold label where
    there is one, else the strict majority of two or more humans' labels on the judge's criterion under the run's
    rubric version, else a single label if the judge lets single labels serve. Items without one (unlabeled
    production samples, split votes, single labels the judge does not use) are judged but not compared; the report
    counts the items of each reference kind. Pairwise items count only when the judge gave the same verdict in both
    orders; the share that did not is the
    position bias.
    """
    project = run.version.judge.project
    kind = project.kind
    pairwise = kind == Project.Kind.PAIRWISE
    codes = reports.PAIRWISE_CODES if pairwise else reports.BINARY_CODES
    criterion = selectors.criterion_of_run(rubric_version=run.rubric_version, key=run.version.judge.criterion_key)
    # The judge's verdicts and the human reference, as the report pages, comparisons and estimates read them.
    judged = run_reference.judge_values(run=run)
    judge_value, status_counts = judged.values, judged.statuses
    found = run_reference.human_reference(run=run, item_ids=judged.items)
    single = found.single
    human = {i: codes[str(ref.value)] for i, ref in found.labeled.items()}
    compared = found.compared(judge_value)
    human_codes = np.array([human[i] for i in compared], dtype=np.int64)
    judge_codes = np.array([codes[judge_value[i]] for i in compared], dtype=np.int64)
    ab = [codes[first] for first, _ in judged.both_orders]
    ba = [codes[second] for _, second in judged.both_orders]
    report: dict[str, object] = {
        "kind": kind,
        "scope": run.scope,
        "test_run_number": run.test_run_number,
        "rubric_version": run.rubric_version.number,
        "criterion": run.version.judge.criterion_key,
        # The version the criterion's definition dates from: labels given since then count (annotate.carry).
        "criterion_defined_in": (
            RubricVersion.objects.filter(pk=criterion.defined_in_id).values_list("number", flat=True).first()
            if criterion is not None
            else None
        ),
        "n": len(compared),
        "n_items": len(judged.items),
        "n_with_reference": len(human),
        "n_without_reference": len(judged.items) - len(human),
        "n_invalid": status_counts[Verdict.Status.INVALID],
        "n_errors": status_counts[Verdict.Status.ERROR],
        "judge_counts": dict(Counter(judge_value.values())),
        # The run's items by reference kind (unlabeled ones in none), and the compared items (the figures' n) by the
        # kind of reference they were compared with.
        "single_label_reference": single,
        "reference_kinds": found.kinds(),
        "n_unlabeled": len(judged.items) - len(found.items),
        "compared_kinds": found.kinds(compared),
        "reference": reference.description(single=single),
    }
    if not human:
        report["empty_reason"] = carry.no_labels_warning(
            rubric_version=run.rubric_version, key=run.version.judge.criterion_key
        ) or ("No item of this run has a human reference yet (unlabeled, or the annotators' votes are split).")
    if pairwise:
        result = agreement.pairwise_judge_report(human_codes, judge_codes)
        consistency = agreement.position_consistency(np.array(ab, dtype=np.int64), np.array(ba, dtype=np.int64))
        report |= {
            "labels": ["a", "b", "tie"],
            "confusion": [list(row) for row in result.confusion],
            "figures": {
                "agreement": reports.figure_json(result.agreement),
                "agreement_without_ties": reports.figure_json(result.agreement_without_ties),
                "kappa": reports.figure_json(result.kappa),
                "position_consistency": reports.figure_json(consistency),
            },
            "n_both_orders": len(ab),
            "n_inconsistent": len(ab) - sum(1 for x, y in zip(ab, ba, strict=True) if x == y),
        }
    else:
        binary = agreement.binary_judge_report(human_codes, judge_codes)
        report |= {
            "labels": ["fail", "pass"],
            "confusion": [list(row) for row in binary.confusion],
            "figures": {
                "accuracy": reports.figure_json(binary.accuracy),
                "kappa": reports.figure_json(binary.kappa),
                "tpr": reports.figure_json(binary.tpr),
                "tnr": reports.figure_json(binary.tnr),
                "fail_precision": reports.figure_json(binary.fail_precision),
                "fail_recall": reports.figure_json(binary.fail_recall),
            },
        }
    return report
