"""The app's edge: what every request meets before (and every answer after) the route handlers.

Two layers, each applied once for the whole app by `app.py`:

- `Edge` wraps Litestar's ASGI handler, outside routing, so it sees every answer, 404s and
  405s included. It answers HEAD for every GET route (the GET handler runs; its status and
  headers go out, its body does not; GET never changes state) and adds the security headers:
  a Content-Security-Policy allowing scripts from this origin plus the templates' own inline
  scripts by hash, no framing anywhere (`frame-ancestors 'none'` and X-Frame-Options), no
  Referer from pages whose URL holds a token (/r/, /j/, /s/), nosniff, and HSTS when
  EVENTS_BASE_URL is https.
- `RouteLimits` is a Litestar middleware, so it runs after routing and knows the route: it
  answers 404 for an `{...:int}` path parameter outside the integer columns (before any
  handler turns it into a query that overflows) and caps the request body: 64 KiB for anyone's
  request, more for staff routes (the staff CSV import most), answering 413 with the limit.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from litestar.enums import ScopeType
from litestar.exceptions import ClientException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

from ..domain.errors import NotFound
from ..domain.validation import MAX_ID
from ..resources import resource_dir
from ..settings import Settings

KIB = 1024
PUBLIC_BODY_LIMIT = 64 * KIB
STAFF_BODY_LIMIT = 1024 * KIB  # an issue's Markdown, an event with many questions
# Litestar's own default cap: the staff CSV import reads the upload in one piece.
IMPORT_BODY_LIMIT = 10 * 1024 * KIB
# Forms that carry a picture of up to 5 MB (domain/images.py), so that its refusal shows beside
# the field rather than as a 413 page: the settings form (logo) and the event editor (cover,
# speakers' photos).
PICTURE_BODY_LIMIT = 6 * 1024 * KIB
LARGE_BODY_PATHS = {"/staff/subscribers/import": IMPORT_BODY_LIMIT, "/staff/settings": PICTURE_BODY_LIMIT}
_EVENT_FORM = re.compile(r"/staff/events(/\d+)?")

# Pages whose URL carries a secret: browsers must not pass it on in a Referer.
TOKEN_PREFIXES = ("/r/", "/j/", "/s/")


def _size(limit: int) -> str:
    return f"{limit // (1024 * KIB)} MiB" if limit >= 1024 * KIB else f"{limit // KIB} KiB"


class BodyTooLarge(ClientException):
    status_code = 413


# --- Security headers -------------------------------------------------------------------------


@lru_cache(maxsize=4)
def inline_script_hashes(templates: Path) -> tuple[str, ...]:
    """CSP source expressions ('sha256-...') for every inline <script> in the templates. The
    scripts hold no template expressions, so the rendered text is the template's text."""
    found: set[str] = set()
    for path in sorted(templates.rglob("*.html")):
        for body in re.findall(r"<script>(.*?)</script>", path.read_text(encoding="utf-8"), re.S):
            digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
            found.add(f"'sha256-{digest}'")
    return tuple(sorted(found))


def content_security_policy(script_hashes: Iterable[str]) -> str:
    """Scripts only from here (and the templates' inline scripts by hash). Inline styles stay
    allowed: the templates set widths (charts, bars) in style attributes, and a style cannot run
    code. Images may come from any https site: cover images and speaker photos are URLs."""
    return "; ".join(
        [
            "default-src 'self'",
            " ".join(["script-src 'self'", *script_hashes]),
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' https: data:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def security_headers(cfg: Settings) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """(headers for token pages, headers for every other answer)."""
    common = [
        (b"content-security-policy", content_security_policy(inline_script_hashes(resource_dir("templates"))).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
    ]
    if cfg.base_url.startswith("https://"):
        common.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
    token = [*common, (b"referrer-policy", b"no-referrer")]
    other = [*common, (b"referrer-policy", b"strict-origin-when-cross-origin")]
    return token, other


class Edge:
    """ASGI wrapper around Litestar's handler: HEAD as GET without a body, security headers."""

    def __init__(self, app: ASGIApp, cfg: Settings) -> None:
        self.app = app
        self.token_headers, self.other_headers = security_headers(cfg)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        extra = self.token_headers if scope["path"].startswith(TOKEN_PREFIXES) else self.other_headers
        head = scope["method"] == "HEAD"
        if head:
            # The server still knows the request was HEAD (it keeps its own scope) and sends the
            # GET's headers, Content-Length included, with no body.
            scope = {**scope, "method": "GET"}
        finished = False

        async def send_with_headers(message: Message) -> None:
            nonlocal finished
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                added = [(name, value) for name, value in extra if name not in present]
                message = {**message, "headers": [*message.get("headers", []), *added]}
            elif message["type"] == "http.response.body" and head:
                if finished:
                    return  # the rest of a streamed GET body
                finished = True
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# --- Per-route limits -------------------------------------------------------------------------


def _staff_only(handler: Any) -> bool:
    from .auth import require_staff
    from .staff.session import require_session

    guards = handler.resolve_guards() if handler is not None else ()
    return any(guard in (require_staff, require_session) for guard in guards)


# Whether a handler is staff-only, by handler: its guards are fixed once the app is built, and
# resolving them on every request cost about 2% of a registration (bench/profile_registration.py).
# Keyed by the handler itself (held, so that an id is never reused for another handler).
_STAFF_ONLY: dict[Any, bool] = {}


def body_limit(scope: Scope) -> int:
    """The largest request body this route takes: 64 KiB unless only staff may call it."""
    handler = scope.get("route_handler")
    staff_only = _STAFF_ONLY.get(handler)
    if staff_only is None:
        staff_only = _STAFF_ONLY[handler] = _staff_only(handler)
    if not staff_only:
        return PUBLIC_BODY_LIMIT
    path = scope["path"].rstrip("/")
    if _EVENT_FORM.fullmatch(path):
        return PICTURE_BODY_LIMIT  # the event editor carries a cover and speakers' photos
    return LARGE_BODY_PATHS.get(path, STAFF_BODY_LIMIT)


def _limited(receive: Receive, scope: Scope, limit: int) -> Receive:
    declared = None
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            declared = int(value) if value.isdigit() else None
    received = 0

    def too_large() -> BodyTooLarge:
        return BodyTooLarge(detail=f"The request body is over the limit of {_size(limit)} for this address.")

    async def limited_receive() -> ReceiveMessage:
        nonlocal received
        if declared is not None and declared > limit:
            raise too_large()
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise too_large()
        return message

    return limited_receive


def _id_in_range(value: Any) -> bool:
    return not isinstance(value, int) or isinstance(value, bool) or 0 < value <= MAX_ID


# What a path's id names, for the 404's wording ("No such event"), as the handlers word it.
_ID_NAMES = {
    "event_id": "event",
    "issue_id": "issue",
    "mailing_id": "mailing",
    "reg_id": "registration",
    "row_id": "message",
    "token_id": "token",
    "slug": "page",
    "token": "link",
}


class RouteLimits(ASGIMiddleware):
    """404 for ids outside the integer columns; 413 past the route's body limit."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        for key, value in scope.get("path_params", {}).items():
            # No stored slug or token holds a NUL (PostgreSQL text cannot), and a NUL sent to
            # PostgreSQL in a query is an error rather than no row: answer as for any unknown one.
            if not _id_in_range(value) or (isinstance(value, str) and "\x00" in value):
                raise NotFound(f"No such {_ID_NAMES.get(key, key.removesuffix('_id'))}")
        await next_app(scope, _limited(receive, scope, body_limit(scope)), send)
