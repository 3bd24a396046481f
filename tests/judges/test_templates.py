"""Judge prompt templates: placeholders, literal item text, model pinning, few-shot examples, immutable versions."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from judges import forms, prompts, selectors
from judges.models import FewShotExample, JudgeVersion, Verdict
from judges.services import judge_versions
from tests.factories import ProjectFactory
from tests.judges.conftest import MODEL, make_item, make_version

ITEM = prompts.ItemData(
    external_id="ticket-7",
    input="Where is my order?",
    output="It ships Friday.",
    output_a="First answer.",
    output_b="Second answer.",
    metadata={"channel": "email", "scores": [1, 2]},
)


def _render(template: str, item: prompts.ItemData = ITEM, examples: str = "") -> str:
    return prompts.render(
        template, item=item, criterion_name="Grounded", criterion_description="Claims are sourced.", examples=examples
    )


def test_it_substitutes_every_documented_placeholder():
    template = (
        "{{ input }}|{{output}}|{{ output_a }}|{{ output_b }}|{{ criterion.name }}|{{ criterion.description }}|"
        "{{ item.external_id }}|{{ item.metadata.channel }}|{{ item.metadata.scores }}|{{ item.metadata.none }}|"
        "{{ examples }}"
    )
    assert _render(template, examples="EX") == (
        "Where is my order?|It ships Friday.|First answer.|Second answer.|Grounded|Claims are sourced.|ticket-7|"
        "email|[1, 2]||EX"
    )


def test_template_code_in_a_template_comes_out_literally():
    template = "{{ ''.__class__ }} {% for x in y %}{{ x }}{% endfor %} {# note #} {{ input.upper }} {{ input }}"
    assert _render(template) == (
        "{{ ''.__class__ }} {% for x in y %}{{ x }}{% endfor %} {# note #} {{ input.upper }} Where is my order?"
    )


def test_item_text_that_looks_like_template_code_reaches_the_model_literally():
    hostile = prompts.ItemData(
        external_id="x",
        input="{{ output }} {{ ''.__class__.__mro__ }} {% import os %}{{ criterion.name }}",
        output="{{ input }}",
    )
    # One pass over the template: what an item brings in is never scanned again.
    assert _render("<input>{{ input }}</input><output>{{ output }}</output>", item=hostile) == (
        "<input>{{ output }} {{ ''.__class__.__mro__ }} {% import os %}{{ criterion.name }}</input>"
        "<output>{{ input }}</output>"
    )


def test_an_unknown_placeholder_is_an_error_that_names_it():
    problems = prompts.template_problems("Judge {{ input }} by {{ rubric }} and {{ ''.__class__ }}", kind="binary")
    assert len(problems) == 2
    assert problems[0].startswith("Unknown placeholder {{ rubric }}")
    assert problems[1].startswith("Unknown placeholder {{ ''.__class__ }}")


def test_outputs_of_the_other_project_kind_are_refused_by_name():
    assert "{{ output_a }} is for pairwise projects" in prompts.template_problems("{{ output_a }}", kind="binary")[0]
    assert "{{ output }} is for binary projects" in prompts.template_problems("{{ output }}", kind="pairwise")[0]
    assert prompts.template_problems("{{ output_a }} {{ output_b }}", kind="pairwise") == []


def test_the_answer_format_is_always_appended_to_the_system_message():
    messages = prompts.render_messages(
        system_template="",
        user_template="{{ input }}",
        kind="pairwise",
        item=ITEM,
        criterion_name="c",
        criterion_description="d",
    )
    assert messages == [
        {"role": "system", "content": prompts.PAIRWISE_FORMAT},
        {"role": "user", "content": "Where is my order?"},
    ]


@pytest.mark.django_db
def test_the_second_order_shows_output_b_first():
    project = ProjectFactory(kind="pairwise")
    item = make_item(project, 1)
    assert selectors.item_data(item, Verdict.Order.AB).output_a == item.output_a
    assert selectors.item_data(item, Verdict.Order.BA).output_a == item.output_b
    assert selectors.item_data(item, Verdict.Order.BA).output_b == item.output_a


@pytest.mark.parametrize(
    ("model", "pinned"),
    [
        ("gpt-4o-2024-08-06", True),
        ("gpt-4o-mini-2024-07-18", True),
        ("claude-3-5-sonnet-20241022", True),
        ("gpt-4-0613", True),
        ("llama3@sha256:0123456789abcdef0123", True),
        ("gpt-4o", False),
        ("gpt-4o-mini", False),
        ("chatgpt-4o-latest", False),
        ("claude-3-5-sonnet-latest", False),
        ("llama3.1:8b", False),
    ],
)
def test_only_dated_snapshots_count_as_pinned(model, pinned):
    assert prompts.model_is_pinned(model) is pinned


@pytest.mark.django_db
def test_a_floating_alias_is_refused_unless_the_lead_ticks_the_override(judge, standin):
    with pytest.raises(ValidationError, match="'gpt-4o' is a floating alias"):
        make_version(judge, model="gpt-4o")
    version = make_version(judge, model="gpt-4o", allow_alias=True)
    assert version.model_is_alias
    assert not make_version(judge, model=MODEL).model_is_alias


@pytest.mark.django_db
def test_few_shot_examples_from_dev_or_test_are_refused_by_the_service_and_the_form(project, judge, standin):
    make_item(project, 1, split="dev")
    make_item(project, 2, split="test")
    make_item(project, 3, split="train")
    examples = [judge_versions.ExampleData("item-1", "pass"), judge_versions.ExampleData("item-2", "fail")]
    with pytest.raises(ValidationError) as refused:
        make_version(judge, examples=examples)
    assert [m for m in refused.value.messages if "split" in m] == [
        "Example 'item-1' is in the dev split: few-shot examples may only come from train, so that dev and test stay "
        "unseen by the prompt.",
        "Example 'item-2' is in the test split: few-shot examples may only come from train, so that dev and test stay "
        "unseen by the prompt.",
    ]
    form = forms.JudgeVersionForm(
        {
            "user_template": prompts.DEFAULT_USER["binary"],
            "endpoint": "standin",
            "model": MODEL,
            "temperature": "0",
            "max_tokens": "100",
            "examples": "item-1 pass\nitem-3 fail | too vague",
        },
        project=project,
    )
    assert not form.is_valid()
    assert form.errors["examples"] == [
        "Example 'item-1' is in the dev split: few-shot examples may only come from train, so that dev and test stay "
        "unseen by the prompt."
    ]
    assert not FewShotExample.objects.exists()


@pytest.mark.django_db
def test_few_shot_examples_from_train_are_shown_where_the_examples_placeholder_is(project, judge, standin):
    example = make_item(project, 1, split="train", input="What is 2+2?", output="5")
    item = make_item(project, 2, split="dev")
    version = make_version(judge, examples=[judge_versions.ExampleData("item-1", "FAIL", "Arithmetic error.")])
    assert list(version.examples.values_list("item__external_id", "verdict", "reasoning")) == [
        ("item-1", "fail", "Arithmetic error.")
    ]
    context = selectors.render_context(version=version, rubric_version=project.current_rubric)
    [call] = selectors.plan_calls(context, [item])
    user = call.request.messages[1]["content"]
    assert user.startswith("Examples of correct judgments:")
    assert '<output>\n5\n</output>\nAnswer: {"reasoning": "Arithmetic error.", "verdict": "fail"}' in user
    assert user.index(example.input) < user.index(item.input)


@pytest.mark.django_db
def test_examples_without_an_examples_placeholder_are_refused(project, judge, standin):
    make_item(project, 1, split="train")
    with pytest.raises(ValidationError, match=r"no \{\{ examples \}\} placeholder"):
        make_version(
            judge, user_template="{{ input }} {{ output }}", examples=[judge_versions.ExampleData("item-1", "pass")]
        )


@pytest.mark.django_db
def test_an_edit_makes_the_next_version_with_its_parent_and_change_note(judge, standin):
    first = make_version(judge)
    with pytest.raises(ValidationError, match="Say what changed"):
        make_version(judge, parent=first)
    second = make_version(judge, parent=first, change_note="Stricter on tone.", system_template="Be strict.")
    assert (second.number, second.parent, second.change_note) == (2, first, "Stricter on tone.")
    first.refresh_from_db()
    assert first.system_template == prompts.DEFAULT_SYSTEM["binary"]


@pytest.mark.django_db
def test_saving_reports_every_problem_at_once(judge, standin):
    with pytest.raises(ValidationError) as refused:
        make_version(judge, user_template="{{ nope }}", model="gpt-4o", endpoint="nowhere", temperature=3)
    messages = refused.value.messages
    assert any("{{ nope }}" in m for m in messages)
    assert any("floating alias" in m for m in messages)
    assert "No endpoint named 'nowhere' is configured (JUDGE_ENDPOINTS)." in messages
    assert "The temperature must be between 0 and 2." in messages
    assert not JudgeVersion.objects.exists()


def test_prompt_tokens_are_estimated_from_the_rendered_length():
    messages = [{"role": "system", "content": "x" * 10}, {"role": "user", "content": "y" * 8}]
    # ceil(10 / 4) + 4 and 8 / 4 + 4: four characters a token, four tokens of framing per message.
    assert prompts.estimate_tokens(messages) == 7 + 6


@pytest.mark.django_db
def test_a_judge_can_only_be_made_for_a_criterion_of_the_current_rubric_and_only_once(project, judge):
    with pytest.raises(ValidationError, match="already has a judge"):
        judge_versions.judge_create(project=project, criterion_key="acceptable")
    with pytest.raises(ValidationError, match="no criterion 'tone'"):
        judge_versions.judge_create(project=project, criterion_key="tone")
