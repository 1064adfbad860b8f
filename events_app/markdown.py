"""Markdown to safe HTML and to plain text: markdown-it-py renders, nh3 (ammonia) keeps only
harmless markup, and links are made absolute for wherever the text goes outside the site.

On the site's own pages a relative link (`/events/x`, `../bulletin/y`, `images/a.png`) works: the
browser resolves it against the page. In an email or a feed reader there is no page, so every
renderer for those takes `page_url`, the address of the item's own web page (an issue's archive
page, an event's page), and each link and image is resolved against it exactly as a browser on
that page would (RFC 3986): `/events/x` becomes `{base}/events/x`, `images/a.png` becomes
`{base}/bulletin/images/a.png` for an issue, `//host/x` takes the page's scheme. Fragment-only
links (`#x`), `mailto:` and `tel:` stay as written; any other scheme (javascript:, data:, ftp:,
...) never reaches the output, and a result that is still not a usable http(s) address (no host)
loses its link, keeping its words.

Headings are renumbered to sit under the page's or email's own `<h1>` (the item's title): the
text's highest level becomes `<h2>` and the levels it uses follow without gaps (`#` and `###`
become h2 and h3), so every outline has one h1 and skips no level (WCAG 1.3.1, axe's
heading-order).
"""

from __future__ import annotations

import re
import textwrap
from functools import lru_cache
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import nh3
from markdown_it import MarkdownIt

# Raw HTML in the source is shown as text, not passed through; nh3 then cleans what is left.
_md = MarkdownIt("commonmark", {"html": False, "typographer": True}).enable("table")

_TAGS = {
    "a",
    "abbr",
    "b",
    "blockquote",
    "br",
    "code",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "img",
    "li",
    "ol",
    "p",
    "pre",
    "strong",
    "table",
    "tbody",
    "td",
    "th",
    "thead",
    "tr",
    "ul",
}
_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "abbr": {"title"}}
_SCHEMES = {"http", "https", "mailto", "tel"}
_KEPT = ("mailto:", "tel:", "#")


def absolute(url: str, page_url: str) -> str | None:
    """`url` as written on the page at `page_url`, resolved to an address that works anywhere:
    http(s) with a host, or kept as is when fragment-only, mailto: or tel:. None when it cannot
    be one (another scheme, or no host even after resolving)."""
    url = url.strip()
    if url.lower().startswith(_KEPT):
        return url
    resolved = urljoin(page_url, url)
    parts = urlsplit(resolved)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in resolved):
        return None
    return resolved


@lru_cache(maxsize=512)
def to_html(text: str, page_url: str | None = None) -> str:
    """Render Markdown and sanitise the result; links get rel=noopener noreferrer. With
    `page_url` (email, feed), every href and src is absolute (see the module doc); without it
    (the site's own pages) links stay as written."""
    attribute_filter = None
    if page_url:

        def attribute_filter(element: str, attribute: str, value: str) -> str | None:
            # nh3 calls this after its scheme check, for attributes it keeps.
            return absolute(value, page_url) if attribute in ("href", "src") else value

    return _outline(
        nh3.clean(
            _md.render(text or ""),
            tags=_TAGS,
            attributes=_ATTRIBUTES,
            url_schemes=_SCHEMES,
            link_rel="noopener noreferrer",
            attribute_filter=attribute_filter,
        )
    )


_HEADING = re.compile(r"<(/?)h([1-6])>")


def _outline(html: str) -> str:
    """The headings of sanitised HTML (nh3 leaves them bare: `<h3>`) renumbered from h2, the
    levels in use kept in order and made consecutive."""
    levels = sorted({int(level) for level in re.findall(r"<h([1-6])>", html)})
    if not levels:
        return html
    new = {level: min(2 + n, 6) for n, level in enumerate(levels)}
    return _HEADING.sub(lambda m: f"<{m.group(1)}h{new[int(m.group(2))]}>", html)


@lru_cache(maxsize=512)
def to_text(text: str, page_url: str) -> str:
    """The Markdown as plain text for the text part of an email: the same sanitised, absolute
    links as `to_html(text, page_url)`, each written `words <https://...>` (an image
    `[image: alt] <https://...>`), headings underlined, list items bulleted, paragraphs apart."""
    writer = _TextWriter()
    writer.feed(to_html(text, page_url))
    writer.close()
    return writer.result()


_BLOCKS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "blockquote", "pre", "table", "hr"}
_WIDTH = 76


def _wrap(block: str, indent: str = "") -> str:
    """Lines of at most _WIDTH characters where words allow (a long address stays whole)."""
    out = []
    for line in block.split("\n"):
        bullet = re.match(r"^(\s*(?:- |\d+\. ))", line)
        rest = " " * len(bullet.group(1)) if bullet else ""
        out.append(
            textwrap.fill(
                line, _WIDTH - len(indent), subsequent_indent=rest, break_long_words=False, break_on_hyphens=False
            )
            if line.strip()
            else ""
        )
    return "\n".join(out)


class _TextWriter(HTMLParser):
    """Plain text from the sanitised HTML `to_html` makes (a small, known set of tags). A
    blockquote or code block is written into its own buffer, then quoted or indented whole."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.buffers: list[tuple[str, list[str]]] = [("", [])]  # (kind, pieces)
        self.links: list[str | None] = []  # href of each open <a>
        self.lists: list[list[int]] = []  # per open list: [next number] for ol, [] for ul
        self.heading: int | None = None  # where the heading's text starts in the buffer
        self.cells = 0

    @property
    def out(self) -> list[str]:
        return self.buffers[-1][1]

    def _newline(self, blank: bool = False) -> None:
        text = "".join(self.out[-3:])
        if not self.out or text.endswith("\n\n"):
            return
        if text.endswith("\n"):
            if blank:
                self.out.append("\n")
        else:
            self.out.append("\n\n" if blank else "\n")

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attr = dict(attrs)
        if tag in _BLOCKS:
            self._newline(blank=not self.lists)
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self.heading = len(self.out)
        elif tag in ("ul", "ol"):
            self.lists.append([1] if tag == "ol" else [])
        elif tag == "li":
            self._newline()
            indent = "  " * (len(self.lists) - 1)
            numbers = self.lists[-1] if self.lists else []
            if numbers:
                self.out.append(f"{indent}{numbers[0]}. ")
                numbers[0] += 1
            else:
                self.out.append(f"{indent}- ")
        elif tag in ("blockquote", "pre"):
            self.buffers.append((tag, []))
        elif tag == "br":
            self.out.append("\n")
        elif tag == "hr":
            self.out.append("----")
        elif tag == "tr":
            self._newline()
            self.cells = 0
        elif tag in ("td", "th"):
            if self.cells:
                self.out.append(" | ")
            self.cells += 1
        elif tag == "a":
            self.links.append(attr.get("href"))
        elif tag == "img":
            alt = (attr.get("alt") or "").strip()
            label = f"[image: {alt}]" if alt else "[image]"
            src = attr.get("src")
            self.out.append(f"{label} <{src}>" if src else label)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6") and self.heading is not None:
            words = "".join(self.out[self.heading :]).strip()
            self.out.append("\n" + ("=" if tag == "h2" else "-") * min(len(words), _WIDTH))
            self.heading = None
        elif tag in ("ul", "ol") and self.lists:
            self.lists.pop()
        elif tag in ("blockquote", "pre") and len(self.buffers) > 1:
            kind, pieces = self.buffers.pop()
            inner = "".join(pieces)
            if kind == "blockquote":
                inner = inner.strip()
                inner = "\n".join(("> " + line).rstrip() for line in _wrap(_tidy(inner), "> ").split("\n"))
            else:
                inner = "\n".join(("    " + line).rstrip() for line in inner.split("\n"))
            self.out.append("\0" + inner.replace("\n", "\n\0"))  # \0: a line not to wrap again
        elif tag == "a" and self.links:
            href = self.links.pop()
            if href and not href.startswith("#"):
                self.out.append(f" <{href}>")
        if tag in _BLOCKS:
            self._newline(blank=True)

    def handle_data(self, data: str) -> None:
        if self.buffers[-1][0] != "pre":
            data = re.sub(r"\s+", " ", data)
        self.out.append(data)

    def result(self) -> str:
        text = _tidy("".join(self.out))
        lines = []
        for block in text.split("\n"):
            lines.append(block[1:] if block.startswith("\0") else _wrap(block))
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _tidy(text: str) -> str:
    """Trailing spaces and runs of spaces gone (not in code: lines marked \\0), list items
    together, a link written once when its words are its address."""
    lines = []
    for line in text.split("\n"):
        if line.startswith("\0"):
            lines.append(line.rstrip())
        else:
            lines.append(
                re.sub(r"(?<=\S)  +", " ", line if re.match(r"^\s*(- |\d+\. )", line) else line.strip(" ")).rstrip()
            )
    text = "\n".join(lines)
    # Items of one list stay together, a nested list included.
    text = re.sub(r"(?m)^(\s*(?:- |\d+\. ).*)\n\n(?=\s*(?:- |\d+\. ))", r"\1\n", text)
    # A link whose words are its own address ("https://x <https://x>") is written once.
    return re.sub(r"(?<!\S)(\S+) <\1>", r"<\1>", text)
