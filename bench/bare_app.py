"""The baseline for bench/registration.py: a bare Litestar app with one JSON POST route.

It accepts the same small JSON body on the same path as the real registration endpoint and
answers 201 `{"ok": true}`, with no database, so the difference to the real app is what the
registration itself costs. Served the way the real app is: uvicorn, uvloop + httptools, one
process, access log off.

    python bench/bare_app.py --port 8123
"""

from __future__ import annotations

import argparse
from typing import Any

from litestar import Litestar, post


@post("/api/v1/events/{event_id:int}/registrations", status_code=201)
async def register(event_id: int, data: dict[str, Any]) -> dict[str, bool]:
    return {"ok": True}


app = Litestar(route_handlers=[register], debug=False)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app,
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
