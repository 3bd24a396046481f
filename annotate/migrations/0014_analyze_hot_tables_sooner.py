"""PostgreSQL's autovacuum ANALYZEs a table once a tenth of it has changed. On a label table of ten million rows, a new
project's first million labels go unseen by the statistics, and so do the queue counts of its items: plans made for
"no labels yet" stay in use. The hot tables are ANALYZEd after one per cent of their rows changed (at least 1,000);
ANALYZE reads a fixed sample (30,000 rows), so it stays cheap on large tables.

SQLite (the embedded demo default) has no autovacuum; nothing to do there.
"""

from __future__ import annotations

from django.db import migrations

TABLES = ("annotate_label", "annotate_item", "annotate_assignment")
OPTIONS = "autovacuum_analyze_scale_factor = 0.01, autovacuum_analyze_threshold = 1000"


def analyze_sooner(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(f"ALTER TABLE {table} SET ({OPTIONS})")


def analyze_as_by_default(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(
            f"ALTER TABLE {table} RESET (autovacuum_analyze_scale_factor, autovacuum_analyze_threshold)"
        )


class Migration(migrations.Migration):
    dependencies = [("annotate", "0013_review_notes_failure_modes")]

    operations = [migrations.RunPython(analyze_sooner, analyze_as_by_default)]
