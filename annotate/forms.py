from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import User

from annotate import export_formats, exports
from annotate.models import ImportJob, Item, Membership, Project


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

    # Every format and former id is accepted (a saved link keeps working); the select offers this kind's formats.
    format = forms.ChoiceField(
        choices=[
            *((f.id, f.label) for f in export_formats.REGISTRY.values()),
            *((old, export_formats.REGISTRY[new].label) for old, new in export_formats.ALIASES.items()),
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
    bom = forms.BooleanField(
        required=False,
        label="CSV for spreadsheets: start with a UTF-8 byte order mark",
        help_text="Excel then reads accents and other non-ASCII text right.",
    )
    # Text, parsed by exports.parse_bound (the command and the API use the same): a date or a date and time.
    since = forms.CharField(
        required=False,
        max_length=40,
        label="Labeled from",
        widget=forms.TextInput(attrs={"placeholder": "2026-01-01", "autocomplete": "off"}),
    )
    until = forms.CharField(
        required=False,
        max_length=40,
        label="Labeled until",
        widget=forms.TextInput(attrs={"placeholder": "2026-01-31", "autocomplete": "off"}),
        help_text=(
            "Only labels and gold labels created in this range count: the reference label, margin and "
            "“labeled by at least” are computed from them alone, and items without one are left out. "
            "“From” is included, “until” is not, but a date alone includes its whole day: 2026-01-01 to 2026-01-31 "
            "is all of January. A date and time (2026-01-31T18:00 or with an offset, 2026-01-31T18:00+02:00) is "
            "that instant; without an offset, times are UTC."
        ),
    )

    def __init__(self, *args: Any, criterion_keys: list[str], pairwise: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pairwise = pairwise
        self.fields["criterion"].choices = [(key, key) for key in criterion_keys]  # type: ignore[attr-defined]
        # Offer only the formats this project's kind can give; one asked for anyway is refused with the reason.
        self.fields["format"].widget.choices = export_formats.choices(pairwise=pairwise)

    def clean_format(self) -> str:
        fmt = export_formats.resolve(self.cleaned_data["format"])
        if refusal := exports.format_refusal(fmt=fmt, pairwise=self.pairwise):
            raise forms.ValidationError(refusal, code="unfit")
        return fmt

    def _bound(self, name: str, *, end: bool) -> dt.datetime | None:
        text = self.cleaned_data.get(name) or ""
        if not text.strip():
            return None
        try:
            return exports.parse_bound(text, end=end)
        except exports.ExportRefused as exc:
            raise forms.ValidationError(str(exc), code="invalid") from None

    def clean_since(self) -> dt.datetime | None:
        return self._bound("since", end=False)

    def clean_until(self) -> dt.datetime | None:
        return self._bound("until", end=True)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        try:
            exports.check_range(data.get("since"), data.get("until"))
        except exports.ExportRefused as exc:
            self.add_error("until", str(exc))
        if data.get("bom") and data.get("format") not in (None, "csv"):
            self.add_error("bom", "A byte order mark is for CSV files only: untick it or choose CSV.")
        return data


# --- Setting projects up (annotate.setup_views) ---------------------------------------------------------------


class ProjectSettingsForm(forms.Form):
    """A project's settings. `kind_locked` disables the kind (the service refuses a change anyway)."""

    name = forms.CharField(max_length=200)
    kind = forms.ChoiceField(choices=Project.Kind.choices, widget=forms.RadioSelect)
    instructions = forms.CharField(
        required=False,
        max_length=50_000,
        widget=forms.Textarea(attrs={"rows": 12}),
        help_text="Markdown, shown to annotators above every item.",
    )
    overlap = forms.IntegerField(
        min_value=1, max_value=Project.MAX_OVERLAP, help_text="How many annotators label each item."
    )
    allow_tie = forms.BooleanField(required=False, label="Offer “Tie” (pairwise projects)")
    require_note_on_fail = forms.BooleanField(
        required=False, label="Ask for a note whenever a criterion fails (or loses, in pairwise)"
    )
    # Not required: a form posted without them (an older page, a script) leaves the sample settings as they are.
    sample_size = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=Project.MAX_SAMPLE_SIZE,
        initial=50,
        label="Daily sample size",
        help_text="Production records sampled into the queue each day (0: off).",
    )
    sample_hour = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=23,
        initial=6,
        label="Sample hour",
        help_text="Local hour (0-23) from which the previous day's records are sampled.",
    )

    # Not required, like the sample settings: a form posted without it leaves the delay as it is.
    skip_return_minutes = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=Project.MAX_SKIP_RETURN_MINUTES,
        initial=60,
        label="Skipped items come back after (minutes)",
        help_text="A skipped item returns to the end of that annotator's queue after this many minutes (0: at once).",
    )

    def __init__(self, *args: Any, kind_locked: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if kind_locked:
            self.fields["kind"].disabled = True
            self.fields["kind"].help_text = "Fixed: the project has items, whose fields depend on the kind."


class ProjectNewForm(ProjectSettingsForm):
    slug = forms.SlugField(
        max_length=64,
        required=False,
        label="Address",
        help_text="Lowercase letters, digits and dashes, used in links (/p/<address>/). Empty: made from the name.",
    )
    field_order = [
        "name",
        "slug",
        "kind",
        "instructions",
        "overlap",
        "allow_tie",
        "require_note_on_fail",
        "sample_size",
        "sample_hour",
        "skip_return_minutes",
    ]

    def clean_slug(self) -> str:
        slug: str = self.cleaned_data.get("slug") or ""
        if slug and not slug[0].isalnum():
            raise forms.ValidationError("Start the address with a letter or digit.")
        return slug.lower()


class CriterionForm(forms.Form):
    """One row of the criteria editor. The key is optional on a new row (made from the name)."""

    key = forms.SlugField(max_length=64, required=False, help_text="Used in exports, the API and judges.")
    name = forms.CharField(max_length=200)
    description = forms.CharField(
        max_length=5000, widget=forms.Textarea(attrs={"rows": 2}), label="Definition", help_text="What passes."
    )
    existing = forms.BooleanField(required=False, widget=forms.HiddenInput)


CriterionFormSet = forms.formset_factory(CriterionForm, extra=0, max_num=50, absolute_max=50, validate_max=True)


class MemberAddForm(forms.Form):
    identifier = forms.CharField(max_length=254, label="Username or email")
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.ANNOTATOR)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)


class InviteForm(forms.Form):
    email = forms.EmailField(required=False, max_length=254, label="E-mail (optional)")
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.ANNOTATOR)


class AnnotatorFieldsForm(forms.Form):
    annotator_fields = forms.CharField(
        required=False,
        max_length=2000,
        label="Fields annotators see",
        help_text="Metadata keys, separated by commas; add external_id to show item ids. Empty: only the text.",
    )


class SignupForm(UserCreationForm):
    """An invitee's account: username, optional e-mail and a password checked by AUTH_PASSWORD_VALIDATORS."""

    email = forms.EmailField(required=False, max_length=254, label="E-mail (optional)")

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")


class AccountCreateForm(forms.Form):
    username = forms.CharField(max_length=150)
    email = forms.EmailField(required=False, max_length=254, label="E-mail (optional)")
