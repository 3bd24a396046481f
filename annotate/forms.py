from __future__ import annotations

from django import forms

from annotate.models import Project


class ProjectStatusForm(forms.Form):
    status = forms.ChoiceField(choices=Project.Status.choices)
