"""Public pages served from a cache keyed by what they show, with ETag and 304.

A page's key is read from the database on every request with one small query (the event's id,
`version`, seats taken and state; for the list and the calendar the same of every visible
event). `version` grows on every change of an event, so a key names one content exactly: no
page outlives a change, whichever process made it, and no process needs to tell another. The
rendered bytes are kept per process; the ETag is a hash of the key (and of the templates and
settings that shape the page), so every process gives the same ETag for the same content and a
browser's If-None-Match is answered 304 by any of them.

ETags are weak: two processes render the same content, and a calendar file's bytes may differ
in nothing that matters to a reader (RFC 9110 8.8.1).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from litestar import Request, Response

from .. import settings
from ..resources import resource_dir

# bench/serve_uncached.py turns it off to measure the pages without it.
ENABLED = True
LIMIT = 1024
HTML = "text/html; charset=utf-8"

_pages: dict[tuple, bytes] = {}
_salt: str | None = None


def _build_salt() -> str:
    """Changes when the templates of these pages or the settings that appear in them change,
    so that a new release never answers 304 for a page whose layout it changed. (Only these
    templates: an edit of the staff pages must not change public ETags.)"""
    global _salt
    if _salt is None:
        digest = hashlib.sha256()
        cfg = settings.get()
        digest.update(f"{cfg.base_url}|{cfg.host}|{cfg.mail_from}".encode())
        root = resource_dir("templates")
        used = [root / "base.html", root / "_macros.html", *sorted((root / "events").rglob("*.html"))]
        for path in used:
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
        _salt = digest.hexdigest()
    return _salt


_etags: dict[tuple, str] = {}


def etag(key: tuple) -> str:
    tag = _etags.get(key)
    if tag is None:
        if len(_etags) >= LIMIT:
            _etags.clear()
        tag = _etags[key] = 'W/"' + hashlib.sha256(f"{_build_salt()}|{key!r}".encode()).hexdigest()[:32] + '"'
    return tag


def matches(request: Request, tag: str) -> bool:
    """True when the request's If-None-Match names `tag` (weak comparison, RFC 9110 13.1.2)."""
    header = request.headers.get("if-none-match")
    if not header:
        return False
    wanted = tag[2:]
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == wanted:
            return True
    return False


def headers_for(key: tuple, extra: dict[str, str] | None = None) -> dict[str, str]:
    # no-cache: browsers keep the page but ask every time, so a change shows at once.
    return {"ETag": etag(key), "Cache-Control": "no-cache", **(extra or {})}


def cached(request: Request, key: tuple, media_type: str = HTML, headers: dict[str, str] | None = None) -> Response | None:
    """304 when the client holds the page for `key`, the kept bytes when this process has them,
    else None (the caller renders and calls `keep`). `key` must name everything the page shows."""
    extra = headers_for(key, headers)
    if matches(request, extra["ETag"]):
        return Response(b"", status_code=304, headers=extra, media_type=media_type)
    body = _pages.get(key) if ENABLED else None
    if body is None:
        return None
    return Response(body, media_type=media_type, headers=extra)


def keep(key: tuple, body: bytes, media_type: str = HTML, headers: dict[str, str] | None = None,
         store: bool = True) -> Response:
    """Answer with `body`, rendered for `key`, and keep it unless `store` is False (the caller
    rendered newer content than the key names)."""
    if ENABLED and store:
        if len(_pages) >= LIMIT:
            _pages.clear()  # keys only go stale (versions grow): starting over is enough
        _pages[key] = body
    return Response(body, media_type=media_type, headers=headers_for(key, headers))


def render_template(request: Request, name: str, context: dict[str, Any]) -> bytes:
    """A template rendered as Litestar's Template response would (our public templates use
    neither the request nor a CSRF field, but they are given as Litestar gives them)."""
    template = request.app.template_engine.get_template(name)
    return template.render(**context, request=request, csrf_input="").encode("utf-8")


def page_state(status: str, ends_at: datetime, closes_at: datetime | None, now: datetime) -> str:
    """The state an event page shows (present.event_page decides the same way)."""
    if status == "cancelled":
        return "cancelled"
    if ends_at <= now:
        return "past"
    if (closes_at or ends_at) <= now:
        return "closed"
    return "draft" if status == "draft" else "open"


def clear() -> None:
    _pages.clear()
    _etags.clear()
