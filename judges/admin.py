"""Judges in the admin: to look, not to write. Versions, runs and verdicts are written by judges.services only (a
version never changes once saved; a run's verdicts are the model's answers), so these pages are read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from judges.models import CachedCompletion, Judge, JudgeRun, JudgeVersion, Verdict


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


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
