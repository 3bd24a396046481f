"""Downloads built in a child process, so that a large export does not slow the annotators' requests.

An export builds its lines in Python: for half a million items that is a minute of one core. Run in a web process's
thread, it would hold that process's GIL, and every request the process serves meanwhile would wait for it (the load
run in docs/load.md measured a p99 of 0.5 to 0.7 s for the submits served beside an export). So a download is built in
a child process, at a lower CPU priority (settings.EXPORT_NICE), and the web thread only relays its bytes, which does
not hold the GIL while it waits.

The children are forked by a multiprocessing forkserver that each web process starts once (`warm`, from
annotate/wsgi.py) with Django and the export code already imported: a fresh Python with Django takes seconds to start,
a fork takes milliseconds, so the first bytes still leave at once. The child opens its own database connection with
the parent's settings and runs exports.export_stream, snapshot and all: the bytes are the same as in-process.

In-process, as before, where a child cannot see what the export must see or cannot be had: inside a transaction (the
caller's uncommitted rows, e.g. a test's), on SQLite (the demo), or with EXPORT_IN_CHILD=false.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from django.conf import settings
from django.db import connection

from annotate import exports
from annotate.models import Project

logger = logging.getLogger(__name__)

# What the forkserver imports once, before it forks any child: Django set up, the export code loaded.
PRELOAD = "annotate.export_preload"
_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload([PRELOAD])
# A chunk is never empty: an empty message ends the stream (a child that dies ends it without one).
_END = b""


@dataclass(frozen=True)
class Prepared:
    """What a download needs before its body: the manifest (counts included) and the file name."""

    manifest: dict[str, Any]
    filename: str


class ExportFailed(RuntimeError):
    """The child ended without finishing the export (it crashed or was killed); the download is cut short."""


def enabled() -> bool:
    return bool(settings.EXPORT_IN_CHILD) and connection.vendor == "postgresql" and not connection.in_atomic_block


def warm() -> None:
    """Start this process's forkserver and wait until it forks (annotate/wsgi.py calls this as a web process starts),
    so that no download waits the seconds the forkserver takes to import Django. A failure is logged: downloads then
    try again, and are built in-process if no child can be started."""
    if not enabled():
        return
    try:
        probe = _context.Process(target=_ready, name="forkserver-probe", daemon=True)
        probe.start()
        probe.join(timeout=120)
    except Exception:
        logger.exception("could not start the export forkserver")


def _ready() -> None:
    """A child that does nothing: it exists once the forkserver has imported everything and forks."""


def stream(*, project: Project, options: exports.ExportOptions) -> tuple[Prepared, Iterator[bytes]]:
    """The download's manifest and file name, and its bytes: from a child process when `enabled()`, else built here.

    Raises exports.ExportRefused, with the same message as in-process, before anything is streamed.
    """
    if not enabled():
        return _inline(project, options)
    reader, writer = _context.Pipe(duplex=False)
    child = _context.Process(
        target=_child,
        args=(writer, dict(connection.settings_dict), project.pk, options, settings.EXPORT_NICE),
        name=f"export-{project.slug}",
        daemon=True,
    )
    try:
        child.start()
    except OSError:
        logger.exception("could not start an export process; building the export in the web process")
        reader.close()
        writer.close()
        return _inline(project, options)
    writer.close()  # the child holds the only writing end: its exit ends the stream
    try:
        first = reader.recv()
    except EOFError:
        _stop(child, reader)
        raise ExportFailed("The export could not be started. Try again in a moment.") from None
    except BaseException:
        _stop(child, reader)
        raise
    if first[0] == "refused":
        _stop(child, reader)
        raise exports.ExportRefused(first[1])
    _kind, manifest, filename = first
    return Prepared(manifest, filename), _relay(child, reader)


def _inline(project: Project, options: exports.ExportOptions) -> tuple[Prepared, Iterator[bytes]]:
    export, body = exports.export_stream(project=project, options=options)
    return Prepared(export.manifest, exports.filename(export)), body


def _relay(child: multiprocessing.process.BaseProcess, reader: Connection) -> Iterator[bytes]:
    """The child's chunks as they come. Closed early (the client went away), it stops the child."""
    try:
        while True:
            try:
                chunk = reader.recv_bytes()
            except (EOFError, OSError):  # OSError: it died in the middle of a chunk
                # No end marker: the child died (its traceback is in its log). Raising cuts the response short, so
                # that the client sees an incomplete download rather than a complete-looking partial file.
                raise ExportFailed(f"the export process ended early (exit code {child.exitcode})") from None
            if chunk == _END:
                return
            yield chunk
    finally:
        _stop(child, reader)


def _stop(child: multiprocessing.process.BaseProcess, reader: Connection) -> None:
    reader.close()
    child.join(timeout=5)  # a child that has sent everything exits at once
    if child.is_alive():
        child.kill()
        child.join(timeout=5)


def _child(
    writer: Connection, database: dict[str, Any], project_id: int, options: exports.ExportOptions, nice: int
) -> None:
    """In the child: build the export with the parent's database settings and send it, chunk by chunk."""
    from django.db import connections

    if nice > 0:
        os.nice(nice)
    connections["default"].settings_dict.update(database)
    try:
        project = Project.objects.get(pk=project_id)
        try:
            export, body = exports.export_stream(project=project, options=options)
        except exports.ExportRefused as exc:
            writer.send(("refused", str(exc)))
            return
        writer.send(("manifest", export.manifest, exports.filename(export)))
        for chunk in body:
            writer.send_bytes(chunk)
        writer.send_bytes(_END)
    except BrokenPipeError:
        pass  # the download was abandoned: nobody reads any more
    finally:
        writer.close()
        connections.close_all()
