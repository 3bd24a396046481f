from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

from annotate.models import Project
from judges import llm, monitor, prompts
from judges.models import Judge, JudgeRun, JudgeVersion
from judges.services import judge_versions


def endpoint_choices() -> list[tuple[str, str]]:
    choices = []
    for name, endpoint in llm.endpoints().items():
        if name == llm.STANDIN:
            label = "standin (offline stand-in, not a real model)"
        elif name == llm.RECORDED:
            label = "recorded (real judges' recorded answers on LLMBar, replayed offline)"
        elif not llm.endpoint_has_key(endpoint):
            label = f"{name} (its key {endpoint.key_env} is not set)"
        else:
            label = name
        choices.append((name, label))
    return choices


def choice_field(form: forms.BaseForm, name: str) -> forms.ChoiceField:
    """A form's choice field, to set its choices per request (`form.fields` holds plain Fields for the type checker)."""
    field = form.fields[name]
    if not isinstance(field, forms.ChoiceField):
        raise TypeError(f"The field {name!r} of {type(form).__name__} is not a choice field.")
    return field


def default_endpoint() -> str:
    """The first configured endpoint whose key is set, else the offline stand-in."""
    offline = (llm.STANDIN, llm.RECORDED)
    usable = [name for name, e in llm.endpoints().items() if name not in offline and llm.endpoint_has_key(e)]
    return usable[0] if usable else llm.STANDIN


class JudgeVersionForm(forms.Form):
    """The prompt editor. Checks what the service checks, so problems show next to their fields."""

    system_template = forms.CharField(widget=forms.Textarea(attrs={"rows": 8}), required=False, strip=False)
    user_template = forms.CharField(widget=forms.Textarea(attrs={"rows": 10}), strip=False)
    endpoint = forms.ChoiceField(choices=())
    model = forms.CharField(max_length=200, help_text="A dated snapshot, such as gpt-4o-2024-08-06.")
    allow_alias = forms.BooleanField(
        required=False, label="Accept a floating alias (the model behind it can change without notice)"
    )
    temperature = forms.FloatField(min_value=0, max_value=2, initial=0)
    max_tokens = forms.IntegerField(min_value=1, max_value=32000, initial=400)
    examples = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        required=False,
        help_text="One per line: the external id of a TRAIN item, its verdict, and optionally | the reasoning.",
    )
    change_note = forms.CharField(max_length=500, required=False)

    def __init__(self, *args: Any, project: Project, needs_note: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.project = project
        self.needs_note = needs_note
        choice_field(self, "endpoint").choices = endpoint_choices()
        self.fields["change_note"].required = needs_note
        self.parsed_examples: list[judge_versions.ExampleData] = []

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = self.project.kind
        for field in ("system_template", "user_template"):
            for problem in prompts.template_problems(data.get(field, "") or "", kind=kind):
                self.add_error(field, problem)
        examples, problems = judge_versions.examples_parse(data.get("examples", "") or "")
        for problem in problems + judge_versions.examples_problems(project=self.project, examples=examples):
            self.add_error("examples", problem)
        self.parsed_examples = examples
        uses_examples = any(
            "examples" in prompts.placeholders_used(data.get(f, "") or "") for f in ("system_template", "user_template")
        )
        if examples and not uses_examples:
            self.add_error("user_template", "Add {{ examples }} where the few-shot examples should go.")
        model = (data.get("model") or "").strip()
        if model and not prompts.model_is_pinned(model) and not data.get("allow_alias"):
            self.add_error(
                "model",
                f"{model!r} is a floating alias: use a dated snapshot (such as gpt-4o-2024-08-06), or tick the "
                f"override below to accept that the model may change under you.",
            )
        return data


class NewJudgeForm(JudgeVersionForm):
    criterion_key = forms.ChoiceField(label="Criterion", choices=())
    name = forms.CharField(max_length=200, required=False, help_text="Defaults to the criterion's name.")

    field_order = ["criterion_key", "name"]

    def __init__(self, *args: Any, criteria: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choice_field(self, "criterion_key").choices = criteria


# The scopes a lead starts a run over, as the run form and the version page offer them.
RUN_SCOPES = [(JudgeRun.Scope.DEV, "Dev split"), (JudgeRun.Scope.ALL, "All items"), (JudgeRun.Scope.TEST, "Test")]


class RunStartForm(forms.Form):
    scope = forms.ChoiceField(choices=RUN_SCOPES, initial=JudgeRun.Scope.DEV)
    confirm_test = forms.BooleanField(required=False)


class JudgeTargetForm(forms.Form):
    """The bar a run must clear for the judge to count as calibrated."""

    target = forms.ChoiceField(choices=(), required=False, label="Kind of target")
    target_tpr = forms.FloatField(min_value=0, max_value=1, required=False, label="TPR at least")
    target_tnr = forms.FloatField(min_value=0, max_value=1, required=False, label="TNR at least")
    target_kappa = forms.FloatField(min_value=-1, max_value=1, required=False, label="κ at least")
    target_accuracy = forms.FloatField(min_value=0, max_value=1, required=False, label="Accuracy at least")
    single_label_reference = forms.BooleanField(
        required=False,
        label="Single labels may serve as the human reference",
        help_text="An item with one label and no gold label counts in this judge's figures. Off: only gold labels "
        "and strict majorities of two or more labels do. Applies to runs that finish from now on.",
    )

    NEEDS = {
        Judge.Target.TPR_TNR: ("target_tpr", "target_tnr"),
        Judge.Target.KAPPA: ("target_kappa",),
        Judge.Target.ACCURACY: ("target_accuracy",),
    }

    def __init__(self, *args: Any, judge: Judge, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.judge = judge
        pairwise = judge.project.is_pairwise
        choice_field(self, "target").choices = [
            (value, label) for value, label in Judge.Target.choices if not (pairwise and value == Judge.Target.TPR_TNR)
        ]
        if pairwise:
            del self.fields["target_tpr"], self.fields["target_tnr"]
            self.fields["target_accuracy"].label = "Agreement at least"

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for name in self.NEEDS.get(data.get("target", ""), ()):
            if data.get(name) is None:
                self.add_error(name, "This target needs a number here.")
        return data


# The judges pages' badges (templates/judges/_check_badge.html), in words a select option can hold.
CHECK_WORDS = {
    "calibrated": "calibrated",
    "not_yet": "not yet calibrated: below its target",
    "none": "no target set",
    "unknown": "target cannot tell",
}


def standing_label(s: monitor.VersionStanding) -> str:
    """A version's option on the monitor page: whether the judges pages call it calibrated (the same target check,
    on the same run), then the TPR and TNR that would correct its pass rate."""
    v = s.version
    if s.run is None or s.check is None:
        state = "no finished dev run"
    else:
        state = f"{CHECK_WORDS.get(s.check.status, s.check.status)} (dev run #{s.run.pk})"
    found = s.calibration
    rates = (
        f"corrects with TPR {found.tpr:.2f}, TNR {found.tnr:.2f} of its {found.run.scope} run"
        if found
        else "cannot monitor: no run on items humans passed and failed"
    )
    return f"v{v.number} · {v.model} · {state} · {rates}"


class MonitorForm(forms.Form):
    """The daily monitor of a judge's criterion: which version judges production, within what budget and sample cap,
    above what floor. The fields only parse; judges.monitor.monitor_check, which the API shares, judges the values."""

    version = forms.TypedChoiceField(coerce=int, label="Judge version")
    daily_budget_usd = forms.DecimalField(
        required=False,
        label="Daily budget (USD)",
        help_text="Empty: judge every record of the day. Else a seeded random sample whose estimated cost fits.",
    )
    daily_sample_cap = forms.IntegerField(
        required=False,
        label="Daily sample cap (records)",
        help_text="Empty: no cap of its own. Else at most this many records a day, a seeded random sample.",
    )
    threshold = forms.FloatField(
        required=False,
        label="Pass-rate threshold",
        help_text="Alert when a day's 95% interval lies wholly below it. Empty: no alert.",
    )
    enabled = forms.BooleanField(required=False, initial=True, label="Run every day")

    def __init__(self, *args: Any, judge: Judge, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.judge = judge
        field = self.fields["version"]
        assert isinstance(field, forms.TypedChoiceField)
        standings = monitor.version_standings(judge=judge)
        field.choices = [(s.version.pk, standing_label(s)) for s in standings]
        if "version" not in self.initial:
            # Preselect the newest version that can monitor, one the judges pages call calibrated first.
            usable = [s for s in standings if s.calibration is not None]
            best = next((s for s in usable if s.check is not None and s.check.status == "calibrated"), None)
            if best or usable:
                self.initial["version"] = (best or usable[0]).version.pk

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        version = self.judge.versions.filter(pk=data["version"]).first()
        if version is None:
            self.add_error("version", "Choose one of this judge's versions.")
            return data
        try:
            monitor.monitor_check(
                judge=self.judge,
                version=version,
                daily_budget_usd=data["daily_budget_usd"],
                threshold=data["threshold"],
                daily_sample_cap=data["daily_sample_cap"],
            )
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                for message in messages:
                    self.add_error(None if field == NON_FIELD_ERRORS else field, message)
        return data


def version_initial(project: Project, version: JudgeVersion | None = None) -> dict[str, Any]:
    """The version form's initial values: the defaults for a new judge, or a copy of `version` to edit into a child."""
    if version is None:
        return {
            "system_template": prompts.DEFAULT_SYSTEM[project.kind],
            "user_template": prompts.DEFAULT_USER[project.kind],
            "endpoint": default_endpoint(),
            "model": "gpt-4o-2024-08-06",
            "temperature": 0,
            "max_tokens": 400,
        }
    examples = "\n".join(
        f"{ex.item.external_id} {ex.verdict}" + (f" | {ex.reasoning}" if ex.reasoning else "")
        for ex in version.examples.select_related("item").order_by("position")
    )
    return {
        "system_template": version.system_template,
        "user_template": version.user_template,
        "endpoint": version.endpoint,
        "model": version.model,
        "allow_alias": version.model_is_alias,
        "temperature": version.temperature,
        "max_tokens": version.max_tokens,
        "examples": examples,
    }


def version_args(form: JudgeVersionForm) -> dict[str, Any]:
    """A valid version form's values as judge_version_create takes them."""
    data = form.cleaned_data
    return {
        "system_template": data["system_template"],
        "user_template": data["user_template"],
        "endpoint": data["endpoint"],
        "model": data["model"],
        "allow_alias": data["allow_alias"],
        "temperature": data["temperature"],
        "max_tokens": data["max_tokens"],
        "examples": form.parsed_examples,
        "change_note": data.get("change_note", ""),
    }
