"""Who is asking the API: a staff member by bearer token (`Authorization: Bearer <token>`;
domain/staff.py keeps only the token's SHA-256). `require_staff` is the guard of every staff
endpoint (401 without a live token) and puts the member in `request.state.staff`, whose id the
handlers pass to the domain as `actor` for the audit log. The staff workspace signs in with a
session cookie instead (web/staff/session.py)."""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from ..domain import staff
from ..domain.errors import Unauthorized


def _bearer(connection: ASGIConnection) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def optional_staff(connection: ASGIConnection) -> dict | None:
    """The staff member behind a valid bearer token, or None (a bad token is also None)."""
    token = _bearer(connection)
    if token is None:
        return None
    try:
        return await staff.by_token(token)
    except Unauthorized:
        return None


async def require_staff(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Guard: 401 unless the request carries a valid staff API token."""
    member = await optional_staff(connection)
    if member is None:
        raise Unauthorized("A valid staff API token is required (Authorization: Bearer <token>)")
    connection.state.staff = member
