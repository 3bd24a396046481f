from __future__ import annotations

from django.contrib import admin

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


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "kind", "status", "overlap", "created_at"]
    list_filter = ["kind", "status"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]


class CriterionInline(admin.TabularInline):
    model = Criterion
    fk_name = "rubric_version"
    extra = 0


@admin.register(RubricVersion)
class RubricVersionAdmin(admin.ModelAdmin):
    list_display = ["project", "number", "note", "created_by", "created_at"]
    list_filter = ["project"]
    inlines = [CriterionInline]


@admin.register(Criterion)
class CriterionAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "rubric_version", "position"]
    list_filter = ["rubric_version__project"]


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["external_id", "project", "split", "source", "created_at"]
    list_filter = ["project", "split", "source"]
    search_fields = ["external_id"]
    show_full_result_count = False


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "project", "role", "created_at"]
    list_filter = ["role", "project"]
    raw_id_fields = ["user"]


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = ["item", "criterion", "annotator", "value", "rubric_version", "created_at"]
    list_filter = ["value", "rubric_version__project"]
    raw_id_fields = ["item", "criterion", "annotator", "rubric_version"]
    show_full_result_count = False


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["item", "annotator", "expires_at"]
    raw_id_fields = ["item", "annotator", "rubric_version"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Staff can see and revoke tokens; nobody can read or set a secret here (only its hash exists)."""

    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix", "user__username"]
    raw_id_fields = ["user"]
    readonly_fields = ["prefix", "secret_hash", "created_at", "last_used_at"]

    def has_add_permission(self, request: object) -> bool:
        return False  # tokens are made by their user, who alone sees the secret once


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ["project", "kind", "filename", "status", "created_by", "created_at"]
    list_filter = ["kind", "status"]
    raw_id_fields = ["project", "created_by"]


@admin.register(ImportedUser)
class ImportedUserAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "project", "created_at"]
    list_select_related = ["user", "project"]
    raw_id_fields = ["user", "project"]
    search_fields = ["user__username"]

    @admin.display(description="name in the label file", ordering="user__username")
    def name(self, obj: ImportedUser) -> str:
        return shown_username(obj.user.get_username())


@admin.register(ProductionRecord)
class ProductionRecordAdmin(admin.ModelAdmin):
    list_display = ["project", "external_id", "received_on", "content_hash"]
    list_filter = ["received_on"]
    raw_id_fields = ["project"]
    show_full_result_count = False


@admin.register(DailySample)
class DailySampleAdmin(admin.ModelAdmin):
    list_display = ["project", "day", "n_records", "n_added", "created_at"]
    list_filter = ["day"]
    raw_id_fields = ["project"]
