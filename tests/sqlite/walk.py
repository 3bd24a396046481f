"""Run by tests/sqlite/test_embedded_default.py in a child process with neither DATABASE_URL nor REDIS_URL: the
embedded default (SQLite, file-system cache and broker). Loads the demo, runs a judge against the stand-in over
HTTP, then asks for every page a lead and an annotator use and prints one JSON line per page."""

from __future__ import annotations

import json
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotate.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import reverse  # noqa: E402

from annotate import tasks, throughput  # noqa: E402
from annotate.demo import demo_load  # noqa: E402
from annotate.models import Membership, Project  # noqa: E402
from judges import prompts  # noqa: E402
from judges.models import JudgeRun, RunChunk  # noqa: E402
from judges.services import judge_runs, judge_versions, run_chunks  # noqa: E402
from judges.standin import Config, serve  # noqa: E402


def main() -> None:
    assert settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"), settings.DATABASES["default"]["ENGINE"]
    call_command("migrate", verbosity=0)
    demo_load()
    server = serve(Config(latency_ms=0))
    settings.JUDGE_STANDIN_PORT = server.port
    settings.ALLOWED_HOSTS = ["*"]
    throughput.throughput_counts_refresh()
    tasks.agreement_reports_refresh()
    pages: list[tuple[str, str]] = []
    for project in Project.objects.order_by("slug"):
        lead = Membership.objects.filter(project=project, role="lead").select_related("user").first()
        assert lead is not None
        judge = judge_versions.judge_create(project=project, criterion_key=project.current_rubric.criteria.first().key)
        versions = []
        for note in ("", "second"):
            version = judge_versions.judge_version_create(
                judge=judge,
                system_template=prompts.DEFAULT_SYSTEM[project.kind] + (" Be strict." if note else ""),
                user_template=prompts.DEFAULT_USER[project.kind],
                endpoint="standin",
                model="standin-judge-2025-01-01",
                change_note=note,
                parent=versions[-1] if versions else None,
            )
            run = judge_runs.judge_run_start(version=version)
            for chunk in RunChunk.objects.filter(run=run):
                run_chunks.judge_chunk_process(chunk_id=chunk.pk)
            run.refresh_from_db()
            assert run.status == JudgeRun.Status.DONE, (run.status, run.error)
            versions.append(version)
        runs = [v.runs.get() for v in versions]
        slug = project.slug
        pages += [
            ("lead", reverse("project_detail", args=[slug])),
            ("lead", reverse("rubric_timeline", args=[slug])),
            ("lead", reverse("agreement_page", args=[slug])),
            ("lead", reverse("export_page", args=[slug])),
            ("lead", reverse("export_download", args=[slug]) + "?format=jsonl"),
            ("lead", reverse("project_settings", args=[slug])),
            ("lead", reverse("project_criteria", args=[slug])),
            ("lead", reverse("project_members", args=[slug])),
            ("lead", reverse("judges:judge_list", args=[slug])),
            ("lead", reverse("judges:judge_detail", args=[slug, judge.pk])),
            ("lead", reverse("judges:version_detail", args=[slug, versions[1].pk])),
            ("lead", reverse("judges:run_detail", args=[slug, runs[1].pk])),
            ("lead", reverse("judges:compare", args=[slug]) + f"?a={runs[0].pk}&b={runs[1].pk}"),
            ("lead", reverse("judges:version_card", args=[slug, versions[1].pk])),
            ("lead", reverse("failure_modes", args=[slug])),
            ("lead", reverse("failure_counts", args=[slug])),
            ("lead", reverse("review_notes", args=[slug])),
            ("annotator1", reverse("project_detail", args=[slug])),
            ("annotator1", reverse("label_queue", args=[slug])),
            ("annotator1", reverse("review_page", args=[slug])),
        ]
    clients = {}
    for username in ("lead", "annotator1"):
        client = Client()
        client.force_login(django.contrib.auth.get_user_model().objects.get(username=username))
        clients[username] = client
    for who, url in pages:
        response = clients[who].get(url)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        print(json.dumps({"who": who, "url": url, "status": response.status_code, "bytes": len(body)}), flush=True)
    server.shutdown()


if __name__ == "__main__":
    main()
    sys.exit(0)
