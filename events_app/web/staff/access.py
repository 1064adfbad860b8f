"""Signing in and out, the account page: password, API tokens, colleagues' accounts.

The sign-in form posts `email` and `password` to /staff/login (the contract), with a CSRF token
tied to a cookie of its own (session.login_csrf): a post without it answers 403 with the form
again. The per-client request limit runs before this handler (web/limits.py); the password check
itself runs off the event loop (domain/staff.py), and a full hashing pool answers 503.
The audit entries (sign-in, password, tokens, accounts) are written by domain/staff.py with the
change; these handlers pass the signed-in member as `actor`.
"""

from __future__ import annotations

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from ...domain import staff
from ...domain.errors import Unauthorized, ValidationFailed
from .session import (
    COOKIE,
    CSRF_FIELD,
    LoginRequired,
    StaffController,
    login_csrf,
    login_csrf_ok,
    me,
    page,
    require_session,
    safe_next,
    session_cookie,
    to_login,
    workspace_zone,
)

CSRF_FAILED = "This sign-in form has expired or did not come from this site. It has been renewed: please sign in again."


def _login_page(request: Request, context: dict, status: int = 200, headers: dict | None = None) -> Template:
    """The sign-in form with its CSRF token (setting the token's cookie when the browser has none)."""
    token, cookie = login_csrf(request)
    return Template(
        "staff/login.html",
        context={"error": None, "errors": {}, "email": "", "me": None, **context, "csrf": token},
        status_code=status,
        headers=headers,
        cookies=[cookie] if cookie else None,
    )


class SignIn(Controller):
    path = "/staff"
    include_in_schema = False
    exception_handlers = {LoginRequired: to_login}

    @get("/login")
    async def login_form(self, request: Request, next: FromQuery[str | None] = None) -> Template:
        return _login_page(request, {"next": safe_next(next)})

    @post("/login")
    async def login(self, request: Request) -> Response:
        form = await request.form()
        email, password = form.get("email") or "", form.get("password") or ""
        target = safe_next(form.get("next"))
        context = {"next": target, "email": email if isinstance(email, str) else ""}
        if not login_csrf_ok(request, form.get(CSRF_FIELD)):
            return _login_page(request, {**context, "error": CSRF_FAILED}, 403)
        missing = {
            name: "is required"
            for name, value in (("email", email), ("password", password))
            if not isinstance(value, str) or not value.strip()
        }
        if missing:  # said at the fields, without spending a sign-in attempt
            return _login_page(request, {**context, "errors": missing}, 400)
        try:
            member = await staff.authenticate(email, password)
        except (staff.Throttled, staff.Busy) as exc:
            status = 429 if isinstance(exc, staff.Throttled) else 503
            return _login_page(
                request, {**context, "error": exc.message}, status, {"Retry-After": str(exc.retry_after)}
            )
        except Unauthorized as exc:
            return _login_page(request, {**context, "error": exc.message}, 401)
        token = await staff.start_session(member["id"], request.headers.get("user-agent", ""))
        return Redirect(target, status_code=303, cookies=[session_cookie(token)])

    @post("/logout", guards=[require_session])
    async def logout(self, request: Request) -> Response:
        await staff.end_session(request.cookies.get(COOKIE, ""))
        return Redirect("/staff/login", status_code=303, cookies=[session_cookie("", clear=True)])


class Account(StaffController):
    path = "/staff/account"

    async def _page(self, request: Request, status: int = 200, **extra) -> Template:
        member = me(request)
        return page(
            request,
            "staff/account.html",
            status,
            tokens=await staff.token_list(),
            members=await staff.members(),
            sessions=await staff.sessions(member["id"]),
            errors=extra.pop("errors", {}),
            zone=await workspace_zone(),
            **extra,
        )

    @get("/")
    async def show(self, request: Request, done: FromQuery[str | None] = None) -> Template:
        messages = {
            "password": "Your password is changed. Every other session has been signed out.",
            "revoked": "The token is revoked: requests carrying it now answer 401.",
        }
        return await self._page(request, flash=messages.get(done or ""))

    @post("/password")
    async def change_password(self, request: Request) -> Response:
        form = await request.form()
        member = me(request)
        mismatch = {}
        if form.get("new_password") != form.get("new_password_again"):
            mismatch = {"new_password_again": "does not match the new password"}
        try:
            if mismatch:  # still check the rest, to show every problem at once
                await staff.check_password_change(
                    member["id"], form.get("current_password") or "", form.get("new_password") or ""
                )
            else:
                await staff.change_password(
                    member["id"],
                    form.get("current_password") or "",
                    form.get("new_password") or "",
                    keep_session_hash=member["session_hash"],
                )
        except ValidationFailed as exc:
            return await self._page(request, 400, errors={**exc.fields, **mismatch})
        if mismatch:
            return await self._page(request, 400, errors=mismatch)
        return Redirect("/staff/account?done=password", status_code=303)

    @post("/tokens")
    async def new_token(self, request: Request) -> Template:
        form = await request.form()
        label = (form.get("label") or "").strip()
        if not label:
            return await self._page(request, 400, errors={"label": "is required: say where the token will be used"})
        member = me(request)
        token = await staff.create_token(member["id"], label, actor=member["id"])
        return await self._page(request, 201, new_token=token, new_label=label)

    @post("/tokens/{token_id:int}/revoke")
    async def revoke(self, request: Request, token_id: FromPath[int]) -> Response:
        await staff.revoke_token(token_id, actor=me(request)["id"])
        return Redirect("/staff/account?done=revoked", status_code=303)

    @post("/members")
    async def add_member(self, request: Request) -> Template:
        form = await request.form()
        try:
            created = await staff.create(
                form.get("email") or "", form.get("password") or "", form.get("name") or "", actor=me(request)["id"]
            )
        except ValidationFailed as exc:
            return await self._page(request, 400, member_errors=exc.fields, member_values=dict(form))
        return await self._page(
            request,
            201,
            flash=f"Account {created['email']} created. Give them the password in person or by phone; "
            "they can change it under Account.",
        )
