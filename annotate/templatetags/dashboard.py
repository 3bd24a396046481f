"""Template helpers of the lead's dashboard and the drift page."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import NoReverseMatch, reverse

register = template.Library()


@register.simple_tag
def optional_url(name: str, *args: Any) -> str:
    """The URL of a named route, or "" when this installation has no such route yet.

    The dashboard links to pages other parts of the app provide (project settings, criteria, members): a link whose
    route is missing is left out instead of failing the whole page.
    """
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return ""


@register.filter
def figure(value: dict[str, Any] | None, digits: int = 2) -> str:
    """A stored figure (reports.figure_json) as "0.71 [0.64, 0.78]", or an en dash when it is not defined."""
    if not value or value.get("value") is None:
        return "–"
    text = f"{value['value']:.{digits}f}"
    if value.get("ci_low") is not None and value.get("ci_high") is not None:
        text += f" [{value['ci_low']:.{digits}f}, {value['ci_high']:.{digits}f}]"
    return text


@register.filter
def figure_n(value: dict[str, Any] | None) -> str:
    """The n a stored figure is computed on ("n=168": items with two or more labels for human agreement, compared
    items for a judge), or "" when the stored figure has none."""
    if not value or value.get("n") is None:
        return ""
    return f"n={value['n']:,}"


@register.filter
def figure_value(value: dict[str, Any] | None, digits: int = 2) -> str:
    """Only the value of a stored figure (its interval shown elsewhere), or an en dash."""
    if not value or value.get("value") is None:
        return "–"
    return f"{value['value']:.{digits}f}"


@register.filter
def signed(value: int) -> str:
    return f"+{value:,}" if value > 0 else f"{value:,}"
