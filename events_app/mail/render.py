"""Rendering email templates: `emails/<kind>/{subject.txt, body.txt, body.html}` through Jinja.

`render(kind, context)` returns (subject, text, html) with the HTML's CSS inlined by css-inline,
because many mail clients drop <style> blocks. The Jinja environment and the inliner are built
once per process. Templates write times with the filters `format_range` and `format_time` of
events_app/timefmt.py, the same functions the web pages use.

The templates live in the repository's top-level `emails/`, and inside the package
(`events_app/emails/`) in an installed wheel; `emails_dir()` finds either. The site's templates
are reachable too, under the prefix `site/`: an issue's body is styled by the one stylesheet
`templates/bulletin/_issue_body.css` on the archive page, in the staff preview and in the email.

Every email carries the organisation's identity (domain/identity.py, the Jinja global `org`):
the logo or name in its header, the name and website in its signature, the postal address in
bulk mail's footer. `brand()` gives the parts a template needs beyond `org` (the logo's absolute
address and its size); the worker calls `refresh()` once per claimed batch so that a change made
in the workspace reaches the next emails.
"""

from __future__ import annotations

import re
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path

import css_inline
import jinja2

from .. import db, settings
from ..domain import identity
from ..resources import resource_dir
from ..timefmt import format_range, format_time

# The logo in an email's header: at most this tall and wide (CSS pixels), its ratio kept.
LOGO_HEIGHT, LOGO_MAX_WIDTH = 48, 240
# The accent colour is used for buttons (white text on it) and links (on white and on the page's
# grey, #f3f4f6): one that would not reach WCAG AA's 4.5:1 there gives way to the default.
ACCENT_BACKGROUNDS = ("#ffffff", "#f3f4f6", "#f9fafb")
AA = 4.5
_HEX = re.compile(r"#[0-9a-fA-F]{6}")


def luminance(colour: str) -> float:
    """WCAG 2 relative luminance of `#rrggbb`."""

    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(one: str, other: str) -> float:
    """WCAG 2 contrast ratio of two `#rrggbb` colours (1 to 21)."""
    a, b = sorted((luminance(one), luminance(other)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def accent(colour: str | None) -> str:
    """The organisation's accent colour when it reads at AA on every background it meets, else
    the default (domain/identity.py DEFAULT_ACCENT)."""
    colour = (colour or "").strip()
    if _HEX.fullmatch(colour) and all(contrast(colour, bg) >= AA for bg in ACCENT_BACKGROUNDS):
        return colour.lower()
    return identity.DEFAULT_ACCENT


def sender_name(org: identity.Identity, mail_from: str) -> str:
    """The name emails are sent and signed by: the organisation's name once staff have stored
    the identity (or when EVENTS_MAIL_FROM has no display name), else EVENTS_MAIL_FROM's display
    name (the first default)."""
    configured = " ".join(parseaddr(mail_from)[0].split())
    return org.name if org.version or not configured else configured


def emails_dir() -> Path:
    """The email templates: inside the package when installed, else next to it in the repo."""
    return resource_dir("emails")


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The Jinja environment for email templates: HTML autoescaped, text not; a missing variable
    is an error (a silently empty link in a sent email cannot be taken back)."""
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [
                jinja2.FileSystemLoader(str(emails_dir())),
                jinja2.PrefixLoader({"site": jinja2.FileSystemLoader(str(resource_dir("templates")))}),
            ]
        ),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,  # an included block ends its own paragraph
    )
    env.filters["format_range"] = format_range
    env.filters["format_time"] = format_time
    from ..domain.identity import TemplateView

    env.globals["org"] = TemplateView()  # the organisation's identity (domain/identity.py)
    return env


@lru_cache(maxsize=1)
def inliner() -> css_inline.CSSInliner:
    # Never fetch remote stylesheets: rendering must not depend on the network.
    # keep_at_rules keeps @media (narrow screens) in a <style> block: they cannot be inlined.
    return css_inline.CSSInliner(load_remote_stylesheets=False, keep_at_rules=True)


_SPACES = re.compile(r"\s+")
_BLANK_RUNS = re.compile(r"\n{3,}")


# The stored logo's size by its URL (a /media/ picture's never changes: its name is its digest).
_logo_sizes: dict[str, tuple[int, int] | None] = {}


async def refresh() -> identity.Identity:
    """Read the organisation's identity again (once per claimed batch in the worker) and the size
    of its logo when it is a picture uploaded in the workspace."""
    fresh = getattr(identity, "fresh", None)  # domain/identity.py's cached read, where present
    org = await (fresh() if fresh is not None else identity.load())
    digest = _digest(org.logo_url)
    if digest is not None and org.logo_url not in _logo_sizes:
        rows = await db.fetch("SELECT width, height FROM image WHERE digest = {}", digest)
        _logo_sizes[org.logo_url] = (int(rows[0]["width"]), int(rows[0]["height"])) if rows else None
    return org


def _digest(url: str) -> str | None:
    match = re.fullmatch(r"/media/([0-9a-f]{64})\.[a-z]+", url or "")
    return match.group(1) if match else None


def brand(base_url: str | None = None) -> dict:
    """What the email layout needs of the identity beyond `org`: the logo's absolute address
    (`{base_url}/media/...` for an uploaded one; "" for none or an unusable one) with its width and
    height at LOGO_HEIGHT, and the website's host for the signature."""
    org = identity.snapshot()
    base = (base_url or settings.get().base_url).rstrip("/")
    logo = (org.logo_url or "").strip()
    if logo.startswith("/") and not logo.startswith("//"):
        logo = base + logo
    elif not logo.lower().startswith(("https://", "http://")):
        logo = ""
    width, height = LOGO_MAX_WIDTH // 2, LOGO_HEIGHT  # an outside logo's ratio is not known
    size = _logo_sizes.get(org.logo_url)
    if size and size[0] > 0 and size[1] > 0:
        width = round(size[0] * LOGO_HEIGHT / size[1])
        if width > LOGO_MAX_WIDTH:
            width, height = LOGO_MAX_WIDTH, max(1, round(size[1] * LOGO_MAX_WIDTH / size[0]))
    website = (org.website or "").strip()
    if not website.lower().startswith(("https://", "http://")):
        website = ""
    shown = re.sub(r"^https?://(www\.)?", "", website).rstrip("/")
    return {
        "name": sender_name(org, settings.get().mail_from),
        "accent": accent(org.accent_colour),
        "logo": logo,
        "logo_width": width,
        "logo_height": height,
        "logo_known": bool(size),
        "website": website,
        "website_shown": shown,
        "postal_lines": [line.strip() for line in (org.postal_address or "").splitlines() if line.strip()],
    }


def render(kind: str, context: dict) -> tuple[str, str, str]:
    """Render `emails/<kind>/` with `context`: (subject on one line, plain text, inlined HTML)."""
    env = environment()
    context = {"brand": brand(), **context}
    subject = _SPACES.sub(" ", env.get_template(f"{kind}/subject.txt").render(context)).strip()
    context = {**context, "subject": subject}  # the HTML <title>
    text = env.get_template(f"{kind}/body.txt").render(context)
    # Templates with optional blocks leave blank runs; one empty line between paragraphs reads best.
    text = _BLANK_RUNS.sub("\n\n", text).strip() + "\n"
    html = inliner().inline(env.get_template(f"{kind}/body.html").render(context))
    return subject, text, html
