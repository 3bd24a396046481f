"""An item or label file imported as a whole: what the command, the browser job and the API share."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from annotate.imports.items import items_import
from annotate.imports.labels import labels_import
from annotate.imports.parsing import SNIFF_BYTES, content_problem, format_detect, rows_read
from annotate.imports.report import ImportRefused, ImportReport, Progress
from annotate.models import ImportJob, Project


def file_import(
    *,
    project: Project,
    kind: str,
    path: Path,
    fmt: str | None = None,
    update: bool = False,
    apply: bool = True,
    progress: Progress | None = None,
) -> ImportReport:
    """Import an item or label file (what the command, the browser job and the API share). See items_import."""
    size = path.stat().st_size
    limit = int(settings.IMPORT_MAX_FILE_BYTES)
    if size > limit:
        raise ImportRefused(f"The file is too large: {size:,} bytes (at most {limit:,}).", status=413)
    with path.open("rb") as stream:
        head = stream.read(SNIFF_BYTES)
        if problem := content_problem(head):
            raise ImportRefused(problem, status=415)
        fmt = fmt or format_detect(path.name, head)
        stream.seek(0)
        rows = rows_read(stream, fmt=fmt)

        def position() -> float:
            return stream.tell() / size if size else 1.0

        if kind == ImportJob.Kind.ITEMS:
            return items_import(
                project=project,
                rows=rows,
                tabular=fmt == "csv",
                update=update,
                apply=apply,
                progress=progress,
                position=position,
            )
        return labels_import(
            project=project,
            rows=rows,
            tabular=fmt == "csv",
            update=update,
            apply=apply,
            progress=progress,
            position=position,
        )
