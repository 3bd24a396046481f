"""Formatting of stored numbers for the judges pages (the numbers themselves come from annotate.stats.agreement)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()


@register.simple_tag
def figure(data: dict[str, Any] | None, percent: bool = True) -> SafeString:
    """A stored Figure: its value with the 95% interval and n, or the reason it is not defined."""
    if not data:
        return format_html('<span class="muted">not computed</span>')
    if data.get("value") is None:
        return format_html('<span class="muted">{} (n = {})</span>', data.get("reason") or "not defined", data.get("n"))

    def fmt(x: float) -> str:
        return f"{100 * x:.1f}%" if percent else f"{x:.2f}"

    if data.get("ci_low") is None:
        return format_html(
            '<strong>{}</strong> <span class="muted">(n = {}, no interval)</span>', fmt(data["value"]), data["n"]
        )
    return format_html(
        '<strong>{}</strong> <span class="muted">(95% CI {}–{}, n = {})</span>',
        fmt(data["value"]),
        fmt(data["ci_low"]),
        fmt(data["ci_high"]),
        data["n"],
    )


@register.filter
def usd(value: Decimal | str | None, standin: bool = False) -> str:
    """A cost in dollars, or a dash when unknown (the model has no price in JUDGE_PRICES). With `standin` (the
    version is served by the offline stand-in): "$0 (stand-in)", on one line."""
    if standin:
        return format_html('<span class="nowrap">{}</span>', "$0 (stand-in)")
    if value is None or value == "":
        return "—"
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return "—"
    return f"${amount:,.4f}" if amount < 1 else f"${amount:,.2f}"


@register.filter
def get(mapping: dict[Any, Any] | None, key: Any) -> Any:
    return (mapping or {}).get(key)


@register.simple_tag
def estimate(found: Any, points: bool = False) -> SafeString:
    """A judges.estimates.Estimate (or an agreement.Figure): value, 95% interval and the counts it rests on, or the
    reason it cannot be given. `points` formats a difference in percentage points."""
    if found is None:
        return format_html('<span class="muted">not computed</span>')
    value = found.value
    low = getattr(found, "low", getattr(found, "ci_low", None))
    high = getattr(found, "high", getattr(found, "ci_high", None))
    if value is None:
        return format_html('<span class="muted">{}</span>', found.reason)

    def fmt(x: float) -> str:
        return f"{100 * x:+.1f} points" if points else f"{100 * x:.1f}%"

    if low is None or high is None:
        return format_html('<strong>{}</strong> <span class="muted">(no interval)</span>', fmt(value))
    return format_html(
        '<strong>{}</strong> <span class="muted">(95% CI {} to {})</span>',
        fmt(value),
        fmt(low),
        fmt(high),
    )


@register.filter
def pct_points(value: float) -> str:
    """The size of an effect in percentage points, without its sign (the sentence says more or less)."""
    return f"{100 * abs(value):.1f} points"
