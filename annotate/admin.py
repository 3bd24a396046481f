from __future__ import annotations

from django.contrib import admin

from annotate.models import Assignment, Criterion, Item, Label, Membership, Project, RubricVersion


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
