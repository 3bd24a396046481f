"""Writes for judges. Views, tasks, the run_judge command and the API all call these; nothing else writes these models.

- `judge_versions`: judges, their targets, and their versions (prompt, model, few-shot examples), never edited in place;
- `judge_runs`: starting, cancelling, finishing and reconciling runs (how a run survives dead workers is told there);
- `run_chunks`: the work of a chunk task: claiming chunks and calling the model in a thread pool;
- `answer_cache`: cached model answers, shared by runs and the daily monitor (judges.monitor);
- `run_reports`: the judge–human report stored on a finished run.
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.models import User as AuthUser

Actor = AuthUser | AnonymousUser


def actor_user(actor: Actor | None) -> AuthUser | None:
    """The signed-in user behind a write, or None (an anonymous or absent actor: a command, a task)."""
    return actor if isinstance(actor, AuthUser) and actor.is_authenticated else None
