"""Imported once by the export forkserver (annotate/export_process.py) before it forks any child: Django set up and
the export code loaded, so that a child starts in milliseconds. No database connection is opened here."""

from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotate.settings")
django.setup()

import annotate.export_process  # noqa: E402, F401  (the children's code, and the export code it imports)
