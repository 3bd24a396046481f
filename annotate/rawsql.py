"""What the hot path's raw SQL shares: explicit column lists instead of `*`.

Those statements are prepared on PostgreSQL (settings: DB_PREPARED_STATEMENTS). A prepared `SELECT i.*` fixes its
result columns when it is prepared, so a migration that adds a column (run while web processes of the previous
release still serve) would make PostgreSQL refuse it ("cached plan must not change result type") on every connection
that prepared it. A list of the model's own columns keeps its result type whatever is added to the table.
"""

from __future__ import annotations

from django.db import models


def columns(model: type[models.Model], alias: str) -> str:
    """`alias.column, ...` for every concrete field of `model`, in the model's order."""
    return ", ".join(f"{alias}.{field.column}" for field in model._meta.concrete_fields)
