"""`manage.py create_project FILE`: good specs apply, bad ones name the field and write nothing."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from annotate import selectors
from annotate.models import Label, Membership, Project
from tests.factories import UserFactory, label

pytestmark = pytest.mark.django_db

SPEC = {
    "slug": "support-bot",
    "name": "Support bot answers",
    "kind": "binary",
    "instructions": "Judge the **answer** only.",
    "overlap": 3,
    "criteria": [
        {"key": "resolves", "name": "Resolves the issue", "description": "The customer needs nothing more."},
        {"key": "grounded", "name": "Grounded", "description": "Every claim is in the retrieved documents."},
        {"key": "tone", "name": "Tone", "description": "Polite and brief."},
    ],
    "members": [{"username": "lena", "role": "lead"}, {"username": "ada", "role": "annotator"}],
}


@pytest.fixture
def users(db):
    return UserFactory(username="lena"), UserFactory(username="ada")


def _run(tmp_path, spec, name="spec.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(spec) if name.endswith(".json") else spec)
    out = StringIO()
    call_command("create_project", str(path), stdout=out)
    return out.getvalue()


def test_a_json_spec_creates_the_project_its_rubric_and_its_members(tmp_path, users):
    assert "Created project support-bot (rubric v1)" in _run(tmp_path, SPEC)
    project = Project.objects.get(slug="support-bot")
    assert (project.kind, project.overlap, project.status) == ("binary", 3, "draft")
    assert [c.key for c in selectors.criteria_current(project=project)] == ["resolves", "grounded", "tone"]
    assert dict(project.memberships.values_list("user__username", "role")) == {
        "lena": "lead",
        "ada": "annotator",
    }


def test_a_yaml_spec_works_the_same(tmp_path, users):
    yaml_text = """
slug: support-bot
name: Support bot answers
kind: pairwise
allow_tie: false
criteria:
  - {key: resolves, name: Resolves, description: Needs nothing more.}
  - {key: grounded, name: Grounded, description: Claims are sourced.}
  - {key: tone, name: Tone, description: Polite.}
"""
    _run(tmp_path, yaml_text, "spec.yaml")
    project = Project.objects.get(slug="support-bot")
    assert project.kind == "pairwise" and project.allow_tie is False


def test_rerunning_the_same_spec_changes_nothing_and_changed_criteria_bump_the_version(tmp_path, users):
    _run(tmp_path, SPEC)
    project = Project.objects.get(slug="support-bot")
    item_label = label(_item(project), users[1], "tone", "pass")
    assert "criteria unchanged (rubric v1)" in _run(tmp_path, SPEC)
    changed = {
        **SPEC,
        "criteria": [*SPEC["criteria"][:2], {"key": "tone", "name": "Tone", "description": "Warm."}],
    }
    assert "rubric v2" in _run(tmp_path, changed)
    assert selectors.rubric_current(project=project).number == 2
    assert Label.objects.get(pk=item_label.pk).rubric_version.number == 1


def _item(project):
    from tests.factories import ItemFactory

    return ItemFactory(project=project)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": None}, "name:"),
        ({"kind": "ranking"}, "kind:"),
        ({"slug": "Not A Slug!"}, "slug:"),
        ({"overlap": 0}, "overlap:"),
        ({"overlap": "2"}, "overlap:"),
        ({"allow_tie": "yes"}, "allow_tie:"),
        ({"criteria": []}, "criteria:"),
        ({"criteria": [{"key": "a", "name": "A"}]}, "criteria.0.description:"),
        ({"criteria": [{"key": "a", "name": "A", "description": "d"}] * 3}, "duplicate key"),
        ({"members": [{"username": "lena", "role": "owner"}]}, "members.0.role:"),
        ({"members": [{"username": "ghost", "role": "lead"}]}, "members.0.username: no user named 'ghost'"),
        (
            {"status": "active", "criteria": SPEC["criteria"][:2]},
            "status: a project needs at least 3 criteria",
        ),
        ({"colour": "blue"}, "colour:"),
    ],
)
def test_a_bad_spec_is_refused_with_the_field_named_and_nothing_written(tmp_path, users, change, field):
    spec = {k: v for k, v in {**SPEC, **change}.items() if v is not None}
    with pytest.raises(CommandError) as refused:
        _run(tmp_path, spec)
    assert field in str(refused.value)
    assert "nothing was written" in str(refused.value)
    assert not Project.objects.exists()
    assert not Membership.objects.exists()


def test_a_file_that_is_not_json_or_not_an_object_is_refused(tmp_path, users):
    for text in ("{not json", "[1, 2]", "\xff\xfe"):
        path = tmp_path / "spec.json"
        path.write_bytes(text.encode("latin-1"))
        with pytest.raises(CommandError, match=r"not valid JSON|must be an object|not UTF-8"):
            call_command("create_project", str(path))
    with pytest.raises(CommandError, match="no such file"):
        call_command("create_project", str(tmp_path / "missing.json"))
    assert not Project.objects.exists()


def test_the_kind_of_an_existing_project_cannot_change(tmp_path, users):
    _run(tmp_path, SPEC)
    with pytest.raises(CommandError, match="kind: project 'support-bot' is binary"):
        _run(tmp_path, {**SPEC, "kind": "pairwise", "name": "Renamed"})
    assert Project.objects.get(slug="support-bot").name == "Support bot answers"


def test_the_daily_sample_is_set_in_the_spec_and_kept_when_a_later_spec_omits_it(tmp_path, users):
    _run(tmp_path, SPEC | {"sample_size": 200, "sample_hour": 23})
    project = Project.objects.get(slug="support-bot")
    assert (project.sample_size, project.sample_hour) == (200, 23)
    _run(tmp_path, SPEC | {"sample_size": 0})
    project.refresh_from_db()
    assert (project.sample_size, project.sample_hour) == (0, 23)
    _run(tmp_path, SPEC)
    project.refresh_from_db()
    assert (project.sample_size, project.sample_hour) == (0, 23)
    for bad, field in (({"sample_hour": 24}, "sample_hour"), ({"sample_size": -1}, "sample_size")):
        with pytest.raises(CommandError, match=field):
            _run(tmp_path, SPEC | bad)
    project.refresh_from_db()
    assert (project.sample_size, project.sample_hour) == (0, 23)


def test_a_new_project_from_a_spec_without_sample_settings_takes_the_defaults(tmp_path, users):
    _run(tmp_path, SPEC)
    project = Project.objects.get(slug="support-bot")
    assert (project.sample_size, project.sample_hour) == (50, 6)
