"""Who is signed in to the staff workspace, and the CSRF check on its forms.

The session cookie holds a random value; the database keeps only its SHA-256 (StaffSession).
The cookie is HttpOnly, SameSite=Lax, and Secure when the site is served over https. Every POST
under /staff except the sign-in itself must carry `csrf_token`, an HMAC of the session's cookie
value under the secret key: a page on another site can make the browser send the cookie, but it
cannot read or compute the token. (Litestar's global CSRF middleware is not used: it would also
demand a token from the public JSON API and from RFC 8058 one-click unsubscribes.)

The sign-in form has no session to bind a token to, so it uses a signed double-submit cookie:
`events_login` holds a random value (HttpOnly, SameSite=Lax, path /staff) and the form carries
an HMAC of it. Another site can neither read the cookie nor compute the HMAC, so it cannot sign
a visitor in to an account of its choosing (login CSRF).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import quote

from litestar import Controller, Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.exceptions import HTTPException
from litestar.handlers.base import BaseRouteHandler
from litestar.response import Redirect, Template

from ... import settings, timefmt, tokens
from ...domain import staff

COOKIE = "events_staff"
LOGIN_COOKIE = "events_login"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class LoginRequired(Exception):
    """No live session: the answer is a redirect to the sign-in page."""


class CsrfRejected(HTTPException):
    status_code = 403
    detail = "This form has expired or did not come from the staff workspace. Go back, reload the page and try again."


def csrf_token(cookie_value: str) -> str:
    key = settings.get().secret_key.encode()
    return hmac.new(key, f"staff-csrf:{cookie_value}".encode(), hashlib.sha256).hexdigest()


def login_csrf(request: Request) -> tuple[str, Cookie | None]:
    """The sign-in form's token, and the cookie to set when the browser has none yet (a second
    tab keeps the same cookie, so both forms work)."""
    value = request.cookies.get(LOGIN_COOKIE, "")
    cookie = None
    if not (isinstance(value, str) and 20 <= len(value) <= 100):
        value = tokens.new_random()
        cookie = Cookie(
            key=LOGIN_COOKIE,
            value=value,
            path="/staff",
            httponly=True,
            samesite="lax",
            secure=settings.get().base_url.startswith("https://"),
            max_age=86400,
        )
    return csrf_token(f"login:{value}"), cookie


def login_csrf_ok(request: Request, given: Any) -> bool:
    """Whether the posted sign-in form carries the token of this browser's cookie."""
    value = request.cookies.get(LOGIN_COOKIE, "")
    if not value or not isinstance(given, str):
        return False
    return hmac.compare_digest(given.encode(), csrf_token(f"login:{value}").encode())


def session_cookie(value: str, *, clear: bool = False) -> Cookie:
    return Cookie(
        key=COOKIE,
        value="" if clear else value,
        path="/staff",
        httponly=True,
        samesite="lax",
        secure=settings.get().base_url.startswith("https://"),
        max_age=0 if clear else staff.SESSION_MAX_DAYS * 86400,
    )


async def require_session(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Guard for every workspace page: a live session, and on POST a valid CSRF token. Sets
    `connection.state.staff` (with `csrf`)."""
    value = connection.cookies.get(COOKIE, "")
    member = await staff.by_session(value) if value else None
    if member is None:
        raise LoginRequired()
    member["csrf"] = csrf_token(value)
    if connection.scope.get("method") not in SAFE_METHODS:
        form = await connection.form()  # type: ignore[attr-defined]  # guards get the Request
        given = form.get(CSRF_FIELD) or connection.headers.get("x-csrf-token") or ""
        if not isinstance(given, str) or not hmac.compare_digest(given.encode(), member["csrf"].encode()):
            raise CsrfRejected()
    connection.state.staff = member


def to_login(request: Request, exc: LoginRequired) -> Response:
    """A page wanted a session: sign in, then come back (only to a workspace path)."""
    target = request.url.path if request.method in SAFE_METHODS else "/staff"
    if request.url.query and request.method in SAFE_METHODS:
        target += "?" + request.url.query
    return Redirect(f"/staff/login?next={quote(target, safe='/')}", status_code=303)


def safe_next(value: Any) -> str:
    """Only a path inside the workspace: never an open redirect to another site."""
    if isinstance(value, str) and value.startswith("/staff") and "//" not in value and "\\" not in value:
        return value
    return "/staff"


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> Template:
    """A workspace page: the template gets the signed-in member, the CSRF token and the section."""
    member = getattr(request.state, "staff", None)
    return Template(
        template,
        context={
            "me": member,
            "csrf": member["csrf"] if member else "",
            "path": request.url.path,
            # Times with their zone: {{ short_time(moment, zone) }} -> "Tue 1 Dec 2026, 12:00 PM EST".
            "short_time": timefmt.short_time,
            "time_of_day": timefmt.time_of_day,
            "iso_seconds": timefmt.iso_seconds,
            **context,
        },
        status_code=status_code,
    )


def me(request: Request) -> dict:
    return request.state.staff


class StaffController(Controller):
    """Base of every workspace controller: a session (and CSRF on POST) required, no OpenAPI."""

    guards = [require_session]
    include_in_schema = False
    exception_handlers = {LoginRequired: to_login}


async def workspace_zone() -> str:
    """The zone workspace times are shown in: the latest event's (the zone staff work in), or UTC
    before there is any event (issues.default_zone, which release times are typed in)."""
    from ...domain import issues

    return await issues.default_zone()
