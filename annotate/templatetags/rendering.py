"""Safe rendering of user and model text: Markdown through markdown-it with raw HTML off, then nh3 sanitizing."""

from __future__ import annotations

import nh3
from django import template
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

register = template.Library()

# html=False: any HTML in the source is shown as text. linkify stays off: no URL in item text becomes a link target.
_md = MarkdownIt("commonmark", {"html": False}).enable("table")
_ALLOWED_TAGS = {
    "p", "br", "hr", "em", "strong", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "a",
}  # fmt: skip
_ALLOWED_ATTRIBUTES: dict[str, set[str]] = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}


def render_markdown(text: str) -> str:
    html = _md.render(text or "")
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )


@register.filter(name="markdown")
def markdown_filter(text: str) -> SafeString:
    """Markdown to sanitized HTML. Script, event handlers and javascript: URLs never survive."""
    return mark_safe(render_markdown(text))  # noqa: S308 - the output of nh3.clean with an allowlist
