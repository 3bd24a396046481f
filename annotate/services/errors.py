"""What a labeling action refuses with: QueueError (message for the annotator, status for HTTP)."""

from __future__ import annotations


class QueueError(Exception):
    """A labeling action that cannot be done; `message` is for the annotator, `status` for HTTP."""

    status = 409

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class ItemNotNeeded(QueueError):
    status = 410
