"""Who is asking: staff by bearer token (API). Sessions for the staff workspace come later."""

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
