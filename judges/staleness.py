"""Is a judge's calibration still about the rubric the annotators now use?

A judge is calibrated by its runs: each done run measured the judge against the humans' labels of one rubric version
(JudgeRun.rubric_version). A judge is stale only when *its* criterion moved since: its name or definition changed
(the current criterion's definition dates from a later version than the run: Criterion.defined_in), or it left the
rubric. A change to other criteria leaves it calibrated: its criterion's labels were carried into the new version
(annotate.carry), so the run measured it against the same question.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db.models import F, OuterRef, Subquery

from annotate.models import Criterion, Project, RubricVersion
from judges.models import Judge, JudgeRun

if TYPE_CHECKING:
    # Only a type here: judges.compare brings numpy, and every process imports this module at start (JudgesConfig).
    from judges.compare import TargetCheck


class Reason:
    CURRENT = "current"  # calibrated under the current rubric version
    NEVER = "never"  # no finished run yet: nothing to be stale about, but not calibrated either
    CRITERION_CHANGED = "criterion_changed"  # the criterion's name or definition differs in the current version
    CRITERION_REMOVED = "criterion_removed"  # the current rubric no longer has the judge's criterion
    RUBRIC_MOVED = "rubric_moved"  # the run was on an older rubric version, but its criterion reads the same


EXPLANATIONS = {
    Reason.CURRENT: "Calibrated under the current rubric.",
    Reason.NEVER: "No finished run yet.",
    Reason.CRITERION_CHANGED: "The criterion's definition changed since the last calibration run.",
    Reason.CRITERION_REMOVED: "The criterion is no longer in the current rubric.",
    Reason.RUBRIC_MOVED: "Calibrated under an older rubric version; its criterion has not changed since.",
}


@dataclass(frozen=True)
class JudgeStaleness:
    judge: Judge
    latest_run: JudgeRun | None  # the judge's latest done run (its calibration)
    calibrated_on: RubricVersion | None
    reason: str
    # Whether the judge's latest dev run meets its target, as the judges page decides it (judges.selectors.
    # run_target_check on latest_alignment); None when not asked for or there is no such run.
    check: TargetCheck | None = None
    checked_run: JudgeRun | None = None

    @property
    def stale(self) -> bool:
        return self.reason in {Reason.CRITERION_CHANGED, Reason.CRITERION_REMOVED}

    @property
    def explanation(self) -> str:
        text = EXPLANATIONS[self.reason]
        if self.stale and self.calibrated_on is not None:
            text += f" Calibrated on rubric v{self.calibrated_on.number}."
        return text

    @property
    def figures(self) -> dict[str, Any]:
        """The latest run's stored figures (empty when there is no done run)."""
        report = self.latest_run.report if self.latest_run is not None else None
        return dict(report.get("figures", {})) if isinstance(report, dict) else {}


def _definition(criterion: Criterion | None) -> tuple[str, str] | None:
    return None if criterion is None else (criterion.name.strip(), criterion.description.strip())


def judge_staleness(project: Project) -> dict[int, JudgeStaleness]:
    """Every judge of the project with its latest done run and whether that calibration is stale, by judge id.

    Three queries whatever the number of judges: the judges, their latest done runs (a correlated subquery, which
    SQLite runs too), and the criteria of the rubric versions involved.
    """
    judges = list(Judge.objects.filter(project=project).order_by("criterion_key"))
    done = JudgeRun.objects.filter(status=JudgeRun.Status.DONE)
    newest_of_judge = (
        done.filter(version__judge_id=OuterRef("version__judge_id"))
        .order_by(F("finished_at").desc(nulls_last=True), "-id")
        .values("id")[:1]
    )
    latest = {
        run.version.judge_id: run
        for run in done.filter(project=project)
        .filter(id=Subquery(newest_of_judge))
        .select_related("version", "rubric_version")
    }
    current_id = project.current_rubric_id
    version_ids = {run.rubric_version_id for run in latest.values()} | ({current_id} if current_id else set())
    criteria: dict[tuple[int, str], Criterion] = {
        (c.rubric_version_id, c.key): c
        for c in Criterion.objects.filter(rubric_version_id__in=version_ids).select_related("defined_in")
    }
    out: dict[int, JudgeStaleness] = {}
    for judge in judges:
        run = latest.get(judge.pk)
        if run is None:
            reason = Reason.NEVER
        elif run.rubric_version_id == current_id:
            reason = Reason.CURRENT
        else:
            now = criteria.get((current_id, judge.criterion_key)) if current_id else None
            then = criteria.get((run.rubric_version_id, judge.criterion_key))
            if now is None:
                reason = Reason.CRITERION_REMOVED
            elif _definition(now) != _definition(then) or now.defined_in.number > run.rubric_version.number:
                # Also changed when it reads the same again after a change in between: the labels of that
                # definition were given anew, not carried.
                reason = Reason.CRITERION_CHANGED
            else:
                reason = Reason.RUBRIC_MOVED
        out[judge.pk] = JudgeStaleness(
            judge=judge,
            latest_run=run,
            calibrated_on=run.rubric_version if run is not None else None,
            reason=reason,
        )
    return out
