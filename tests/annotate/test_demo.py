"""The demo loads the real Tülu 1 sample; the counts are recomputed here from the file, independently."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from django.contrib.auth import get_user_model

from annotate.demo import DATA_FILE, demo_load
from annotate.models import Item, Label, Project

pytestmark = pytest.mark.django_db


def _expected() -> tuple[int, int, int, int]:
    rows = [json.loads(line) for line in DATA_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]
    pairs: defaultdict[tuple, set] = defaultdict(set)
    singles: defaultdict[tuple, set] = defaultdict(set)
    for r in rows:
        pairs[(r["instance_id"], r["model_a"], r["model_b"])].add(r["evaluator"])
        singles[(r["instance_id"], r["model_a"])].add(r["evaluator"])
        singles[(r["instance_id"], r["model_b"])].add(r["evaluator"])
    return (
        len(singles),
        sum(len(v) for v in singles.values()),
        len(pairs),
        sum(len(v) for v in pairs.values()),
    )


@pytest.mark.slow
def test_the_demo_loads_both_projects_with_real_labels_and_is_idempotent(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    first = demo_load()
    n_binary_items, n_binary_labels, n_pair_items, n_pair_labels = _expected()
    binary = Project.objects.get(slug="tulu-acceptability")
    pairwise = Project.objects.get(slug="tulu-preference")
    assert binary.status == pairwise.status == "active"
    assert Item.objects.filter(project=binary).count() == n_binary_items
    assert Item.objects.filter(project=pairwise).count() == n_pair_items
    assert Label.objects.filter(item__project=binary).count() == n_binary_labels
    assert Label.objects.filter(item__project=pairwise).count() == n_pair_labels
    assert set(Label.objects.filter(item__project=pairwise).values_list("value", flat=True)) == {
        "a",
        "b",
        "tie",
    }

    second = demo_load()
    assert (second.items_created, second.labels_created) == (0, 0)
    assert first.credentials == second.credentials
    User = get_user_model()
    for username, password, _role in second.credentials:
        assert User.objects.get(username=username).check_password(password)
    imported = User.objects.filter(username__startswith="tulu-")
    assert imported.exists() and not imported.filter(is_active=True).exists()


@pytest.mark.slow
def test_the_demo_lead_may_create_projects_and_the_annotators_may_not():
    from annotate.services.projects import project_may_create

    demo_load()
    users = get_user_model().objects
    assert project_may_create(users.get(username="lead"))
    assert not project_may_create(users.get(username="annotator1"))
