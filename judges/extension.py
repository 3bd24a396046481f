"""What the judges app adds to annotate's pages (annotate.extensions): registered by JudgesConfig.ready()."""

from __future__ import annotations

from typing import Any

from annotate.extensions import JudgeStatus
from annotate.models import Project
from judges import monitor_views, staleness
from judges.models import JudgeRun


class JudgesOnAnnotate:
    def staleness(self, project: Project) -> list[JudgeStatus]:
        return list(staleness.judge_staleness(project).values())

    def monitor_panels(self, project: Project) -> list[Any]:
        return list(monitor_views.monitor_panels(project=project))

    def run_reports(self, *, project_id: int, rubric_version_id: int) -> list[tuple[str, int, dict[str, Any]]]:
        runs = JudgeRun.objects.filter(
            project_id=project_id, status="done", rubric_version_id=rubric_version_id
        ).select_related("version__judge")
        return [(run.version.judge.criterion_key, run.pk, run.report) for run in runs if run.report]
