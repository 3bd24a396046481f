from __future__ import annotations

from annotate.management.commands._import import ImportCommand
from annotate.models import ImportJob


class Command(ImportCommand):
    help = (
        "Import items from JSON Lines or CSV: input and output (binary) or input, output_a, output_b (pairwise), "
        "optional external_id, split, metadata. All or nothing; importing the same file again changes nothing."
    )
    kind = ImportJob.Kind.ITEMS
