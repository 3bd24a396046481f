from __future__ import annotations

from django.core.management.base import BaseCommand

from annotate.demo import demo_load


class Command(BaseCommand):
    help = "Load the demo projects from the bundled Tülu 1 sample and (re)set the demo users. Idempotent."

    def handle(self, *args: object, **options: object) -> None:
        result = demo_load()
        self.stdout.write(
            f"Demo loaded: {result.items_created} new items, {result.labels_created} new labels in "
            + ", ".join(p.slug for p in result.projects)
        )
        self.stdout.write("Demo users (username / password / role):")
        for username, password, role in result.credentials:
            self.stdout.write(f"  {username:<12} {password:<16} {role}")
