"""Public pages served from a cache keyed by what they show, with ETag and 304.

A page's key is read from the database on every request with one small query (the event's id,
`version`, seats taken and state, as domain/events.py decides it: `page_key` and `state`; for
the list and the calendar the same of every visible event). `version` grows on every change of an event, so a key names one content exactly: no
page outlives a change, whichever process made it, and no process needs to tell another. The
rendered bytes are kept per process; the ETag is a hash of the key (and of the templates and
settings that shape the page), so every process gives the same ETag for the same content and a
browser's If-None-Match is answered 304 by any of them. Every key also holds the organisation's
identity (domain/identity.py, read again at most once a second per process): a settings change
shows on every cached page within about a second, with a new ETag.

ETags are weak: two processes render the same content, and a calendar file's bytes may differ
in nothing that matters to a reader (RFC 9110 8.8.1).
"""

from __future__ import annotations

import hashlib
from typing import Any

from litestar import Request

from .. import settings
from ..domain import identity
from ..resources import resource_dir

# bench/serve_uncached.py turns it off to measure the pages without it.
ENABLED = True
LIMIT = 1024
HTML = "text/html; charset=utf-8"

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


class _Entry:
    """What this process knows of one key: its ETag, the 304 answer, and the kept 200 (None
    until rendered, or when the cache is off)."""

    __slots__ = ("etag", "page", "not_modified")

    def __init__(self, etag: str, not_modified: RawPage) -> None:
        self.etag, self.not_modified = etag, not_modified
        self.page: RawPage | None = None


_entries: dict[tuple, _Entry] = {}


def _with_identity(key: tuple) -> tuple:
    """Every cached page shows the organisation's identity (name, logo, colour, footer): the
    whole identity is part of every key, so a settings change gives new pages and ETags (app.py
    reads the identity again before each request, domain/identity.py `fresh`). The values, not
    only the version (a database emptied and set again starts its versions over), as the
    digest the identity computes once (`Identity.key`), not hashed anew per lookup."""
    return (*key, identity.snapshot().key)


def _entry(full: tuple) -> _Entry:
    entry = _entries.get(full)
    if entry is None:
        if len(_entries) >= LIMIT:
            _entries.clear()  # keys only go stale (versions grow): starting over is enough
        tag = 'W/"' + hashlib.sha256(f"{_build_salt()}|{full!r}".encode()).hexdigest()[:32] + '"'
        entry = _entries[full] = _Entry(
            tag, RawPage(304, [(b"etag", tag.encode("latin-1")), (b"cache-control", b"no-cache")], b"")
        )
    return entry


def etag(key: tuple) -> str:
    return _entry(_with_identity(key)).etag


def matches(request: Request, tag: str) -> bool:
    """True when the request's If-None-Match names `tag` (weak comparison, RFC 9110 13.1.2)."""
    return scope_matches(request.scope, tag)


def scope_matches(scope: Any, tag: str) -> bool:
    """`matches` for a bare ASGI scope."""
    # The raw ASGI headers: building request.headers cost more per request than the lookup.
    for name, value in scope["headers"]:
        if name == b"if-none-match":
            header = value.decode("latin-1")
            break
    else:
        return False
    wanted = tag[2:]
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == wanted:
            return True
    return False


class RawPage:
    """A kept answer as a bare ASGI app: its header block is encoded once, when the page is
    kept. Litestar's Response builds and checks its headers anew per request, which cost more
    than everything else a cached page does."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # Fresh message dicts: a middleware may add to a message's headers.
        await send({"type": "http.response.start", "status": self.status, "headers": list(self.headers)})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


def cached(request: Request, key: tuple) -> RawPage | None:
    """304 when the client holds the page for `key`, the kept page when this process has it,
    else None (the caller renders and calls `keep`). `key` must name everything the page shows."""
    return cached_for(request.scope, key)


def cached_for(scope: Any, key: tuple) -> RawPage | None:
    """`cached` for a bare ASGI scope."""
    entry = _entry(_with_identity(key))
    if scope_matches(scope, entry.etag):
        return entry.not_modified
    return entry.page


def keep(
    key: tuple, body: bytes, media_type: str = HTML, headers: dict[str, str] | None = None, store: bool = True
) -> RawPage:
    """Answer with `body`, rendered for `key`, and keep it unless `store` is False (the caller
    rendered newer content than the key names)."""
    entry = _entry(_with_identity(key))
    # no-cache: browsers keep the page but ask every time, so a change shows at once.
    named = {"etag": entry.etag, "cache-control": "no-cache", **{k.lower(): v for k, v in (headers or {}).items()}}
    fields = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in named.items()]
    page = RawPage(
        200,
        [
            (b"content-type", media_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode("latin-1")),
            *fields,
        ],
        body,
    )
    if ENABLED and store:
        entry.page, entry.not_modified = page, RawPage(304, fields, b"")
    return page


def render_template(request: Request, name: str, context: dict[str, Any]) -> bytes:
    """A template rendered as Litestar's Template response would (our public templates use
    neither the request nor a CSRF field, but they are given as Litestar gives them)."""
    return template(request, name).render(**context, request=request, csrf_input="").encode("utf-8")


def template(request: Request, name: str) -> Any:
    """The app's compiled template `name`."""
    engine = request.app.template_engine
    assert engine is not None  # app.py always configures the Jinja engine
    found = _templates.get(name)
    if found is None or found[0] is not engine:
        # Compiled once per app: asking the engine each time also checks every file's time.
        found = _templates[name] = (engine, engine.get_template(name))
    return found[1]


_templates: dict[str, tuple[Any, Any]] = {}


def clear() -> None:
    _entries.clear()
