"""Baselines for the registration benchmarks: a bare Litestar app with one JSON POST route.

Without `--pg` it accepts the same small JSON body on the same path as the real registration
endpoint and answers 201 `{"ok": true}`, with no database, so the difference to the real app is
what the registration itself costs (bench/registration.py).

With `--pg URL --event-id N` the route also runs, through a raw asyncpg pool of the same size as
the app's, the one statement that claims a seat and writes the registration and its outbox row
(`registrations.FAST_PG_SQL`, the same text the app runs; asyncpg prepares it once per
connection), and answers 201 with the new id: the floor a registration on PostgreSQL can reach
over HTTP (bench/registration_pg.py). It trusts the body and the event, as a raw floor would.

Served the way the real app is: uvicorn, uvloop + httptools, one process, access log off.

With `--static FILE` it answers GET /events/{slug} with that file's bytes through a Litestar
Response (the baseline of bench/pages.py); with `--raw` too, as a pre-encoded ASGI app (the
stricter floor, answering the way the app's page cache does).

    python bench/bare_app.py --port 8123 [--pg postgresql://... --event-id 1 | --static page.html [--raw]]
"""

from __future__ import annotations

import argparse
import secrets
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from litestar import Litestar, Response, get, post
from litestar.types import ASGIApp

STATE: dict[str, Any] = {}


@post("/api/v1/events/{event_id:int}/registrations", status_code=201)
async def register(event_id: int, data: dict[str, Any]) -> dict[str, bool]:
    return {"ok": True}


@post("/api/v1/events/{event_id:int}/registrations", status_code=201)
async def register_pg(event_id: int, data: dict[str, Any]) -> dict[str, Any]:
    moment = datetime.now(timezone.utc)
    email, name = data["email"], data["name"]
    rows = await STATE["pool"].fetch(
        STATE["sql"], event_id, STATE["version"], event_id, email, email, name, "{}",
        secrets.token_hex(16), False, moment, moment, moment, f"{secrets.token_hex(16)}@bench", moment, moment,
    )
    return {"id": rows[0]["id"], "status": "registered"}


def pg_app(url: str, event_id: int) -> Litestar:
    import asyncpg

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from events_app.db import _compile
    from events_app.domain.registrations import FAST_PG_SQL

    async def start() -> None:
        STATE["pool"] = await asyncpg.create_pool(url, min_size=2, max_size=20)
        STATE["sql"] = _compile(FAST_PG_SQL, True)
        STATE["version"] = await STATE["pool"].fetchval("SELECT version FROM event WHERE id = $1", event_id)

    async def stop() -> None:
        await STATE["pool"].close()

    return Litestar(route_handlers=[register_pg], on_startup=[start], on_shutdown=[stop], debug=False)


def static_app(body: bytes, media_type: str, raw: bool = False) -> Litestar:
    """One GET route answering fixed bytes: the baseline of bench/pages.py (the same page the
    real app serves, with its media type, from memory). `raw`: answer with a pre-encoded ASGI
    app instead of a Litestar Response, the way the app's page cache answers."""
    if raw:
        from events_app.web.cache import RawPage

        answer = RawPage(200, [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode())], body)

        @get("/events/{slug:str}")
        async def raw_page(slug: str) -> ASGIApp:
            return answer

        return Litestar(route_handlers=[raw_page], debug=False)

    @get("/events/{slug:str}")
    async def page(slug: str) -> Response:
        return Response(body, media_type=media_type)

    return Litestar(route_handlers=[page], debug=False)


app = Litestar(route_handlers=[register], debug=False)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pg", help="PostgreSQL URL: run the raw asyncpg registration statement")
    parser.add_argument("--event-id", type=int, default=1)
    parser.add_argument("--static", type=Path, help="serve this file's bytes at GET /events/{slug}")
    parser.add_argument("--media-type", default="text/html; charset=utf-8")
    parser.add_argument("--raw", action="store_true", help="with --static: a pre-encoded ASGI answer")
    args = parser.parse_args()
    if args.static:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        chosen = static_app(args.static.read_bytes(), args.media_type, raw=args.raw)
    else:
        chosen = pg_app(args.pg, args.event_id) if args.pg else app
    uvicorn.run(
        chosen,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        workers=1,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
