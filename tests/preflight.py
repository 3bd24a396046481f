"""`make test` and `make bench` need the real PostgreSQL and Redis: stop at once, saying how to start them."""

from __future__ import annotations

import os
import sys

import psycopg
import psycopg.sql
import redis

PG_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
REDIS_START = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
    "--dir /var/lib/redis --logfile /var/log/redis/ci.log"
)


def main() -> int:
    problems = []
    database_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://")):
        problems.append(f"DATABASE_URL must point at PostgreSQL for the tests, not {database_url!r}.")
    else:
        # Connect to the maintenance database: the test database is created by the test run itself.
        admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
        try:
            with psycopg.connect(admin_url, connect_timeout=3, autocommit=True) as conn:
                # The app's own database (used by makemigrations' history check and the benchmarks).
                name = database_url.rsplit("/", 1)[1].split("?")[0]
                if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                    conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
        except psycopg.Error as exc:
            problems.append(f"PostgreSQL at {admin_url} does not answer ({exc}).\n    Start it with: {PG_START}")
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except (redis.RedisError, ValueError) as exc:
        problems.append(f"Redis at {redis_url!r} does not answer ({exc}).\n    Start it with: {REDIS_START}")
    for problem in problems:
        print(f"make: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
