from __future__ import annotations

from annotate.management.commands._import import ImportCommand
from annotate.models import ImportJob


class Command(ImportCommand):
    help = (
        "Import existing human labels from JSON Lines or CSV: external_id, annotator, criterion, value "
        "(pass/fail or a/b/tie), optional note and created_at. Unknown annotator names become inactive imported "
        "users. All or nothing; importing the same file again changes nothing."
    )
    kind = ImportJob.Kind.LABELS
