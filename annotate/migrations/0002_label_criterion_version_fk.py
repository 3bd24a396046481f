"""A composite foreign key that makes a label's criterion belong to the label's rubric version.

Django cannot declare composite foreign keys, so PostgreSQL gets it here; SQLite (the embedded demo default) relies
on the service layer, which always takes the version from the criterion.
"""

from __future__ import annotations

from django.db import migrations

FK_NAME = "label_criterion_in_label_version_fk"


def add_fk(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f"ALTER TABLE annotate_label ADD CONSTRAINT {FK_NAME} FOREIGN KEY (criterion_id, rubric_version_id) "
        "REFERENCES annotate_criterion (id, rubric_version_id) DEFERRABLE INITIALLY DEFERRED"
    )


def drop_fk(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"ALTER TABLE annotate_label DROP CONSTRAINT IF EXISTS {FK_NAME}")


class Migration(migrations.Migration):
    dependencies = [("annotate", "0001_initial")]

    operations = [migrations.RunPython(add_fk, drop_fk)]
