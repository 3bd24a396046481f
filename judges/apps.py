from __future__ import annotations

from django.apps import AppConfig


class JudgesConfig(AppConfig):
    name = "judges"
    verbose_name = "LLM judges"

    def ready(self) -> None:
        # annotate's pages show judge sections through this provider: annotate never imports judges.
        from annotate.extensions import register_judges
        from judges.extension import JudgesOnAnnotate

        register_judges(JudgesOnAnnotate())
