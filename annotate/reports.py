"""Human–human agreement reports: labels loaded from the database into integer arrays, figures from judges.agreement.

Nothing here loops over labels in Python: labels are read in one COPY (PostgreSQL) and coded with numpy; every
figure comes from the pure functions in judges.agreement, which are tested against independent implementations.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from annotate.models import Criterion, Label, Project, RubricVersion
from judges import agreement

BINARY_CODES = {"fail": agreement.FAIL, "pass": agreement.PASS}
PAIRWISE_CODES = {"a": agreement.A, "b": agreement.B, "tie": agreement.TIE}

# What each figure means, shown beside it on every page that prints it.
DEFINITIONS = {
    "percent_agreement": "Share of pairs of labels on the same item that agree, over items with two or more labels.",
    "fleiss_kappa": (
        "Agreement beyond chance among all annotators, over items with the usual number of labels "
        "(Fleiss' κ; 1 = perfect, 0 = chance)."
    ),
    "krippendorff_alpha": (
        "Agreement beyond chance over all items, missing labels allowed (Krippendorff's α, nominal; 1 = perfect, "
        "0 = chance)."
    ),
    "pairwise_cohen_kappa": "Agreement beyond chance between two annotators on the items both labeled (Cohen's κ).",
    "interval": "95% bootstrap interval: items resampled 1,000 times with a fixed seed.",
}


@dataclass(frozen=True)
class LabelArrays:
    """One rubric version's labels as parallel integer arrays (positions, not database ids)."""

    criterion_ids: list[int]
    criterion: npt.NDArray[np.int64]  # index into criterion_ids
    item: npt.NDArray[np.int64]  # 0..n_items-1
    item_ids: npt.NDArray[np.int64]  # database id of each item position
    rater: npt.NDArray[np.int64]  # 0..n_raters-1
    rater_ids: npt.NDArray[np.int64]
    value: npt.NDArray[np.int64]


def _code_sql(kind: str) -> str:
    if kind == Project.Kind.PAIRWISE:
        return "CASE value WHEN 'a' THEN 0 WHEN 'b' THEN 1 ELSE 2 END"
    return "CASE value WHEN 'fail' THEN 0 ELSE 1 END"


def labels_load(*, project: Project, rubric_version: RubricVersion) -> LabelArrays:
    """Every label of one rubric version, coded (binary: fail 0, pass 1; pairwise: a 0, b 1, tie 2)."""
    criteria = list(Criterion.objects.filter(rubric_version=rubric_version).order_by("position"))
    criterion_ids = [c.pk for c in criteria]
    if connection.vendor == "postgresql":
        sql = (
            f"COPY (SELECT criterion_id, item_id, annotator_id, {_code_sql(project.kind)} FROM annotate_label "  # noqa: S608 - constant SQL
            f"WHERE rubric_version_id = {int(rubric_version.pk)}) TO STDOUT"
        )
        buffer = io.BytesIO()
        with connection.cursor() as cursor, cursor.copy(sql) as copy:
            for block in copy:
                buffer.write(block)
        raw = np.array(buffer.getvalue().split(), dtype=np.int64)
    else:
        codes = PAIRWISE_CODES if project.is_pairwise else BINARY_CODES
        rows = Label.objects.filter(rubric_version=rubric_version).values_list(
            "criterion_id", "item_id", "annotator_id", "value"
        )
        raw = np.array([(c, i, a, codes[v]) for c, i, a, v in rows], dtype=np.int64).ravel()
    table = raw.reshape(-1, 4)
    item_ids, item = np.unique(table[:, 1], return_inverse=True)
    rater_ids, rater = np.unique(table[:, 2], return_inverse=True)
    position = {cid: n for n, cid in enumerate(criterion_ids)}
    lookup = np.full(max(criterion_ids, default=0) + 1, -1, dtype=np.int64)
    for cid, n in position.items():
        lookup[cid] = n
    return LabelArrays(
        criterion_ids=criterion_ids,
        criterion=lookup[table[:, 0]] if table.size else np.zeros(0, dtype=np.int64),
        item=item.astype(np.int64),
        item_ids=item_ids.astype(np.int64),
        rater=rater.astype(np.int64),
        rater_ids=rater_ids.astype(np.int64),
        value=table[:, 3].copy(),
    )


def figure_json(figure: agreement.Figure) -> dict[str, Any]:
    """A figure as stored and printed: value and interval, n, and why it is not defined when it is not."""
    out: dict[str, Any] = {"value": figure.value, "ci_low": figure.ci_low, "ci_high": figure.ci_high, "n": figure.n}
    if figure.reason:
        out["reason"] = figure.reason
    return out


def _usernames(ids: Iterable[int]) -> dict[int, str]:
    return dict(get_user_model().objects.filter(pk__in=list(ids)).values_list("pk", "username"))


def human_report(
    *, project: Project, rubric_version: RubricVersion, n_boot: int = agreement.N_BOOT, min_shared: int = 10
) -> dict[str, Any]:
    """The human–human section of the report for every criterion of one rubric version."""
    arrays = labels_load(project=project, rubric_version=rubric_version)
    k = 3 if project.is_pairwise else 2
    names = _usernames(arrays.rater_ids.tolist())
    criteria = list(Criterion.objects.filter(rubric_version=rubric_version).order_by("position"))
    out: dict[str, Any] = {}
    for n, criterion in enumerate(criteria):
        mask = arrays.criterion == n
        item, rater, value = arrays.item[mask], arrays.rater[mask], arrays.value[mask]
        # Compact item positions to this criterion's items, as the maths expects 0..n_items-1 without gaps.
        _, item = np.unique(item, return_inverse=True)
        pairs = agreement.pairwise_cohen_kappas(item, rater, value, k, min_shared=min_shared, n_boot=n_boot)
        out[criterion.key] = {
            "human": {
                "n_items": int(np.unique(item).size),
                "n_labels": int(mask.sum()),
                "n_annotators": int(np.unique(rater).size),
                "percent_agreement": figure_json(agreement.percent_agreement(item, rater, value, k, n_boot=n_boot)),
                "fleiss_kappa": figure_json(agreement.fleiss_kappa(item, rater, value, k, n_boot=n_boot)),
                "krippendorff_alpha": figure_json(
                    agreement.krippendorff_alpha_nominal(item, rater, value, k, n_boot=n_boot)
                ),
                "pairwise_cohen_kappa": [
                    {
                        "annotators": [
                            names.get(int(arrays.rater_ids[p.rater_i]), "?"),
                            names.get(int(arrays.rater_ids[p.rater_j]), "?"),
                        ],
                        "n": p.n,
                        "kappa": figure_json(p.kappa),
                    }
                    for p in pairs
                ],
            },
            "judge": {},
        }
    return out


def report_build(*, project: Project, n_boot: int = agreement.N_BOOT) -> dict[str, Any]:
    """The whole report for the project's current rubric version, in the shape `agreement_report --json` prints."""
    version = project.current_rubric
    if version is None:
        return {"project": project.slug, "rubric_version": None, "criteria": {}, "computed_at": _now()}
    return {
        "project": project.slug,
        "rubric_version": version.number,
        "computed_at": _now(),
        "definitions": DEFINITIONS,
        "criteria": human_report(project=project, rubric_version=version, n_boot=n_boot),
    }


def _now() -> str:
    return timezone.now().astimezone(dt.UTC).isoformat()
