"""Judges in the admin: to look, not to write. Versions, runs and verdicts are written by judges.services only (a
version never changes once saved; a run's verdicts are the model's answers), so these pages are read-only
(annotate.admin.ReadOnlyAdmin: no add, change or delete)."""

from __future__ import annotations

from django.contrib import admin

from annotate.admin import ReadOnlyAdmin
from judges.models import CachedCompletion, Judge, JudgeRun, JudgeVersion, Verdict


@admin.register(Judge)
class JudgeAdmin(ReadOnlyAdmin):
    list_display = ["name", "project", "criterion_key", "created_at"]
    list_filter = ["project"]


@admin.register(JudgeVersion)
class JudgeVersionAdmin(ReadOnlyAdmin):
    list_display = ["judge", "number", "endpoint", "model", "model_is_alias", "created_at"]
    list_filter = ["endpoint", "model_is_alias"]


@admin.register(JudgeRun)
class JudgeRunAdmin(ReadOnlyAdmin):
    list_display = ["pk", "version", "scope", "test_run_number", "status", "n_calls", "created_at", "finished_at"]
    list_filter = ["status", "scope"]


@admin.register(Verdict)
class VerdictAdmin(ReadOnlyAdmin):
    list_display = ["run", "item", "order", "status", "value", "cached", "attempts"]
    list_filter = ["status", "cached"]
    raw_id_fields = ["run", "item"]


@admin.register(CachedCompletion)
class CachedCompletionAdmin(ReadOnlyAdmin):
    list_display = ["key", "endpoint", "model", "tokens_in", "tokens_out", "created_at"]
    list_filter = ["endpoint", "model"]
