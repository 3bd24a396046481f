from __future__ import annotations

from django import forms

from annotate.models import ImportJob, Project


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
