"""Criteria remember the rubric version their definition dates from; labels carried over a rubric change are marked.

Existing criteria get `defined_in` from their history: a criterion whose key, name and definition read the same as in
the previous version keeps that version's `defined_in`, any other starts its own.
"""

from __future__ import annotations

import django.db.models.deletion
from django.db import migrations, models


def defined_in_backfill(apps, schema_editor):
    Criterion = apps.get_model("annotate", "Criterion")
    RubricVersion = apps.get_model("annotate", "RubricVersion")
    previous: dict[int, dict[str, tuple[str, str, int]]] = {}  # project id -> key -> (name, description, defined_in)
    for version in RubricVersion.objects.order_by("project_id", "number").iterator():
        before = previous.get(version.project_id, {})
        now: dict[str, tuple[str, str, int]] = {}
        for criterion in Criterion.objects.filter(rubric_version_id=version.pk):
            name, description = criterion.name.strip(), criterion.description.strip()
            prev = before.get(criterion.key)
            defined_in = prev[2] if prev is not None and prev[:2] == (name, description) else version.pk
            Criterion.objects.filter(pk=criterion.pk).update(defined_in_id=defined_in)
            now[criterion.key] = (name, description, defined_in)
        previous[version.project_id] = now


class Migration(migrations.Migration):
    dependencies = [("annotate", "0009_skips_skip_return")]

    operations = [
        migrations.AddField(
            model_name="criterion",
            name="defined_in",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="annotate.rubricversion",
            ),
        ),
        migrations.RunPython(defined_in_backfill, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="criterion",
            name="defined_in",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="+", to="annotate.rubricversion"
            ),
        ),
        migrations.AddField(
            model_name="label",
            name="carried",
            field=models.BooleanField(db_default=False, default=False),
        ),
    ]
