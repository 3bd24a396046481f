"""The demo that `make run` loads: two projects from a sample of the Tülu 1 human evaluation (demo_data/SOURCE.md),
and a third from LLMBar with its experts' gold labels (demo_llmbar.py, demo_data/llmbar/SOURCE.md).

Loading is idempotent: running it again changes nothing but the demo users' passwords, which are reset to the ones
kept under var/ so the printed credentials always work.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction

from annotate import demo_llmbar, selectors, visibility
from annotate.models import Item, Label, Membership, Project
from annotate.services.items import item_build
from annotate.services.labels import labels_bulk_import
from annotate.services.members import membership_set
from annotate.services.projects import project_apply_spec
from annotate.specs import spec_parse

User = get_user_model()

DATA_FILE = Path(__file__).parent / "demo_data" / "tulu1_sample.jsonl"
_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
DEMO_USERS = (("lead", Membership.Role.LEAD), ("annotator1", "annotator"), ("annotator2", "annotator"))
ATTRIBUTION = (
    "Items and imported labels: a sample of the Tülu 1 human evaluation (Wang et al., NeurIPS 2023; "
    "allenai/open-instruct, Apache-2.0)."
)

BINARY_SPEC = {
    "slug": "tulu-acceptability",
    "name": "Tülu 1: is the response acceptable?",
    "kind": "binary",
    "overlap": 2,
    "status": "active",
    "instructions": (
        "Read the user's request, then the model's response. Judge each criterion on its own: **Pass** only if you "
        "would ship this response to the user as it is.\n\n" + ATTRIBUTION
    ),
    "criteria": [
        {
            "key": "acceptable",
            "name": "Acceptable",
            "description": "It does what the request asks and a user would be satisfied with it as it is.",
        },
        {
            "key": "follows_instructions",
            "name": "Follows the instruction",
            "description": "It does exactly what was asked, in the requested format and length; nothing is ignored.",
        },
        {
            "key": "factually_correct",
            "name": "Factually correct",
            "description": "No factual, logical or arithmetic error; where there is one right answer, it gives it.",
        },
    ],
}

PAIRWISE_SPEC = {
    "slug": "tulu-preference",
    "name": "Tülu 1: which response is better?",
    "kind": "pairwise",
    "overlap": 2,
    "allow_tie": True,
    "status": "active",
    "instructions": (
        "Read the user's request and both responses. For each criterion, pick the better response, or **Tie** when "
        "you cannot honestly tell them apart.\n\n" + ATTRIBUTION
    ),
    "criteria": [
        {
            "key": "overall",
            "name": "Overall preference",
            "description": "Which response would the user rather receive?",
        },
        {
            "key": "helpfulness",
            "name": "More helpful",
            "description": "Which response accomplishes the request more completely and directly?",
        },
        {
            "key": "correctness",
            "name": "More correct",
            "description": "Which response has fewer factual, logical or arithmetic errors?",
        },
    ],
}

_PREFERENCE = {
    "a-is-better": "a",
    "a-is-slightly-better": "a",
    "tie": "tie",
    "b-is-slightly-better": "b",
    "b-is-better": "b",
}


@dataclass(frozen=True)
class DemoResult:
    credentials: list[tuple[str, str, str]]  # (username, password, role)
    projects: list[Project]
    items_created: int
    labels_created: int


def _credentials_file() -> Path:
    return Path(settings.VAR_DIR) / "demo_credentials.json"


def _demo_users() -> list[tuple[str, str, str]]:
    path = _credentials_file()
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    out = []
    for username, role in DEMO_USERS:
        if username not in stored:
            stored[username] = "".join(secrets.choice(_ALPHABET) for _ in range(14))
            changed = True
        user, _ = User.objects.get_or_create(username=username)
        user.is_active = True
        user.set_password(stored[username])
        user.save()
        if role == Membership.Role.LEAD:
            # The demo's lead may also create projects (New project on the home page), as a team lead would.
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label="annotate", codename="add_project")
            )
        out.append((username, stored[username], role))
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stored, indent=2))
        path.chmod(0o600)
    return out


def _imported_user(initials: str):
    user, created = User.objects.get_or_create(username=f"tulu-{initials}")
    if created:
        user.is_active = False
        user.set_unusable_password()
        user.save()
    return user


def _rows() -> list[dict]:
    with DATA_FILE.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    # Latest judgment first, so that "first seen" below keeps each evaluator's latest row.
    rows.sort(key=lambda r: r["timestamp_iso"], reverse=True)
    return rows


@transaction.atomic
def demo_load() -> DemoResult:
    credentials = _demo_users()
    rows = _rows()
    projects = []
    items_created = labels_created = 0
    for spec_data in (BINARY_SPEC, PAIRWISE_SPEC):
        project, created, _ = project_apply_spec(spec=spec_parse(spec_data))
        if created:
            # Blind by default (annotate.visibility): the ids and model names stay hidden; the dataset name is harmless.
            visibility.project_set_annotator_fields(project=project, fields=["dataset"])
        for username, _, role in credentials:
            membership_set(project=project, user=User.objects.get(username=username), role=role)
        projects.append(project)

    binary, pairwise = projects
    for project, build in ((binary, _binary_items_and_labels), (pairwise, _pairwise_items_and_labels)):
        items, labels = build(project, rows)
        existing = set(Item.objects.filter(project=project).values_list("external_id", flat=True))
        new_items = [item for item in items.values() if item.external_id not in existing]
        Item.objects.bulk_create(new_items, batch_size=500)
        items_created += len(new_items)
        ids = dict(Item.objects.filter(project=project).values_list("external_id", "id"))
        criterion = selectors.criteria_current(project=project).get(key=labels[0][1] if labels else "")
        built = []
        for external_id, _key, user, value, created_at in labels:
            built.append(
                Label(
                    item_id=ids[external_id],
                    criterion=criterion,
                    rubric_version_id=criterion.rubric_version_id,
                    annotator=user,
                    value=value,
                    shown_order=Label.Order.AB if project.is_pairwise else None,
                    created_at=created_at,
                )
            )
        labels_created += labels_bulk_import(project=project, labels=built)
    members = [(User.objects.get(username=username), role) for username, _, role in credentials]
    llmbar, n_items, n_gold = demo_llmbar.llmbar_project_load(members=members)
    projects.append(llmbar)
    return DemoResult(credentials, projects, items_created + n_items, labels_created + n_gold)


def _when(row: dict) -> dt.datetime:
    return dt.datetime.fromisoformat(row["timestamp_iso"]).replace(tzinfo=dt.UTC)


def _binary_items_and_labels(project: Project, rows: list[dict]):
    items: dict[str, Item] = {}
    labels = []
    seen: set[tuple[str, str]] = set()
    for row in rows:
        user = _imported_user(row["evaluator"])
        for side in ("a", "b"):
            model = row[f"model_{side}"]
            external_id = f"{row['instance_id']}/{model}"
            text = row[f"completion_{side}"]
            if external_id not in items:
                items[external_id] = item_build(
                    project=project,
                    fields={"input": row["prompt"], "output": text},
                    external_id=external_id,
                    metadata={
                        "instance_id": row["instance_id"],
                        "model": model,
                        "dataset": "tulu1-human-eval",
                    },
                )
            if (external_id, user.username) in seen:
                continue
            seen.add((external_id, user.username))
            value = "pass" if row[f"completion_{side}_is_acceptable"] == "yes" else "fail"
            labels.append((external_id, "acceptable", user, value, _when(row)))
    return items, labels


def _pairwise_items_and_labels(project: Project, rows: list[dict]):
    items: dict[str, Item] = {}
    labels = []
    seen: set[tuple[str, str]] = set()
    for row in rows:
        user = _imported_user(row["evaluator"])
        external_id = f"{row['instance_id']}/{row['model_a']}-vs-{row['model_b']}"
        if external_id not in items:
            items[external_id] = item_build(
                project=project,
                fields={
                    "input": row["prompt"],
                    "output_a": row["completion_a"],
                    "output_b": row["completion_b"],
                },
                external_id=external_id,
                metadata={
                    "instance_id": row["instance_id"],
                    "model_a": row["model_a"],
                    "model_b": row["model_b"],
                    "dataset": "tulu1-human-eval",
                },
            )
        if (external_id, user.username) in seen:
            continue
        seen.add((external_id, user.username))
        labels.append((external_id, "overall", user, _PREFERENCE[row["preference"]], _when(row)))
    return items, labels
