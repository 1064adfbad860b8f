"""Markdown to safe HTML: markdown-it-py renders, nh3 (ammonia) keeps only harmless markup."""

from __future__ import annotations

from functools import lru_cache

import nh3
from markdown_it import MarkdownIt

# Raw HTML in the source is shown as text, not passed through; nh3 then cleans what is left.
_md = MarkdownIt("commonmark", {"html": False, "typographer": True}).enable("table")

_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "em", "h1", "h2", "h3", "h4", "hr", "i", "img", "li",
    "ol", "p", "pre", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
}
_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "abbr": {"title"}}


@lru_cache(maxsize=512)
def to_html(text: str) -> str:
    """Render Markdown and sanitise the result; links get rel=noopener noreferrer."""
    return nh3.clean(
        _md.render(text or ""),
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    )
