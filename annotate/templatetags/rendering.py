"""Safe rendering of user and model text: Markdown through markdown-it with raw HTML off, then nh3 sanitizing."""

from __future__ import annotations

import json
import re

import nh3
from django import template
from django.utils.html import format_html_join
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

from annotate.models import shown_username

register = template.Library()

# html=False: any HTML in the source is shown as text. linkify stays off: no URL in item text becomes a link target.
_md = MarkdownIt("commonmark", {"html": False}).enable("table")
_ALLOWED_TAGS = {
    "p", "br", "hr", "em", "strong", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "a",
}  # fmt: skip
_ALLOWED_ATTRIBUTES: dict[str, set[str]] = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}


# Explicit bidirectional embeddings, overrides and isolates (LRE RLE PDF LRO RLO, LRI RLI FSI PDI): in item text they
# can make what an annotator reads differ from what is stored ("Trojan Source"), and reorder the page around the
# text. They are shown as visible marks instead of being obeyed. Plain text, never markup: it may land in an
# attribute (a link's title) after rendering. The marks (LRM, RLM, ALM) are harmless and stay.
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def show_bidi_controls(text: str) -> str:
    """`text` with every explicit bidirectional control replaced by a visible mark such as ⟦U+202E⟧."""
    return _BIDI_CONTROLS.sub(lambda m: f"\u27e6U+{ord(m.group()):04X}\u27e7", text)


@register.filter(name="annotator_name")
def annotator_name_filter(user: object) -> str:
    """An account as people see it: a label import's identity under its readable name, anyone else's username."""
    get_username = getattr(user, "get_username", None)
    return shown_username(get_username() if callable(get_username) else str(user or ""))


@register.filter(name="bidi_visible")
def bidi_visible_filter(text: object) -> str:
    """For item text shown as plain text (tables, previews): its bidi controls as visible marks. Escaped as usual."""
    return show_bidi_controls(str(text or ""))


def render_markdown(text: str) -> str:
    html = _md.render(show_bidi_controls(text or ""))
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


def as_transcript(text: str) -> list[tuple[str, str]] | None:
    """A chat transcript, when the text is a JSON list of {"role", "content"} messages; otherwise None."""
    stripped = (text or "").lstrip()
    if not stripped.startswith("["):
        return None
    try:
        data = json.loads(stripped)
    except ValueError:
        return None
    if not isinstance(data, list) or not data:
        return None
    messages = []
    for message in data:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            return None
        content = message.get("content")
        if not isinstance(content, str):
            return None
        messages.append((message["role"], content))
    return messages


@register.filter(name="render_text")
def render_text_filter(text: str) -> SafeString:
    """Item text for people: a chat transcript as messages, anything else as sanitized Markdown."""
    transcript = as_transcript(text)
    if transcript is None:
        return mark_safe(f'<div class="prose">{render_markdown(text)}</div>')  # noqa: S308 - sanitized above
    return format_html_join(
        "",
        '<div class="msg msg-{}"><div class="msg-role">{}</div><div class="prose">{}</div></div>',
        ((_role_class(role), role, mark_safe(render_markdown(content))) for role, content in transcript),  # noqa: S308
    )


def _role_class(role: str) -> str:
    return role if role in {"system", "user", "assistant", "tool"} else "other"


@register.filter(name="get_item")
def get_item(mapping: object, key: str) -> object:
    """mapping[key] in a template, or "" when there is no such key (or no mapping)."""
    if isinstance(mapping, dict):
        return mapping.get(key, "")
    getter = getattr(mapping, "get", None)
    return getter(key, "") if callable(getter) else ""
