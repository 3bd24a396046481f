"""Cached model answers (CachedCompletion), shared by judge runs and the daily monitor (judges.monitor)."""

from __future__ import annotations

from collections.abc import Sequence

from judges import llm
from judges.models import CachedCompletion


def completion_of(row: CachedCompletion) -> llm.Completion:
    """A cached answer as a completion (no attempt, no latency: nothing was called)."""
    return llm.Completion(
        content=row.content,
        tokens_in=row.tokens_in,
        tokens_out=row.tokens_out,
        finish_reason=row.finish_reason,
        attempts=0,
        latency_ms=0,
    )


def cache_row(*, key: str, endpoint: llm.Endpoint, model: str, completion: llm.Completion) -> CachedCompletion:
    """The cache row for one answer (store with bulk_create(ignore_conflicts=True): the first answer stays)."""
    return CachedCompletion(
        key=key,
        endpoint=endpoint.name,
        model=model,
        content=completion.content,
        tokens_in=completion.tokens_in,
        tokens_out=completion.tokens_out,
        finish_reason=completion.finish_reason[:32],
    )


def cached_answers(keys: Sequence[str]) -> dict[str, CachedCompletion]:
    """The cached answers among these keys, by key."""
    wanted = list(dict.fromkeys(keys))
    found: dict[str, CachedCompletion] = {}
    for start in range(0, len(wanted), 2000):
        found.update((c.key, c) for c in CachedCompletion.objects.filter(key__in=wanted[start : start + 2000]))
    return found
