"""Public pages: the event list, an event's page with its registration form, calendar files.

GET pages come from web/cache.py: keyed by what they show (the event's version, seats taken and
state, from events.page_key), with ETag and 304; the key is read from the database on every
request, so a change made by any process shows at once. No SQL here: the domain owns it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote, unquote, urlencode

from litestar import Controller, Request, get, post
from litestar.datastructures import Cookie
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template
from litestar.types import ASGIApp

from .. import clock, settings, tokens
from ..domain import events, health, identity, registrations
from ..domain.errors import Conflict, NotFound, ValidationFailed
from . import cache
from .present import calendar_links_of, event_detail, event_page, render_event_page
from .responses import Health, answer

ICS_TYPE = "text/calendar; charset=utf-8"
# How long an event stays in the subscribed feed after it ends: calendars that refresh a feed
# drop what it no longer holds, and people look back at last week's event (its recording link).
FEED_KEEPS_PAST = timedelta(days=30)


def _ics_headers(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'inline; filename="{filename}"'}


# The thank-you page after registering is a page of its own (POST, then 303 to it), so a reload or
# the back button never posts again. Its address says only what the answer said (registered, or
# waitlisted with a place), signed so that nobody can make the site say another; the address the
# person typed comes back in a short-lived cookie for that page alone, so a link passed on shows
# nobody's address.
THANKS_COOKIE = "registered_as"
THANKS_HOURS = 2


def _thanks_signature(event_id: int, status: str, place: int | None) -> str:
    return tokens.derive(settings.get().secret_key, "thanks", event_id, f"{status}:{place or 0}")[:32]


def thanks_url(event: dict, answer: dict) -> str:
    """The thank-you page's address for the answer `register_public` gave."""
    status = answer["status"]
    place = answer.get("waitlist_position") if status == "waitlisted" else None
    query = {"status": status, **({"place": str(place)} if place else {})}
    query["sig"] = _thanks_signature(event["id"], status, place)
    return f"/events/{event['slug']}/registered?{urlencode(query)}"


def _feed(found: list[dict], name: str | None) -> bytes:
    """A public calendar (METHOD:PUBLISH) of `found`; `name` None for a single event's file."""
    from .. import ics

    cfg = settings.get()
    organizer = events.organizer(cfg)
    return ics.event_feed(
        found, base_url=cfg.base_url, organizer_name=organizer.name, organizer_email=organizer.email, name=name
    )


def _shown_back(value: Any) -> Any:
    """A typed value as the form may show it again: strings that cannot be encoded (a lone
    surrogate) get U+FFFD, so that re-showing a refused form can never fail."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_shown_back(v) for v in value]
    if isinstance(value, dict):
        return {k: _shown_back(v) for k, v in value.items()}
    return value


def _listing_key(kind: str, found: list[dict], *extra: Any) -> tuple:
    moment = clock.now()
    return (
        kind,
        identity.snapshot().version,  # the organisation's name and logo are on every page
        *extra,
        tuple(
            (
                e["id"],
                e["created_at"].timestamp(),
                e["version"],
                e["taken"],
                events.state(e, moment),
            )
            for e in found
        ),
    )


def form_to_data(event: dict, form: Any) -> dict:
    """Turn the registration form's fields into the API's shape. Questions are `q_<key>`;
    multiple choice sends one value per ticked box, and no field at all when none is ticked."""
    answers: dict[str, Any] = {}
    for q in event["questions"]:
        name = f"q_{q['key']}"
        if q["type"] == "multiple":
            values = form.getall(name, []) if hasattr(form, "getall") else form.get(name) or []
            answers[q["key"]] = [v for v in values if v]
        else:
            answers[q["key"]] = form.get(name)
    return {
        "name": form.get("name"),
        "email": form.get("email"),
        "subscribe": form.get("subscribe") == "yes",
        "answers": answers,
    }


class PublicPages(Controller):
    include_in_schema = False

    @get("/")
    async def home(self) -> Redirect:
        return Redirect("/events")

    @get("/events")
    async def index(self, request: Request) -> ASGIApp:
        # The listing itself is the key (a few rows); the rendering is what the cache saves.
        found = await events.listing()
        key = _listing_key("list", found)
        hit = cache.cached(request, key)
        if hit is not None:
            return hit
        pages = [event_page(e) for e in found]
        body = cache.render_template(
            request,
            "events/list.html",
            {
                "upcoming": [p for p in pages if p["state"] not in ("past",)],
                "past": [p for p in pages if p["state"] == "past"],
                "webcal": settings.get().base_url.replace("https://", "webcal://").replace("http://", "webcal://")
                + "/calendar.ics",
            },
        )
        return cache.keep(key, body)

    @get("/events/{slug:str}")
    async def show(self, request: Request, slug: FromPath[str]) -> ASGIApp:
        # Litestar matches whole segments, so /events/x.ics arrives here as slug "x.ics".
        read: tuple | None = request.scope.get(KEY_READ)  # type: ignore[assignment]
        # CachedPages read the key of this very request: not read again.
        hit, row, key = read[1] if read is not None and read[0] == slug else await _event_key(request.scope, slug)
        if hit is not None:
            return hit
        if row is None:
            raise NotFound("No such event")
        is_ics = key[0] == "event.ics"
        event = await events.for_page(row)
        # Read after the key when this process had not read this version yet: a change in
        # between gives newer content than the key names, served but not kept under that key.
        same = event["version"] == row["version"] and (is_ics or event["taken"] == row["taken"])
        if is_ics:
            await registrations.calendar_uid("event", event)
            return cache.keep(key, _feed([event], None), ICS_TYPE, _ics_headers(slug), store=same)
        context = await page_context(event)
        body = render_event_page(cache.template(request, "events/detail.html"), context, request)
        return cache.keep(key, body, cache.HTML, None, store=same)

    async def _page(
        self,
        event: dict,
        *,
        errors: dict | None = None,
        values: dict | None = None,
        status: int = 200,
        notice: str | None = None,
    ) -> Template:
        context = await page_context(event, errors=errors, values=values, notice=notice)
        return Template("events/detail.html", context=context, status_code=status)

    @post("/events/{slug:str}/register")
    async def register(self, request: Request, slug: FromPath[str]) -> Template | Redirect:
        event = await events.get_by_slug(slug)
        if event["status"] == "draft":
            raise NotFound("No such event")
        form = await request.form()
        data = form_to_data(event, form)
        try:
            # Built from what was typed: a repeat thanks the person like a first registration.
            reg = await registrations.register_public(event, data)
        except ValidationFailed as exc:
            return await self._page(event, errors=exc.fields, values=_shown_back(data), status=400)
        except Conflict as exc:
            return await self._page(event, values=_shown_back(data), status=409, notice=exc.message)
        page = f"/events/{event['slug']}/registered"
        return Redirect(
            thanks_url(event, reg),
            status_code=303,
            cookies=[
                Cookie(
                    key=THANKS_COOKIE,
                    value=quote(reg["email"], safe="@"),
                    path=page,
                    max_age=THANKS_HOURS * 3600,
                    httponly=True,
                    samesite="lax",
                    secure=settings.get().base_url.startswith("https://"),
                )
            ],
        )

    @get("/events/{slug:str}/registered")
    async def registered(
        self,
        request: Request,
        slug: FromPath[str],
        status: FromQuery[str | None] = None,
        place: FromQuery[str | None] = None,
        sig: FromQuery[str | None] = None,
    ) -> Template | Redirect:
        """The thank-you page: reopened as often as wanted, changing nothing. A missing or forged
        signature leads to the event page."""
        event = await events.get_by_slug(slug)
        if event["status"] == "draft":
            raise NotFound("No such event")
        position = int(place) if place and place.isascii() and place.isdigit() and len(place) < 9 else None
        if (
            status not in ("registered", "waitlisted")
            or not sig
            or not _same(sig, _thanks_signature(event["id"], status, position))
        ):
            return Redirect(f"/events/{event['slug']}", status_code=303)
        email = unquote(request.cookies.get(THANKS_COOKIE) or "")[:320]
        registration = {"status": status, "waitlist_position": position, "email": email}
        return Template(
            "events/registered.html",
            context={**event_page(event), "registration": registration},
            headers={"Cache-Control": "private, no-store"},
        )

    @get("/calendar.ics")
    async def calendar(self, request: Request, tag: FromQuery[str | None] = None) -> ASGIApp:
        """Every published event that has not ended more than FEED_KEEPS_PAST ago (tagged `tag`
        if given), named "<org> events" or "<org> <tag> events"."""
        from .. import ics

        found = [e for e in await events.listing() if e["status"] == "published"]
        since = clock.now() - FEED_KEEPS_PAST
        found = [e for e in found if e["ends_at"] >= since and (tag is None or tag.lower() in e["tags"])]
        key = _listing_key("calendar.ics", found, tag)  # names the identity's version too
        headers = _ics_headers("calendar.ics")
        hit = cache.cached(request, key)
        if hit is not None:
            return hit
        for event in found:
            await registrations.calendar_uid("event", event)
        org = ics.clean_line(identity.snapshot().name)
        name = f"{org} {ics.clean_line(tag)[:50]} events" if tag else f"{org} events"
        return cache.keep(key, _feed(found, name), ICS_TYPE, headers)

    @get("/health", include_in_schema=True, tags=["operations"], responses=answer(Health))
    async def health(self) -> dict:
        await health.check()
        return {"status": "ok"}


async def _event_key(scope: Any, slug: str) -> tuple[ASGIApp | None, dict | None, tuple]:
    """(the cached answer or None, the page key's row or None for no such page, the cache key)
    of GET /events/{slug} (an event page, or its .ics when `slug` ends so)."""
    is_ics = slug.endswith(".ics")
    row = await events.page_key(slug[:-4] if is_ics else slug)
    if row is None or row["status"] == "draft":
        return None, None, ()
    if is_ics:
        key: tuple = ("event.ics", row["id"], row["born"], row["version"])
    else:
        # The version covers every column the page shows (cover, speakers, the shown count,
        # the cancellation note: each change raises it); the organisation's identity is on
        # the page too (name, logo, JSON-LD organiser), and web/cache.py adds it to every key.
        key = ("event", row["id"], row["born"], row["version"], row["taken"], row["state"])
    return cache.cached_for(scope, key), row, key


# Where CachedPages leaves the page key it read for a request it passes on (a miss).
KEY_READ = "events_app.page_key"


class CachedPages:
    """ASGI, in front of Litestar's routing (app.py wraps the app's handler in it, inside
    web/edge.py's Edge, which still adds the security headers and answers HEAD): a GET of an
    event page or its .ics that the cache holds is answered here, the way the bare route answers,
    without routing, the route's middleware, the handler's signature or a Response. Everything
    else (a miss, no such event, any other path or method) goes on to Litestar unchanged, where
    `PublicPages.show` answers it (a miss or no such event with the key read here, under
    KEY_READ in the scope, so that the key is read once per request). The same checks run: the organisation's identity as app.py's
    before_request reads it, then the page key of every request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"].startswith("/events/"):
            slug = scope["path"][8:]
            # One path segment, as the route matches it; a NUL is no stored slug (and no query).
            if slug and "/" not in slug and "\x00" not in slug:
                await identity.fresh()
                found = await _event_key(scope, slug)
                if found[0] is not None:
                    await found[0](scope, receive, send)
                    return
                # A miss: PublicPages.show renders from this read instead of reading again.
                scope[KEY_READ] = (slug, found)
        await self.app(scope, receive, send)


def _same(given: str, expected: str) -> bool:
    import hmac

    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


async def page_context(
    event: dict, *, errors: dict | None = None, values: dict | None = None, notice: str | None = None
) -> dict:
    """Everything the event page shows (the staff preview uses it too). Add-to-calendar links
    only while the event is ahead and not cancelled."""
    from ..ics import calendar_links

    context = await event_detail(event)
    context.update(
        errors=errors or {},
        values=values or {"answers": {}},
        notice=notice,
        links=calendar_links_of(event, lambda e: calendar_links(e, base_url=settings.get().base_url))
        if context["state"] in ("open", "closed", "draft")
        else None,
    )
    return context
