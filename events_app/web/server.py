"""The HTTP server `events-app serve` runs: uvicorn, with the limits a public server needs.

uvicorn has a keep-alive timeout and a connection cap (`limit_concurrency`: past it a request
gets a quick 503) but no timeout for reading a request's head, so a client that sends half a
head and stalls holds its connection for ever; a few thousand such clients (slowloris) use up
the server's file descriptors. `HeadTimeoutProtocol` closes a connection whose request head is
not complete `header_timeout_seconds` after the connection opened or the request began.

A buffering reverse proxy in front (deploy/nginx.conf) is still the advice for the open
internet: it also limits slow bodies and many connections per address.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..settings import Settings


class HeadTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a deadline for each request head.

    The timer starts when the connection opens and again when a new request's first bytes
    arrive on a kept-alive connection; it stops when the head is complete. When it fires the
    connection is closed without an answer (nothing was asked yet). A response still being
    written is never cut: the timer then waits another round."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        super().on_headers_complete()

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm_head_timer()  # answering the previous request; the next head may wait
            return
        self.transport.close()


def protocol_for(cfg: Settings) -> type[HeadTimeoutProtocol]:
    """A protocol class carrying this configuration's head timeout (uvicorn instantiates it)."""
    return type("ConfiguredHeadTimeoutProtocol", (HeadTimeoutProtocol,), {"header_timeout": cfg.header_timeout_seconds})


def serve(app: Any, cfg: Settings, *, host: str, port: int, log_level: str) -> None:
    """Run `app` until SIGINT/SIGTERM. Forwarded headers (X-Forwarded-For/-Proto) are believed
    only from `cfg.forwarded_allow_ips` (EVENTS_FORWARDED_ALLOW_IPS)."""
    import uvicorn

    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        # Access lines are info-level; skip building them at all when they would be dropped.
        access_log=log_level in ("debug", "info", "trace"),
        http=protocol_for(cfg),
        # uvicorn annotates whole seconds, but any number works (it is a loop.call_later delay).
        timeout_keep_alive=cfg.keepalive_seconds,  # type: ignore[arg-type]
        limit_concurrency=cfg.max_connections,
        proxy_headers=True,
        forwarded_allow_ips=cfg.forwarded_allow_ips,
        server_header=False,
    )
