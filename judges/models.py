"""Judge prompts, versions, runs and verdicts arrive with the judges issue; this app holds them."""

from __future__ import annotations
