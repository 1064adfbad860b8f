"""Rendering email templates: `emails/<kind>/{subject.txt, body.txt, body.html}` through Jinja.

`render(kind, context)` returns (subject, text, html) with the HTML's CSS inlined by css-inline,
because many mail clients drop <style> blocks. The Jinja environment and the inliner are built
once per process. `format_range` writes an event's time the way people read it ("Tuesday
29 November 2022, 12:00–1:00 PM EST"); the web templates use it too.

The templates live in the repository's top-level `emails/`, and inside the package
(`events_app/emails/`) in an installed wheel; `emails_dir()` finds either.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import css_inline
import jinja2

import events_app


def emails_dir() -> Path:
    """The email templates: inside the package when installed, else next to it in the repo."""
    package = Path(events_app.__file__).resolve().parent
    inside = package / "emails"
    return inside if inside.is_dir() else package.parent / "emails"


def _zone(tz: str | ZoneInfo) -> ZoneInfo:
    return tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)


def zone_abbreviation(moment: datetime) -> str:
    """'EST', 'CET'...; zones without a letter abbreviation (tzdata writes '+03') get 'UTC+03'."""
    name = moment.tzname() or ""
    return f"UTC{name}" if name[:1] in "+-" else name


def _clock(moment: datetime) -> str:
    return f"{moment.hour % 12 or 12}:{moment.minute:02d}"


def _meridiem(moment: datetime) -> str:
    return "AM" if moment.hour < 12 else "PM"


def _day(moment: datetime) -> str:
    return f"{moment:%A} {moment.day} {moment:%B %Y}"


def format_time(moment: datetime, tz: str | ZoneInfo) -> str:
    """One moment in zone `tz`: 'Tuesday 29 November 2022, 12:00 PM EST'."""
    local = moment.astimezone(_zone(tz))
    return f"{_day(local)}, {_clock(local)} {_meridiem(local)} {zone_abbreviation(local)}"


def format_range(starts_at: datetime, ends_at: datetime, tz: str | ZoneInfo) -> str:
    """An event's time in its zone, saying each thing once:
    'Tuesday 29 November 2022, 12:00–1:00 PM EST', '11:30 AM–12:30 PM EST' across noon,
    and both days in full when it ends on another day (or in another abbreviation, across a
    daylight-saving change)."""
    zone = _zone(tz)
    start, end = starts_at.astimezone(zone), ends_at.astimezone(zone)
    start_abbr, end_abbr = zone_abbreviation(start), zone_abbreviation(end)
    if start.date() != end.date():
        return f"{format_time(start, zone)} – {format_time(end, zone)}"
    if start_abbr != end_abbr:
        return (
            f"{_day(start)}, {_clock(start)} {_meridiem(start)} {start_abbr}–"
            f"{_clock(end)} {_meridiem(end)} {end_abbr}"
        )
    if _meridiem(start) == _meridiem(end):
        hours = f"{_clock(start)}–{_clock(end)} {_meridiem(end)}"
    else:
        hours = f"{_clock(start)} {_meridiem(start)}–{_clock(end)} {_meridiem(end)}"
    return f"{_day(start)}, {hours} {start_abbr}"


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
