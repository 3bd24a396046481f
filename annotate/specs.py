"""The project spec: the JSON or YAML file that `manage.py create_project` reads. Validation names the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from annotate.models import Project

Slug = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class SpecError(Exception):
    """A spec that cannot be applied. `errors` holds one "field.path: reason" line per problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors))


class CriterionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: Slug
    name: ShortText
    description: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000)]


class MemberSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=150)]
    role: Literal["annotator", "lead"]


class ProjectSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: Slug
    name: ShortText
    kind: Literal["binary", "pairwise"]
    instructions: Annotated[str, StringConstraints(max_length=50_000)] = ""
    overlap: Annotated[int, Field(ge=1, le=Project.MAX_OVERLAP, strict=True)] = 2
    allow_tie: Annotated[bool, Field(strict=True)] = True
    require_note_on_fail: Annotated[bool, Field(strict=True)] = False
    # The daily production sample. Omitted: a new project takes the defaults (50 records from 6:00), an existing one
    # keeps its own.
    sample_size: Annotated[int, Field(ge=0, le=Project.MAX_SAMPLE_SIZE, strict=True)] | None = None
    sample_hour: Annotated[int, Field(ge=0, le=23, strict=True)] | None = None
    # Minutes before a skipped item comes back to the end of the annotator's queue. Omitted: 60 for a new project,
    # unchanged for an existing one.
    skip_return_minutes: Annotated[int, Field(ge=0, le=Project.MAX_SKIP_RETURN_MINUTES, strict=True)] | None = None
    # Omitted: a new project starts as a draft and an existing one keeps its status.
    status: Literal["draft", "active", "archived"] | None = None
    criteria: Annotated[list[CriterionSpec], Field(min_length=1, max_length=50)]
    members: list[MemberSpec] = []

    @model_validator(mode="after")
    def _unique_keys_and_members(self) -> ProjectSpec:
        keys = [c.key for c in self.criteria]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValueError(f"criteria: duplicate key(s) {', '.join(duplicates)}")
        names = [m.username for m in self.members]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"members: user(s) listed twice: {', '.join(twice)}")
        if self.status == "active" and len(self.criteria) < Project.MIN_CRITERIA_TO_ACTIVATE:
            raise ValueError(
                f"status: a project needs at least {Project.MIN_CRITERIA_TO_ACTIVATE} criteria to be active "
                f"(this spec has {len(self.criteria)})"
            )
        return self


def _format_errors(exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {message}" if path else message)
    return lines


def spec_parse(data: object) -> ProjectSpec:
    try:
        return ProjectSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_format_errors(exc)) from None


def spec_load(path: Path) -> ProjectSpec:
    """Read a spec file (JSON, or YAML by extension) and validate it. Raises SpecError with every problem."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SpecError([f"{path}: no such file"]) from None
    except UnicodeDecodeError as exc:
        raise SpecError([f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    try:
        if path.suffix.lower() in {".yaml", ".yml"}:
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpecError(
            [f"{path}: not valid {'YAML' if path.suffix.lower() in {'.yaml', '.yml'} else 'JSON'}: {exc}"]
        ) from None
    if not isinstance(data, dict):
        raise SpecError([f"{path}: the spec must be an object with slug, name, kind and criteria"])
    return spec_parse(data)
