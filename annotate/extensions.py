"""What apps built on annotate add to its pages, registered at start-up so that annotate never imports them.

`judges` depends on `annotate`, never the other way round (tests/test_architecture.py). Yet the lead's dashboard shows
the judges' staleness and monitor panels, the rubric timeline lists stale judges, and the agreement report shows each
finished judge run's figures next to the human ones. So `judges.apps.JudgesConfig.ready()` registers a provider here
and annotate's views and reports ask `judges()`; without one registered (an install without the judges app) the
pages show no judge sections.
"""

from __future__ import annotations

from typing import Any, Protocol

from annotate.models import Project


class JudgeStatus(Protocol):
    """A judge's standing as the dashboard and rubric timeline show it (the templates read the rest)."""

    @property
    def stale(self) -> bool: ...


class JudgeProvider(Protocol):
    def staleness(self, project: Project) -> list[JudgeStatus]:
        """Every judge of the project with whether its calibration is stale."""
        ...

    def monitor_panels(self, project: Project) -> list[Any]:
        """The dashboard's daily-monitor panels of the project (rendered by annotate/project_detail.html)."""
        ...

    def run_reports(self, *, project_id: int, rubric_version_id: int) -> list[tuple[str, int, dict[str, Any]]]:
        """(criterion key, run id, stored judge–human report) of every finished judge run on this rubric version."""
        ...


class _NoJudges:
    def staleness(self, project: Project) -> list[JudgeStatus]:
        return []

    def monitor_panels(self, project: Project) -> list[Any]:
        return []

    def run_reports(self, *, project_id: int, rubric_version_id: int) -> list[tuple[str, int, dict[str, Any]]]:
        return []


_judges: JudgeProvider = _NoJudges()


def register_judges(provider: JudgeProvider) -> None:
    """Called once from the judges app's ready()."""
    global _judges
    _judges = provider


def judges() -> JudgeProvider:
    return _judges
