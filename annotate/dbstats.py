"""The planner's statistics of the hot tables, kept fresh where autovacuum is off or behind.

PostgreSQL's autovacuum ANALYZEs a table once enough of it changed (for the hot tables, 1% and at least 1,000 rows:
migration 0014), and fresh statistics also make it plan prepared statements again. Where autovacuum is off, or its
few workers are busy vacuuming some large table for hours, a plan made while a new installation's tables were nearly
empty would stay in use, and the queue's claims would slow down with every label given. Beat runs
`statistics_refresh` every minute: it ANALYZEs a hot table only when autovacuum should have and has not, so where
autovacuum keeps up it does nothing.
"""

from __future__ import annotations

import logging

from django.db import OperationalError, connection, transaction

log = logging.getLogger(__name__)

HOT_TABLES = ("annotate_label", "annotate_item", "annotate_assignment")
# As migration 0014 sets autovacuum for these tables: 1,000 rows plus 1% of the table changed since the last ANALYZE.
_STALE_SQL = """
SELECT relname FROM pg_stat_user_tables
WHERE schemaname = current_schema() AND relname = ANY(%s)
  AND n_mod_since_analyze > 1000 + 0.01 * greatest(n_live_tup, 0)
ORDER BY relname
"""


def statistics_refresh() -> list[str]:
    """ANALYZE each hot table whose statistics are stale; returns the tables analyzed. A table being vacuumed or
    analyzed right now (autovacuum holds its lock) is left for the next pass rather than waited for."""
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(_STALE_SQL, [list(HOT_TABLES)])
        stale = [name for (name,) in cursor.fetchall()]
    analyzed = []
    for table in stale:
        assert table in HOT_TABLES  # a name from the constant list, safe to put into the statement
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
                cursor.execute(f"ANALYZE {table}")
        except OperationalError as exc:  # lock_timeout: autovacuum is on it
            log.info("statistics of %s left for the next pass: %s", table, exc)
            continue
        analyzed.append(table)
    return analyzed
