from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotate import selectors
from annotate.services.projects import project_apply_spec
from annotate.specs import SpecError, spec_load


class Command(BaseCommand):
    help = (
        "Create or update a project from a JSON or YAML spec: {slug, name, kind, instructions, overlap, allow_tie, "
        "criteria: [{key, name, description}], members: [{username, role}]}. Re-running with changed criteria makes "
        "a new rubric version. A bad spec writes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="the spec, .json or .yaml/.yml")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            spec = spec_load(options["file"])
            project, created, rubric_changed = project_apply_spec(spec=spec)
        except SpecError as exc:
            raise CommandError("The spec was refused; nothing was written:\n  " + "\n  ".join(exc.errors)) from None
        rubric = selectors.rubric_current(project=project)
        version = rubric.number if rubric else 0
        if created:
            self.stdout.write(self.style.SUCCESS(f"Created project {project.slug} (rubric v{version})."))
        elif rubric_changed:
            self.stdout.write(
                self.style.SUCCESS(f"Updated project {project.slug}; criteria changed: rubric v{version}.")
            )
        else:
            self.stdout.write(f"Updated project {project.slug}; criteria unchanged (rubric v{version}).")
