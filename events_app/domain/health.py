"""Whether the service can do its work: the database answers."""

from __future__ import annotations

from .. import db


async def check() -> None:
    """Return once the database answers a query; raise what the engine raises otherwise (the
    web maps an unreachable database to 503)."""
    await db.fetch("SELECT 1 AS ok")
