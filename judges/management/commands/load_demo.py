from __future__ import annotations

import time

from django.core.management.base import BaseCommand

from annotate.demo import demo_load
from judges.demo import llmbar_judges_load


class Command(BaseCommand):
    help = (
        "Load the demo projects (the bundled Tülu 1 sample and LLMBar), the recorded LLMBar judges with their runs, "
        "and (re)set the demo users. Idempotent. In the judges app, which may use annotate (never the reverse)."
    )

    def handle(self, *args: object, **options: object) -> None:
        started = time.monotonic()
        result = demo_load()
        judges = llmbar_judges_load()
        self.stdout.write(
            f"Demo loaded: {result.items_created} new items, {result.labels_created} new labels in "
            + ", ".join(p.slug for p in result.projects)
            + f"; {judges.versions_created} recorded judge versions and {judges.runs_created} runs on LLMBar "
            + f"({time.monotonic() - started:.1f} s)"
        )
        self.stdout.write("Demo users (username / password / role):")
        for username, password, role in result.credentials:
            self.stdout.write(f"  {username:<12} {password:<16} {role}")
