"""Formatting of stored numbers for the judges pages (the numbers themselves come from judges.agreement)."""

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
