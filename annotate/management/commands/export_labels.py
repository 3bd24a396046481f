from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotate import exports
from annotate.models import Item, Project


class Command(BaseCommand):
    help = (
        "Export a project's items with their reference labels (gold, else the strict majority of two or more "
        "labels, else a single label) and their kind for the current rubric version, read in one consistent "
        "snapshot. The manifest goes to FILE.manifest.json, or to stderr when writing to stdout."
    )

    # The system checks import every URL's views (the API, the LLM client...) to check them: a second or so and
    # 20 MB before the first row, for a read-only command that uses none of them.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--format", dest="fmt", choices=exports.FORMATS, default="jsonl")
        parser.add_argument("-o", "--output", help="file to write (default: stdout)")
        parser.add_argument("--split", choices=Item.Split.values)
        parser.add_argument("--min-labels", type=int, default=0, help="only items labeled by at least N annotators")
        parser.add_argument(
            "--consensus-only", action="store_true", help="only items with a reference label on every criterion"
        )
        parser.add_argument(
            "--adjudicated-only", action="store_true", help="only items with a gold label on some exported criterion"
        )
        parser.add_argument("--criterion", action="append", default=[], help="export this criterion only (repeatable)")
        parser.add_argument("--individual", action="store_true", help="add every label with annotator and note")
        parser.add_argument(
            "--since",
            type=_since,
            help="only labels and gold labels created at or after this instant (a date: its midnight, UTC); "
            "items with none are left out",
        )
        parser.add_argument(
            "--until",
            type=_until,
            help="only labels and gold labels created before this instant; a date alone includes that whole day "
            "(UTC). Dates: " + exports.BOUND_HELP.replace("%", "%%"),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.select_related("current_rubric").filter(slug=options["slug"]).first()
        if project is None:
            raise CommandError(f"No project with slug {options['slug']!r}.")
        export_options = exports.ExportOptions(
            fmt=options["fmt"],
            split=options["split"],
            min_labels=options["min_labels"],
            consensus_only=options["consensus_only"],
            adjudicated_only=options["adjudicated_only"],
            criteria=tuple(options["criterion"]),
            individual=options["individual"],
            since=options["since"],
            until=options["until"],
        )
        # Every read in one REPEATABLE READ snapshot: a label written meanwhile cannot tear the file from its manifest.
        with exports.snapshot():
            try:
                export = exports.export_prepare(project=project, options=export_options)
            except exports.ExportRefused as exc:
                # Options that do not fit are a usage error, as argparse's own are.
                raise CommandError(str(exc), returncode=2) from exc
            self._write(export, options["output"])

    def _write(self, export: exports.Export, path: str | None) -> None:
        if path and path != "-":
            # Written beside the target and renamed at the end: a failed export never leaves half a file.
            partial = Path(f"{path}.partial")
            try:
                with partial.open("w", encoding="utf-8", newline="") as f:
                    f.writelines(export.lines())
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            os.replace(partial, path)
            Path(f"{path}.manifest.json").write_text(json.dumps(export.manifest, indent=2) + "\n", encoding="utf-8")
            counts = export.manifest["counts"]
            self.stderr.write(f"Wrote {counts['rows']:,} rows to {path} (manifest: {path}.manifest.json).")
            return
        for line in export.lines():
            self.stdout.write(line, ending="")
        self.stderr.write(json.dumps(export.manifest, indent=2))


def _bound(text: str, *, end: bool) -> dt.datetime:
    try:
        return exports.parse_bound(text, end=end)
    except exports.ExportRefused as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _since(text: str) -> dt.datetime:
    return _bound(text, end=False)


def _until(text: str) -> dt.datetime:
    return _bound(text, end=True)
