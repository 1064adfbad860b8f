"""`Allow` on OPTIONS answers names every method of the path.

Litestar (2.25) builds a path's OPTIONS handler with the route that first held the path: when
handlers of one path are registered apart (GET /api/v1/subscribers beside the controller's POST,
or GET and PATCH of one id), `Allow` names only some of its methods, and a client reading it
would not know it may GET. This middleware answers with the methods of every route on the path,
collected once from the app (`scope["path_template"]` is the matched path).
"""

from __future__ import annotations

from litestar.types import ASGIApp, Message, Receive, Scope, Send


class AllowEveryMethod:
    """ASGI middleware (app.py): the full Allow header on OPTIONS answers."""

    methods: dict[str, str] = {}

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    @classmethod
    def learn(cls, routes: list) -> None:
        """Collect the methods of each path from the app's routes (called once at start-up)."""
        found: dict[str, set[str]] = {}
        for route in routes:
            methods = getattr(route, "methods", None)
            if methods:
                found.setdefault(route.path_format, set()).update(methods)
        cls.methods = {path: ", ".join(sorted(methods)) for path, methods in found.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        allow = self.methods.get(scope.get("path_template", "")) if scope.get("method") == "OPTIONS" else None
        if allow is None:
            await self.app(scope, receive, send)
            return

        async def send_allow(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                message = {**message, "headers": [*headers, (b"allow", allow.encode())]}
            await send(message)

        await self.app(scope, receive, send_allow)
