"""Error analysis: review notes (open coding) and the failure modes a lead groups them into (axial coding).

Registered with the annotate app through annotate/models.py, which imports this module; the foreign keys name the
core models by string so this module imports nothing of annotate.models (no import cycle).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower


class FailureMode(models.Model):
    """A named kind of failure that a lead groups review notes into (axial coding). Written by annotate.review.services
    only. A mode promoted to a criterion keeps the key it became and the rubric version that added it."""

    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="failure_modes")
    name = models.CharField(max_length=120)
    definition = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    promoted_key = models.SlugField(max_length=64, blank=True)
    promoted_in = models.ForeignKey(
        "annotate.RubricVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["project", "name"]
        constraints = [
            # Names are unique per project whatever their case: "Hallucination" and "hallucination" are one mode.
            models.UniqueConstraint(Lower("name"), "project", name="failure_mode_name_unique_in_project"),
            models.CheckConstraint(condition=~Q(name=""), name="failure_mode_name_not_empty"),
            models.CheckConstraint(
                condition=Q(promoted_key="") | Q(promoted_in__isnull=False), name="failure_mode_promoted_has_version"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project_id} failure mode {self.name}"


class ReviewNote(models.Model):
    """One reviewer's overall verdict on an item and a free-text note on the first thing that went wrong (open
    coding). A note belongs to at most one failure mode (the foreign key), and only a failing review has one."""

    class Verdict(models.TextChoices):
        PASS = "pass", "Pass"
        FAIL = "fail", "Fail"

    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="review_notes")
    item = models.ForeignKey("annotate.Item", on_delete=models.CASCADE, related_name="review_notes")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="review_notes")
    verdict = models.CharField(max_length=4, choices=Verdict.choices)
    note = models.TextField(blank=True)
    failure_mode = models.ForeignKey(
        FailureMode, null=True, blank=True, on_delete=models.SET_NULL, related_name="notes"
    )
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["project", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["item", "reviewer"], name="review_note_one_per_reviewer"),
            models.CheckConstraint(condition=Q(verdict__in=["pass", "fail"]), name="review_note_verdict_valid"),
            # A failure says what went wrong; only failures are grouped into failure modes.
            models.CheckConstraint(condition=Q(verdict="pass") | ~Q(note=""), name="review_note_fail_has_note"),
            models.CheckConstraint(
                condition=Q(failure_mode__isnull=True) | Q(verdict="fail"), name="review_note_mode_only_on_fail"
            ),
        ]
        indexes = [
            # Serves the counts per day or week and the lead's list of a project's notes, newest first.
            models.Index(fields=["project", "created_at"], name="review_note_project_idx"),
            # Serves the list of one mode's notes (merge, split, promotion, export).
            models.Index(fields=["failure_mode"], name="review_note_mode_idx", condition=Q(failure_mode__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.reviewer_id} {self.verdict} on {self.item_id}"
