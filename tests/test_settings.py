"""Production settings refuse weak secrets and pass `check --deploy` with production-like values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "SECRET_KEY": "q8V2m0pXcN7rT4yB1kLzH6sJ3wE9dF5gA0uI2oP8aS7dF4gH1jK6lZ3xC9vB5nM2",
    "ALLOWED_HOSTS": "annotate.example.org",
    "CSRF_TRUSTED_ORIGINS": "https://annotate.example.org",
    "DEBUG": "false",
}


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "HTTPS", "ALLOWED_HOSTS"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_check_deploy_passes_with_production_values():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.slow
def test_production_refuses_to_start_without_a_secret_key_or_with_a_weak_one():
    missing = _manage("check", env={k: v for k, v in PRODUCTION.items() if k != "SECRET_KEY"})
    assert missing.returncode != 0 and "SECRET_KEY is not set" in missing.stderr
    for weak in ("short", "django-insecure-" + "x" * 60, "a" * 60):
        result = _manage("check", env={**PRODUCTION, "SECRET_KEY": weak})
        assert result.returncode != 0 and "SECRET_KEY is too weak" in result.stderr, weak


def test_a_bad_boolean_in_the_environment_is_a_clear_error():
    result = _manage("check", env={**PRODUCTION, "HTTPS": "maybe"})
    assert result.returncode != 0 and "HTTPS must be one of" in result.stderr
