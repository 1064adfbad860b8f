"""The one place that wires the app: routes, templates, error mapping, OpenAPI and lifespan,
and the edge (web/edge.py: HEAD, security headers, body limits, id ranges).

`create_app(run_worker=True)` also runs the mail worker for the server (`make run`): by default
a child `events-app worker` process started and stopped with the server (mail/worker.py
`run_beside`); `events-app serve --no-worker` plus `events-app worker` split them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from litestar import Litestar, Request
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig

from . import db, settings
from .domain import identity
from .resources import resource_dir
from .web import api_docs, settings_api
from .web.allow import AllowEveryMethod
from .web.api import EventsApi
from .web.bulletin import ArchivePages
from .web.edge import Edge, RouteLimits
from .web.errors import HANDLERS
from .web.issues_api import IssuesApi
from .web.mailings_api import announce, mailing_delivery
from .web.media import MEDIA_HANDLERS
from .web.public import CachedPages, PublicPages
from .web.registrant import RegistrantPages
from .web.settings_api import SETTINGS_API_HANDLERS
from .web.staff import STAFF_HANDLERS
from .web.staff.settings_pages import SETTINGS_PAGE_HANDLERS
from .web.staff_subscribers import STAFF_SUBSCRIBER_HANDLERS
from .web.subscriber import SubscriberPages
from .web.subscribers_api import SubscriberApi

log = logging.getLogger("events_app")


def _template_engine() -> TemplateConfig:
    def configure(engine: JinjaTemplateEngine) -> None:
        from .timefmt import format_range, format_time, issue_day, issue_month

        engine.engine.filters.update(issue_day=issue_day, issue_month=issue_month)

        from .domain.identity import TemplateView

        engine.engine.globals.update(
            org=TemplateView(),
            base_url=settings.get().base_url,
            # The installation's retention figure, for events without their own (privacy notes).
            retention_days=settings.get().retention_days,
            format_range=format_range,
            format_time=format_time,
        )
        engine.engine.trim_blocks = True
        engine.engine.lstrip_blocks = True
        # Compiled once: with auto_reload each render stat()ed every template it used (base.html,
        # _macros.html, ...). Template edits need a restart of the server.
        engine.engine.auto_reload = False

    return TemplateConfig(directory=resource_dir("templates"), engine=JinjaTemplateEngine, engine_callback=configure)


# The per-client budgets of the public doors (registration, subscribe, "my link", sign-in) are
# set, and explained, in web/limits.py.


def _stores(cfg: settings.Settings) -> dict:
    """Litestar stores: none. The rate-limit counters live in web/limits.py (in this process, or
    in Redis when EVENTS_REDIS_URL is set), because a limit needs an atomic increment, which
    Litestar's store interface does not offer."""
    return {}


def _rate_limits(cfg: settings.Settings) -> list:
    """The per-client limits on the public doors (web/limits.py); none with EVENTS_RATE_LIMITS=off."""
    if not cfg.rate_limits:
        return []
    from .web import limits

    return limits.middleware(cfg.redis_url)


def _edge(cfg: settings.Settings) -> list:
    """Middleware that runs once a route is chosen (web/edge.py): ids outside the integer
    columns answer 404, bodies past the route's limit 413. HEAD and the security headers sit
    outside routing (`Edge`, below), where every answer passes."""
    return [RouteLimits(), AllowEveryMethod]


async def _fresh_identity(request: Request) -> None:
    """Before every request: the organisation's identity as stored, read again at most once a
    second per process (domain/identity.py `fresh`; it never raises), so a change made in any
    process shows on pages, and in cached pages' keys, within about a second."""
    await identity.fresh()


def create_app(run_worker: bool = False) -> Litestar:
    cfg = settings.get()

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await db.start()
        # Everything loaded so far (modules, routes, templates) lives as long as the process:
        # moved out of the collector's sight, a full collection no longer walks it while
        # requests wait (one pause per few thousand requests set the p99 at 64 clients).
        gc.collect()
        gc.freeze()
        stop = asyncio.Event()
        task = None
        if run_worker:
            from .mail.worker import STOP_GRACE_SECONDS, run_beside

            task = asyncio.create_task(run_beside(stop, cfg), name="mail-worker")
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    # A worker process is killed after its grace; this bound is for the task mode.
                    await asyncio.wait_for(task, timeout=STOP_GRACE_SECONDS + 5)
            await db.stop()

    app = Litestar(
        route_handlers=[
            PublicPages,
            RegistrantPages,
            EventsApi,
            SubscriberApi,
            SubscriberPages,
            *STAFF_SUBSCRIBER_HANDLERS,
            *STAFF_HANDLERS,
            *SETTINGS_PAGE_HANDLERS,
            IssuesApi,
            announce,
            mailing_delivery,
            ArchivePages,
            *MEDIA_HANDLERS,
            *SETTINGS_API_HANDLERS,
            *api_docs.handlers(),
        ],
        middleware=[*_edge(cfg), *_rate_limits(cfg)],
        stores=_stores(cfg),
        template_config=_template_engine(),
        exception_handlers=HANDLERS,
        lifespan=[lifespan],
        before_request=_fresh_identity,
        openapi_config=OpenAPIConfig(
            title="events-app",
            version="1.0.0",
            description="Events, registrations with calendar invites, and a bulletin.",
            path="/schema",
            render_plugins=[api_docs.LocalSwaggerPlugin()],
            operation_id_creator=api_docs.operation_id,
            # Staff operations name this scheme (web/responses.py STAFF): a generated client's
            # AuthenticatedClient sends the token, and checkers know which calls need one.
            components=Components(
                security_schemes={
                    "BearerToken": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="A staff API token: `events-app staff token EMAIL` prints one.",
                    )
                }
            ),
        ),
        debug=False,
    )
    # The document is built once, here, and served as built (with what Litestar leaves out).
    api_docs.tighten(app.openapi_schema)
    settings_api.tighten(app.openapi_schema)
    AllowEveryMethod.learn(app.routes)
    # Outside routing, so that 404s and 405s get the headers too and HEAD reaches GET routes.
    # Cache hits of event pages and their .ics are answered in front of routing (web/public.py
    # CachedPages); everything else, and every miss, goes on to Litestar unchanged.
    app.asgi_handler = Edge(CachedPages(app.asgi_handler), cfg)
    return app
