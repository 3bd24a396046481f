from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotate import reports
from annotate.models import Project


class Command(BaseCommand):
    help = (
        "Print a project's agreement report for its current rubric version (human–human per criterion with 95% "
        "bootstrap intervals, consensus, annotators). Served from storage; computed first when labels changed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        parser.add_argument("--refresh", action="store_true", help="recompute even when nothing changed")

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.select_related("current_rubric").filter(slug=options["slug"]).first()
        if project is None:
            raise CommandError(f"No project with slug {options['slug']!r}.")
        report = reports.report_refresh(project=project, force=options["refresh"])
        if report is None:
            raise CommandError("The project has no rubric yet, so there is nothing to report.")
        data = reports.report_with_judges(report)
        if options["json"]:
            self.stdout.write(json.dumps(data, indent=2, ensure_ascii=False))
            return
        self.stdout.write(f"{project.slug}, rubric v{data['rubric_version']}, computed {data['computed_at']}")
        for key, section in data["criteria"].items():
            human = section["human"]
            self.stdout.write(
                f"  {key}: {human['n_items']} items, {human['n_labels']} labels, {human['n_annotators']} annotators"
            )
            for name in ("percent_agreement", "fleiss_kappa", "krippendorff_alpha"):
                # α leads where items have different numbers of labels (reports.human_report).
                lead = "  (headline)" if name == "krippendorff_alpha" and human.get("headline") == name else ""
                self.stdout.write(f"    {name:<20} {reports.figure_text(human[name])}{lead}")
