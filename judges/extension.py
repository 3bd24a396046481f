"""What the judges app adds to annotate's pages (annotate.extensions): registered by JudgesConfig.ready()."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from annotate.extensions import JudgeStatus
from annotate.models import Project
from judges import staleness
from judges.models import JudgeRun


class JudgesOnAnnotate:
    def staleness(self, project: Project) -> list[JudgeStatus]:
        """Each judge's staleness, with the judges page's verdict on its latest dev run (calibrated only when that run
        meets the judge's target), so the dashboard cannot call a judge calibrated that the judges page does not."""
        from judges import selectors  # see monitor_panels

        latest = selectors.latest_alignment(project=project)
        out: list[JudgeStatus] = []
        for judge_id, state in staleness.judge_staleness(project).items():
            run = latest.get(judge_id)
            check = selectors.run_target_check(run=run) if run is not None else None
            out.append(replace(state, check=check, checked_run=run))
        return out

    def monitor_panels(self, project: Project) -> list[Any]:
        # Imported here, not at the top: JudgesConfig.ready() imports this module in every process, and the monitor
        # and the selectors bring the LLM client and openai (half a second), which commands such as import_items
        # never use.
        from judges import monitor_views

        return list(monitor_views.monitor_panels(project=project))

    def run_reports(self, *, project_id: int, rubric_version_id: int) -> list[tuple[str, int, dict[str, Any]]]:
        runs = JudgeRun.objects.filter(
            project_id=project_id, status="done", rubric_version_id=rubric_version_id
        ).select_related("version__judge")
        return [(run.version.judge.criterion_key, run.pk, run.report) for run in runs if run.report]
