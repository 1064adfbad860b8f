"""Rendering email templates: `emails/<kind>/{subject.txt, body.txt, body.html}` through Jinja.

`render(kind, context)` returns (subject, text, html) with the HTML's CSS inlined by css-inline,
because many mail clients drop <style> blocks. The Jinja environment and the inliner are built
once per process. Templates write times with the filters `format_range` and `format_time` of
events_app/timefmt.py, the same functions the web pages use.

The templates live in the repository's top-level `emails/`, and inside the package
(`events_app/emails/`) in an installed wheel; `emails_dir()` finds either.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import css_inline
import jinja2

from ..resources import resource_dir
from ..timefmt import format_range, format_time


def emails_dir() -> Path:
    """The email templates: inside the package when installed, else next to it in the repo."""
    return resource_dir("emails")


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The Jinja environment for email templates: HTML autoescaped, text not; a missing variable
    is an error (a silently empty link in a sent email cannot be taken back)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(emails_dir())),
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


def render(kind: str, context: dict) -> tuple[str, str, str]:
    """Render `emails/<kind>/` with `context`: (subject on one line, plain text, inlined HTML)."""
    env = environment()
    subject = _SPACES.sub(" ", env.get_template(f"{kind}/subject.txt").render(context)).strip()
    context = {**context, "subject": subject}  # the HTML <title>
    text = env.get_template(f"{kind}/body.txt").render(context)
    # Templates with optional blocks leave blank runs; one empty line between paragraphs reads best.
    text = _BLANK_RUNS.sub("\n\n", text).strip() + "\n"
    html = inliner().inline(env.get_template(f"{kind}/body.html").render(context))
    return subject, text, html
