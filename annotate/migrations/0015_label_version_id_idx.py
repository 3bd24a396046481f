"""label_version_id_idx (rubric_version, id) replaces the index Django made for the label's rubric_version foreign key
on its own (the new one leads with the same column).

On PostgreSQL both steps run CONCURRENTLY: building the index over millions of labels (about 0.6 s per million) does
not hold up annotators' submits meanwhile. Only the index goes, not the foreign key: AlterField would also drop the
constraint and add it again, checking every label under a lock on the table.
"""

import django.db.models.deletion
from django.db import migrations, models

NEW_INDEX = "label_version_id_idx"
FK_INDEX = "annotate_label_rubric_version_id_f91bcd62"  # the foreign key's own index


def _concurrently(schema_editor) -> str:
    return " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""


def swap_indexes(apps, schema_editor):
    how = _concurrently(schema_editor)
    schema_editor.execute(
        f'CREATE INDEX{how} IF NOT EXISTS "{NEW_INDEX}" ON "annotate_label" ("rubric_version_id", "id")'
    )
    schema_editor.execute(f'DROP INDEX{how} IF EXISTS "{FK_INDEX}"')


def swap_back(apps, schema_editor):
    how = _concurrently(schema_editor)
    schema_editor.execute(f'CREATE INDEX{how} IF NOT EXISTS "{FK_INDEX}" ON "annotate_label" ("rubric_version_id")')
    schema_editor.execute(f'DROP INDEX{how} IF EXISTS "{NEW_INDEX}"')


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ("annotate", "0014_analyze_hot_tables_sooner"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex(
                    model_name="label",
                    index=models.Index(fields=["rubric_version", "id"], name=NEW_INDEX),
                ),
                migrations.AlterField(
                    model_name="label",
                    name="rubric_version",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="labels",
                        to="annotate.rubricversion",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(swap_indexes, swap_back)],
        ),
    ]
