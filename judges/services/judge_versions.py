"""Judges, their targets, and their versions. A version (prompt, model, few-shot examples) is never edited in place,
so every verdict refers to exactly the prompt that produced it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from annotate import selectors as annotate_selectors
from annotate.models import Item, Project
from judges import llm, prompts
from judges.models import FewShotExample, Judge, JudgeVersion
from judges.services import Actor, actor_user

MAX_EXAMPLES = 20
BINARY_VERDICTS = ("pass", "fail")
PAIRWISE_VERDICTS = ("a", "b", "tie")


def judge_create(*, project: Project, criterion_key: str, name: str = "", actor: Actor | None = None) -> Judge:
    """The judge of one criterion of the project's current rubric. A criterion has at most one judge."""
    criterion = annotate_selectors.criteria_current(project=project).filter(key=criterion_key).first()
    if criterion is None:
        raise ValidationError(f"The current rubric has no criterion {criterion_key!r}.")
    try:
        with transaction.atomic():
            return Judge.objects.create(
                project=project,
                criterion_key=criterion_key,
                name=(name or criterion.name)[:200],
                created_by=actor_user(actor),
            )
    except IntegrityError:
        raise ValidationError(f"The criterion “{criterion.name}” already has a judge: add a version to it.") from None


TARGET_FIELDS = ("target_tpr", "target_tnr", "target_kappa", "target_accuracy")
TARGET_NUMBERS = {
    Judge.Target.TPR_TNR: ("target_tpr", "target_tnr"),
    Judge.Target.KAPPA: ("target_kappa",),
    Judge.Target.ACCURACY: ("target_accuracy",),
}


def judge_target_set(
    *, judge: Judge, target: str, numbers: dict[str, float | None], single_label_reference: bool | None = None
) -> Judge:
    """Set the bar a run must clear for the judge to count as calibrated. Numbers the kind of target does not use are
    cleared, so what is stored is exactly the target shown; the ranges are checked by Postgres constraints.

    `single_label_reference` (None: unchanged) says whether items with one human label and no gold label serve as the
    human reference for the judge's figures. It applies to runs that finish from now on: a finished run's report keeps
    the setting it was computed with, and its pages follow the report (run_reference.single_labels_serve)."""
    if target not in Judge.Target.values:
        raise ValidationError(f"Unknown target {target!r}.")
    if target == Judge.Target.TPR_TNR and judge.project.is_pairwise:
        raise ValidationError("TPR and TNR targets apply to pass/fail judges only.")
    used = TARGET_NUMBERS.get(Judge.Target(target), ())
    fields = {name: (numbers.get(name) if name in used else None) for name in TARGET_FIELDS}
    if missing := [name for name in used if fields[name] is None]:
        raise ValidationError(f"This target needs {', '.join(missing)}.")
    settings_: dict[str, object] = {"target": target, **fields}
    if single_label_reference is not None:
        settings_["single_label_reference"] = single_label_reference
    Judge.objects.filter(pk=judge.pk).update(**settings_)
    judge.refresh_from_db(fields=list(settings_))
    return judge


@dataclass(frozen=True)
class ExampleData:
    external_id: str
    verdict: str
    reasoning: str = ""


def examples_parse(text: str) -> tuple[list[ExampleData], list[str]]:
    """Read the editor's few-shot box: one example per line, `EXTERNAL_ID VERDICT` then optionally `| reasoning`."""
    examples, problems = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        head, _, reasoning = line.partition("|")
        parts = head.split()
        if len(parts) != 2:
            problems.append(f"Examples, line {n}: write the item's external id, then its verdict (and | reasoning).")
            continue
        examples.append(ExampleData(external_id=parts[0], verdict=parts[1], reasoning=reasoning.strip()))
    return examples, problems


def _check_examples(
    *, project: Project, examples: Sequence[ExampleData]
) -> tuple[list[tuple[Item, str, str]], list[str]]:
    """The examples' items and canonical verdicts, or problems. Only train items qualify: dev and test stay unseen."""
    problems: list[str] = []
    if len(examples) > MAX_EXAMPLES:
        problems.append(f"At most {MAX_EXAMPLES} few-shot examples.")
    allowed = PAIRWISE_VERDICTS if project.is_pairwise else BINARY_VERDICTS
    items = {
        i.external_id: i
        for i in Item.objects.filter(project=project, external_id__in=[e.external_id for e in examples])
    }
    found: list[tuple[Item, str, str]] = []
    seen: set[str] = set()
    for example in examples:
        item = items.get(example.external_id)
        verdict = example.verdict.strip().lower()
        if item is None:
            problems.append(f"Example {example.external_id!r}: no such item in this project.")
        elif item.split != Item.Split.TRAIN:
            problems.append(
                f"Example {example.external_id!r} is in the {item.split} split: few-shot examples may only come from "
                f"train, so that dev and test stay unseen by the prompt."
            )
        elif verdict not in allowed:
            problems.append(f"Example {example.external_id!r}: the verdict must be one of {', '.join(allowed)}.")
        elif example.external_id in seen:
            problems.append(f"Example {example.external_id!r} is listed twice.")
        else:
            found.append((item, verdict, example.reasoning[:2000]))
        seen.add(example.external_id)
    return found, problems


def examples_problems(*, project: Project, examples: Sequence[ExampleData]) -> list[str]:
    """What is wrong with these few-shot examples (for the editor; judge_version_create checks the same)."""
    return _check_examples(project=project, examples=examples)[1]


def judge_version_create(
    *,
    judge: Judge,
    user_template: str,
    system_template: str = "",
    endpoint: str,
    model: str,
    temperature: float = 0.0,
    max_tokens: int = 400,
    examples: Sequence[ExampleData] = (),
    allow_alias: bool = False,
    parent: JudgeVersion | None = None,
    change_note: str = "",
    actor: Actor | None = None,
) -> JudgeVersion:
    """A new version of the judge: version n+1, whose parent is the version it was edited from. Versions are never
    edited in place, so every verdict refers to exactly the prompt that produced it.

    Every problem is reported at once (ValidationError with one message each): unknown placeholders by name, a
    floating model alias without the override, an endpoint not configured, few-shot examples outside train.
    """
    project = judge.project
    problems = prompts.version_problems(
        system=system_template, user=user_template, kind=project.kind, n_examples=len(examples)
    )
    model = model.strip()
    # On the `recorded` endpoint the recording pins the model (a replayed answer cannot change tomorrow), and a prompt
    # with no recording gets the deterministic stand-in: neither floats, whatever the model is called.
    is_alias = not prompts.model_is_pinned(model) and not llm.is_recorded(endpoint)
    if not model:
        problems.append("Name the model, as a dated snapshot such as gpt-4o-2024-08-06.")
    elif is_alias and not allow_alias:
        problems.append(
            f"{model!r} is a floating alias: the model behind it can change without notice. Use a dated snapshot "
            f"(such as gpt-4o-2024-08-06), or tick the override to accept the risk."
        )
    try:
        llm.endpoint_get(endpoint)
    except llm.EndpointError as exc:
        problems.append(str(exc))
    if not 0 <= temperature <= 2:
        problems.append("The temperature must be between 0 and 2.")
    if not 1 <= max_tokens <= 32000:
        problems.append("Max tokens must be between 1 and 32000.")
    if parent is not None and parent.judge_id != judge.pk:
        problems.append("The parent version belongs to another judge.")
    if parent is not None and not change_note.strip():
        problems.append("Say what changed from the parent version (the change note).")
    found, example_problems = _check_examples(project=project, examples=examples)
    problems += example_problems
    if problems:
        raise ValidationError(problems)
    with transaction.atomic():
        # Lock the judge so two editors cannot both create version n+1.
        Judge.objects.select_for_update().filter(pk=judge.pk).first()
        last = JudgeVersion.objects.filter(judge=judge).order_by("-number").values_list("number", flat=True).first()
        version = JudgeVersion.objects.create(
            judge=judge,
            number=(last or 0) + 1,
            parent=parent,
            change_note=change_note.strip()[:500],
            system_template=system_template,
            user_template=user_template,
            endpoint=endpoint,
            model=model,
            model_is_alias=is_alias,
            temperature=temperature,
            max_tokens=max_tokens,
            created_by=actor_user(actor),
        )
        FewShotExample.objects.bulk_create(
            FewShotExample(version=version, item=item, position=n, verdict=verdict, reasoning=reasoning)
            for n, (item, verdict, reasoning) in enumerate(found)
        )
    return version
