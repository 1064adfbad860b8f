"""Per-client request limits on the public doors: one bucket per door, counted atomically in this
process or in Redis (shared by every process), answered with 429 and Retry-After.

| bucket           | what is counted (POST)                                          | budget per client    |
|------------------|-----------------------------------------------------------------|----------------------|
| `register`       | /events/{slug}/register and /api/v1/events/{id}/registrations   | 100 per 10 minutes   |
| `register-event` | the same, per event (form and API together)                     | 50 per hour          |
| `subscribe`      | /api/v1/subscribers, /bulletin/subscribe, and each registration | 10 per minute        |
|                  | asking for the bulletin (`subscribe` true, or the form's box)   |                      |
| `link`           | "email me my link": /s/link and /r/link                         | 10 per 10 minutes    |
| `signin`         | /staff/login (checked before any password is hashed)            | 20 per 10 minutes    |

Why these figures: a class or an office behind one NAT address registering forty people for one
event within minutes fits, and so do two such events; a script from one address takes at most 50
seats of an event per hour. Subscribe and "my link" send an email to any address typed in, so
they get the budget of a few people; the subscribe budget is the figure the service always had.
Five failed sign-ins in a row already slow one account down (domain/staff.py); twenty attempts
per client per ten minutes leave room for a team behind one address, not for trying passwords
across many accounts.

A window starts with a client's first counted request and lasts its length (the counter is
created with INCR and given its expiry with EXPIRE NX in the same transaction), so a burst cannot
straddle two wall-clock windows. Refused requests count too: knocking on does not shorten the
wait, and a client still knocking after twice its budget gets each refusal only after a pause of
a second (at most 256 held at once per process), so a script looping on a few connections costs
the server a handful of answers a second instead of thousands.

The client is the ASGI scope's client address (uvicorn takes it from X-Forwarded-For only when
the proxy is in EVENTS_FORWARDED_ALLOW_IPS); an IPv6 client is counted per /64, the block one
host usually owns. When Redis does not answer, requests go through (logged), since the limits
guard resources, not secrets: sign-in stays throttled per address and hashes in a bounded pool.
EVENTS_RATE_LIMITS=off lifts every limit (app.py then installs no middleware).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import TooManyRequestsException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from ..domain import events, validation
from ..domain.errors import DomainError

log = logging.getLogger("events_app.web.limits")

NAMESPACE = "events:limits"  # prefix of every Redis key (tests give each run its own)


@dataclass(frozen=True)
class Limit:
    bucket: str
    requests: int
    seconds: int
    what: str  # "Too many {what} from your network just now"


REGISTER = Limit("register", 100, 600, "registrations")
REGISTER_EVENT = Limit("register-event", 50, 3600, "registrations for this event")
SUBSCRIBE = Limit("subscribe", 10, 60, "bulletin sign-ups")
LINK = Limit("link", 10, 600, "link requests")
SIGNIN = Limit("signin", 20, 600, "sign-in attempts")
# A client refused more than its whole budget over again in one window gets each further
# refusal after this pause; at most TARPIT_MAX refusals are held at once per process.
TARPIT_SECONDS = 1.0
TARPIT_MAX = 256

_REGISTER_FORM = re.compile(r"/events/([^/]+)/register")  # matched without a trailing slash
_REGISTER_API = re.compile(r"/api/v1/events/([0-9]{1,19})/registrations")
_SUBSCRIBE_PATHS = {"/api/v1/subscribers", "/bulletin/subscribe"}
_LINK_PATHS = {"/s/link", "/r/link"}
_SIGNIN_PATHS = {"/staff/login"}


# Counters ------------------------------------------------------------------------------------


class MemoryCounters:
    """Counters of this process (each process counts alone)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._counts: dict[str, list[float]] = {}  # key -> [count, window end]

    async def hit(self, key: str, seconds: int) -> tuple[int, int]:
        """Count one request under `key`; return the count in the current window (this one
        included) and the whole seconds until the window ends (at least 1)."""
        moment = self._clock()
        entry = self._counts.get(key)
        if entry is None or entry[1] <= moment:
            if len(self._counts) > 50_000:  # forget ended windows before growing further
                self._counts = {k: e for k, e in self._counts.items() if e[1] > moment}
            entry = self._counts[key] = [0, moment + seconds]
        entry[0] += 1
        return int(entry[0]), max(1, min(seconds, math.ceil(entry[1] - moment)))

    async def close(self) -> None:
        pass


class RedisCounters:
    """Counters in Redis, shared by every process using the same server."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._warned = 0.0

    async def hit(self, key: str, seconds: int) -> tuple[int, int]:
        """As MemoryCounters.hit, in one MULTI/EXEC: INCR, EXPIRE NX (only a new counter gets
        its end), TTL. When Redis fails the request is let through and the failure logged."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, seconds, nx=True)
                pipe.ttl(key)
                count, _, left = await pipe.execute()
        except Exception as exc:  # redis.RedisError, OSError, timeouts
            if time.monotonic() - self._warned > 60:
                self._warned = time.monotonic()
                log.warning("rate-limit counters unavailable (%s); requests are let through", exc)
            return 0, seconds
        return int(count), max(1, int(left)) if left and left > 0 else seconds

    async def close(self) -> None:
        await self._redis.aclose()


def counters_for(redis_url: str | None) -> MemoryCounters | RedisCounters:
    return RedisCounters(redis_url) if redis_url else MemoryCounters()


# Who is asking, and what -------------------------------------------------------------------------


def client_of(scope: Scope) -> str:
    """The client's address as counted: IPv4 as is, IPv6 by its /64."""
    client = scope.get("client")
    host = client[0] if client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:100] or "unknown"
    if address.version == 6:
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


async def _asks_for_bulletin(request: Request, is_form: bool) -> bool:
    """Whether a registration asks for the bulletin, by the same reading as the handlers (the
    form's box sends "yes"; the API's `subscribe` is a boolean). The body read here is kept for
    the handler. Unreadable bodies count as no: the handler refuses them with 400."""
    try:
        if is_form:
            return (await request.form()).get("subscribe") == "yes"
        data = msgspec.json.decode(await request.body())
        return isinstance(data, dict) and validation.boolean(data.get("subscribe"), "subscribe")
    except (DomainError, msgspec.DecodeError, ValueError):
        return False


def _wait_words(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minutes"


def refused(limit: Limit, left: int, advice: str = "") -> TooManyRequestsException:
    """The 429 (rendered by web/errors.py: JSON under /api/, a page otherwise)."""
    detail = f"Too many {limit.what} from your network just now. Please try again in {_wait_words(left)}{advice}."
    return TooManyRequestsException(
        detail=detail,
        headers={
            "Retry-After": str(left),
            "RateLimit-Limit": str(limit.requests),
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(left),
            "RateLimit-Policy": f"{limit.requests};w={limit.seconds}",
        },
    )


class RateLimits(ASGIMiddleware):
    """Counts the POSTs of the public doors per client and refuses those over budget with 429
    before the handler runs (and so before any database write, email or password hash)."""

    def __init__(self, counters: MemoryCounters | RedisCounters) -> None:
        self.counters = counters
        self._event_ids: dict[str, str] = {}  # slug -> id, so form and API share an event's cap
        self._held = 0  # refusals being held back (TARPIT_SECONDS) right now

    async def _spend(self, limit: Limit, client: str, extra: str = "", advice: str = "") -> None:
        key = f"{NAMESPACE}:{limit.bucket}:{client}{':' + extra if extra else ''}"
        count, left = await self.counters.hit(key, limit.seconds)
        if count > limit.requests:
            if count > 2 * limit.requests and self._held < TARPIT_MAX:
                # Still knocking long after the first refusal: a script. Holding the refusal
                # costs a sleeping coroutine; answering at once would let each of its
                # connections take thousands of (cheap, but not free) answers a second.
                self._held += 1
                try:
                    await asyncio.sleep(TARPIT_SECONDS)
                finally:
                    self._held -= 1
            raise refused(limit, left, advice)

    async def _event_key(self, slug: str) -> str:
        found = self._event_ids.get(slug)
        if found is None:
            try:
                found = str((await events.get_by_slug(slug))["id"])
            except DomainError:
                return f"slug:{slug[:200]}"  # no such event: the handler answers 404
            if len(self._event_ids) > 2000:
                self._event_ids.clear()
            self._event_ids[slug] = found
        return found

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if scope.get("method") == "POST":
            await self._check(scope, receive)
        await next_app(scope, receive, send)

    async def _check(self, scope: Scope, receive: Receive) -> None:
        path: str = scope["path"].rstrip("/")
        client = client_of(scope)
        if path in _SUBSCRIBE_PATHS:
            await self._spend(SUBSCRIBE, client)
        elif path in _LINK_PATHS:
            await self._spend(LINK, client)
        elif path in _SIGNIN_PATHS:
            await self._spend(SIGNIN, client)
        elif found := _REGISTER_FORM.fullmatch(path) or _REGISTER_API.fullmatch(path):
            form = found.re is _REGISTER_FORM  # the page's form (by slug), else the API (by id)
            await self._spend(REGISTER, client)
            event = await self._event_key(found.group(1)) if form else found.group(1)
            await self._spend(REGISTER_EVENT, client, event)
            if await _asks_for_bulletin(Request(scope, receive), form):
                await self._spend(SUBSCRIBE, client, advice=", or register without asking for the bulletin")


def middleware(redis_url: str | None) -> list[Any]:
    """The limit middleware for an app, with counters in Redis when a URL is given."""
    return [RateLimits(counters_for(redis_url))]
