from __future__ import annotations

import json
import time
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotate.models import Project
from judges import selectors
from judges.models import JudgeRun, JudgeVersion
from judges.services import judge_runs


class Command(BaseCommand):
    help = (
        "Start a run of a judge version (Celery workers do the calls). --split test is the explicit action that "
        "runs on the held-out split (--split all leaves it out unless --include-test); every run with test items is "
        "counted and shown. --wait prints the judge–human report as JSON."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project_slug")
        parser.add_argument("version_id", type=int, help="The judge version's id (see the version page's URL).")
        parser.add_argument("--split", choices=["dev", "test", "all"], default="dev")
        parser.add_argument(
            "--include-test",
            action="store_true",
            help="With --split all: include the held-out test split too (counted as a look at test).",
        )
        parser.add_argument("--wait", action="store_true", help="Wait for the run to end and print its report.")
        parser.add_argument("--timeout", type=float, default=None, help="Seconds to wait at most (with --wait).")

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(slug=options["project_slug"]).first()
        if project is None:
            raise CommandError(f"No project {options['project_slug']!r}.")
        version = JudgeVersion.objects.filter(judge__project=project, pk=options["version_id"]).first()
        if version is None:
            raise CommandError(f"Project {project.slug!r} has no judge version {options['version_id']}.")
        try:
            run = judge_runs.judge_run_start(
                version=version,
                scope=options["split"],
                confirm_test=options["split"] == "test" or options["include_test"],
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        if run.test_run_number:
            self.stderr.write(
                self.style.WARNING(
                    f"{run.n_test_items} item(s) of the held-out test split: this is test run #{run.test_run_number}."
                )
            )
        self.stderr.write(f"Run {run.pk} started: {run.n_calls} calls over {run.n_items} items ({run.scope}).")
        if not options["wait"]:
            self.stdout.write(str(run.pk))
            return
        deadline = None if options["timeout"] is None else time.monotonic() + options["timeout"]
        shown = -1
        while True:
            run.refresh_from_db()
            if not run.is_active:
                break
            done = selectors.run_totals(run=run).n_verdicts
            if done != shown:
                self.stderr.write(f"  {done}/{run.n_calls} verdicts")
                shown = done
            if deadline is not None and time.monotonic() > deadline:
                raise CommandError(f"Run {run.pk} is still {run.status} after {options['timeout']} s.")
            time.sleep(0.5)
        totals = selectors.run_totals(run=run)
        self.stdout.write(
            json.dumps(
                {
                    "run": run.pk,
                    "status": run.status,
                    "error": run.error,
                    "calls_made": totals.calls_made,
                    "cache_hits": totals.cache_hits,
                    "invalid": totals.n_invalid,
                    "failed_calls": totals.n_errors,
                    "tokens_in": totals.tokens_in,
                    "tokens_out": totals.tokens_out,
                    "cost_usd": None if totals.cost is None else f"{totals.cost:.6f}",
                    "report": run.report,
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        if run.status != JudgeRun.Status.DONE:
            raise CommandError(f"Run {run.pk} ended {run.status}.")
