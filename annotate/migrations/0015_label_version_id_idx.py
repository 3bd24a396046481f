import django.db.models.deletion
from django.db import migrations, models

# The index Django made for the foreign key on its own: label_version_id_idx leads with the same column.
FK_INDEX = "annotate_label_rubric_version_id_f91bcd62"


class Migration(migrations.Migration):
    dependencies = [
        ("annotate", "0014_analyze_hot_tables_sooner"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="label",
            index=models.Index(fields=["rubric_version", "id"], name="label_version_id_idx"),
        ),
        # Only the index goes: AlterField would also drop the foreign key constraint and add it again, checking
        # every label while it holds a lock on the table.
        migrations.SeparateDatabaseAndState(
            state_operations=[
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
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{FK_INDEX}"',
                    reverse_sql=f'CREATE INDEX "{FK_INDEX}" ON "annotate_label" ("rubric_version_id")',
                ),
            ],
        ),
    ]
