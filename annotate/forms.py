from __future__ import annotations

from typing import Any

from django import forms

from annotate.models import ImportJob, Item, Project


class ProjectStatusForm(forms.Form):
    status = forms.ChoiceField(choices=Project.Status.choices)


class ImportUploadForm(forms.Form):
    kind = forms.ChoiceField(choices=ImportJob.Kind.choices, initial=ImportJob.Kind.ITEMS, widget=forms.RadioSelect)
    file = forms.FileField(help_text="JSON Lines (.jsonl) or CSV (.csv), UTF-8, with or without BOM.")
    file_format = forms.ChoiceField(
        choices=[("", "From the file name"), ("jsonl", "JSON Lines"), ("csv", "CSV")], required=False, label="Format"
    )


class ImportConfirmForm(forms.Form):
    update = forms.BooleanField(
        required=False, label="Update conflicting rows with the file's content (existing labels are kept)"
    )


class TokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What will use it, e.g. “nightly export pipeline”.")


class ExportForm(forms.Form):
    """The export options. Criterion choices are the current rubric's keys: nothing else reaches a query."""

    format = forms.ChoiceField(
        choices=[
            ("jsonl", "JSON Lines"),
            ("csv", "CSV"),
            ("openai-evals", "OpenAI evals samples (binary)"),
            ("preference", "Preference pairs (pairwise)"),
        ],
        initial="jsonl",
    )
    split = forms.ChoiceField(choices=[("", "All splits"), *Item.Split.choices], required=False)
    min_labels = forms.IntegerField(
        min_value=0, max_value=Project.MAX_OVERLAP, required=False, label="Labeled by at least (annotators)"
    )
    consensus_only = forms.BooleanField(required=False, label="Only items with a reference label on every criterion")
    adjudicated_only = forms.BooleanField(required=False, label="Only items with a gold label")
    criterion = forms.MultipleChoiceField(
        choices=[], required=False, widget=forms.CheckboxSelectMultiple, help_text="None ticked: all criteria."
    )
    individual = forms.BooleanField(required=False, label="Add every annotator's label and note")

    def __init__(self, *args: Any, criterion_keys: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["criterion"].choices = [(key, key) for key in criterion_keys]  # type: ignore[attr-defined]
