"""The annotate models in the admin: to look, not to write. Every write goes through the services, which keep the
invariants the models alone cannot (a rubric version never changes once saved; an item's n_submitted and n_leased
count its labels and leases; a project keeps a lead), so every page here is read-only: no add, change or delete,
inlines included. The one action, revoking API tokens, calls the service a user's own revoke calls.

judges/admin.py uses the same ReadOnlyAdmin; tests/annotate/test_admin.py fails on any registered model that can
be written through the admin."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from annotate import tokens
from annotate.models import (
    ApiToken,
    Assignment,
    Criterion,
    DailySample,
    ImportedUser,
    ImportJob,
    Item,
    Label,
    Membership,
    ProductionRecord,
    Project,
    RubricVersion,
    shown_username,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """A model admin that shows rows and never writes them (Django then renders the change page as a view page)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MembershipInline(ReadOnlyInline):
    model = Membership
    raw_id_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(ReadOnlyAdmin):
    list_display = ["slug", "name", "kind", "status", "overlap", "created_at"]
    list_filter = ["kind", "status"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]


class CriterionInline(ReadOnlyInline):
    model = Criterion
    fk_name = "rubric_version"


@admin.register(RubricVersion)
class RubricVersionAdmin(ReadOnlyAdmin):
    list_display = ["project", "number", "note", "created_by", "created_at"]
    list_filter = ["project"]
    inlines = [CriterionInline]


@admin.register(Criterion)
class CriterionAdmin(ReadOnlyAdmin):
    list_display = ["key", "name", "rubric_version", "position"]
    list_filter = ["rubric_version__project"]


@admin.register(Item)
class ItemAdmin(ReadOnlyAdmin):
    list_display = ["external_id", "project", "split", "source", "created_at"]
    list_filter = ["project", "split", "source"]
    search_fields = ["external_id"]
    show_full_result_count = False


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdmin):
    list_display = ["user", "project", "role", "created_at", "deactivated_at"]
    list_filter = ["role", "project"]
    search_fields = ["user__username", "project__slug"]
    raw_id_fields = ["user"]


@admin.register(Label)
class LabelAdmin(ReadOnlyAdmin):
    list_display = ["item", "criterion", "annotator", "value", "rubric_version", "created_at"]
    list_filter = ["value", "rubric_version__project"]
    search_fields = ["item__external_id", "annotator__username"]
    raw_id_fields = ["item", "criterion", "annotator", "rubric_version"]
    show_full_result_count = False


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    list_display = ["item", "annotator", "state", "expires_at"]
    list_filter = ["state"]
    search_fields = ["item__external_id", "annotator__username"]
    raw_id_fields = ["item", "annotator", "rubric_version"]


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """Staff can see tokens and revoke them (a leaked one, say) with the action, which calls the user's own revoke
    service; nobody can read or set a secret here (only its hash exists), and tokens are made by their user alone."""

    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix", "user__username"]
    raw_id_fields = ["user"]
    actions = ["revoke"]

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True).select_related("user"):
            tokens.token_revoke(user=token.user, token_id=token.pk)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} token(s).", messages.SUCCESS)


@admin.register(ImportJob)
class ImportJobAdmin(ReadOnlyAdmin):
    list_display = ["project", "kind", "filename", "status", "created_by", "created_at"]
    list_filter = ["kind", "status"]
    search_fields = ["filename", "project__slug"]
    raw_id_fields = ["project", "created_by"]


@admin.register(ImportedUser)
class ImportedUserAdmin(ReadOnlyAdmin):
    list_display = ["name", "user", "project", "created_at"]
    list_select_related = ["user", "project"]
    raw_id_fields = ["user", "project"]
    search_fields = ["user__username"]

    @admin.display(description="name in the label file", ordering="user__username")
    def name(self, obj: ImportedUser) -> str:
        return shown_username(obj.user.get_username())


@admin.register(ProductionRecord)
class ProductionRecordAdmin(ReadOnlyAdmin):
    list_display = ["project", "external_id", "received_on", "content_hash"]
    list_filter = ["received_on"]
    raw_id_fields = ["project"]
    show_full_result_count = False


@admin.register(DailySample)
class DailySampleAdmin(ReadOnlyAdmin):
    list_display = ["project", "day", "n_records", "n_added", "created_at"]
    list_filter = ["day"]
    raw_id_fields = ["project"]
