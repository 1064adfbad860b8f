"""What the API answers, as msgspec Structs: the return types of the handlers, and so the named
response schemas of /schema/openapi.json (and of any client generated from it). Handlers build
the answers as dicts (web/present.py, web/issues_api.py); these classes document them, and
tests/api/ checks every answer against them. A field with a default may be absent: `join_url`
and the counts only for staff, `delivery` only on one issue, `notified` after a change.

`ERRORS` documents the error answers every operation may give (web/errors.py builds them):
400 invalid input naming each field, 401 without a valid staff token, 404, 409 with a reason,
413 a body past the route's limit, 429 past a per-client limit, 503 the database briefly away.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any, Literal

from litestar.openapi.datastructures import ResponseSpec
from msgspec import Meta, Struct

Time = Annotated[str, Meta(extra_json_schema={"extra": {"format": "date-time"}})]


class Problem(Struct, kw_only=True):
    """An error: `errors` maps each bad field to its reason (400); `reason` says why a valid
    request cannot be done now (409: closed, cancelled, draft, past...)."""

    status_code: int
    detail: str
    errors: dict[str, str] | None = None
    reason: str | None = None


def _problem(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=Problem, description=description, generate_examples=False)


ERRORS = {
    400: _problem("Invalid input: `errors` names each field with its reason"),
    401: _problem("A staff bearer token is required"),
    404: _problem("No such thing (or not visible to you)"),
    409: _problem("Valid, but not now: `reason` says why"),
    413: _problem("The body is larger than this operation takes"),
    429: _problem("Too many requests from this client: try again later"),
    503: _problem("The database is briefly unavailable: try again after Retry-After seconds"),
}

# Staff operations name the bearer token scheme (app.py declares it).
STAFF: list[dict[str, list[str]]] = [{"BearerToken": []}]


def answer(model: Any, status: int = 200) -> dict[int, ResponseSpec]:
    """An operation's documented answers: `model` (a Struct below, or a list of one) with
    `status`, and the error answers. The handlers build plain dicts; this says their shape."""
    ok = ResponseSpec(data_container=model, description=HTTPStatus(status).phrase, generate_examples=False)
    return {**ERRORS, status: ok}


class Health(Struct):
    status: Literal["ok"]


class Question(Struct, kw_only=True):
    key: str
    label: str
    type: Literal["text", "single", "multiple", "yesno"]
    required: bool
    options: list[str]


class Speaker(Struct, kw_only=True):
    """A host or speaker: `photo_url` an http(s) address or an uploaded image's /media/ path."""

    name: str
    role: str
    bio: str
    photo_url: str


class Event(Struct, kw_only=True):
    """An event. `join_url`, `retention_days` and the registration counts are shown to staff only."""

    id: int
    slug: str
    title: str
    summary: str
    description: Annotated[str, Meta(description="Markdown")]
    audience: str
    tags: list[str]
    timezone: str
    capacity: int | None
    questions: list[Question]
    reminders: list[int]
    recording_url: str
    status: Literal["draft", "published", "cancelled"]
    version: int
    doors_open_minutes: int
    follow_up_minutes: int
    cover_image_url: str
    cover_alt: str
    speakers: list[Speaker]
    show_registered_count: bool
    cancellation_note: str
    starts_at: Time
    ends_at: Time
    registration_closes_at: Time | None
    created_at: Time
    updated_at: Time
    seats_left: int | None
    registered: int
    url: str
    when: str
    join_url: str = ""
    retention_days: int | None = None
    waitlisted: int = 0
    cancelled: int = 0


class EventChanged(Event, kw_only=True):
    """The event after a change or cancellation, with how many registrants were emailed."""

    notified: int = 0


class WouldEmail(Struct):
    would_email: int


class Registration(Struct, kw_only=True):
    """The answer to a registration, built from what was sent: `id` is always null, and a repeat
    answers as a new address would now (the address's owner learns the truth by email)."""

    id: None
    event_id: int
    name: str
    email: str
    status: Literal["registered", "waitlisted"]
    answers: dict[str, Any]
    waitlist_position: int | None


class Registrant(Struct, kw_only=True):
    """A registration as staff see it."""

    id: int
    name: str | None
    email: str | None
    status: Literal["registered", "waitlisted", "cancelled"]
    answers: dict[str, Any]
    subscribe: bool | int
    created_at: Time
    cancelled_at: Time | None
    promoted_at: Time | None
    attended_at: Time | None
    waitlist_position: int | None


class Subscribed(Struct, kw_only=True):
    """The same answer for any address: what was sent, cleaned, and what happens next."""

    email: str
    name: str
    topics: list[str]
    detail: str


class StatusCounts(Struct, kw_only=True):
    confirmed: int
    paused: int
    pending: int
    unsubscribed: int


class Topic(Struct, kw_only=True):
    id: int
    slug: str
    name: str
    description: str
    counts: StatusCounts


class Topics(Struct):
    topics: list[Topic]


class Subscriber(Struct, kw_only=True):
    id: int
    email: str | None
    name: str | None
    status: Literal["confirmed", "paused", "pending", "unsubscribed"]
    topics: list[str]
    source: str
    created_at: Time
    confirmed_at: Time | None
    paused_until: Time | None
    unsubscribed_at: Time | None


class Subscribers(Struct, kw_only=True):
    """One page; pass `next_after` as `after` for the next (null on the last page)."""

    subscribers: list[Subscriber]
    next_after: int | None


class Delivery(Struct, kw_only=True):
    """A mailing's ledger counts and state (all zero, status of the issue, before release)."""

    queued: int
    sending: int
    sent: int
    failed: int
    skipped: int
    total: int
    mailing: int | None
    status: str
    paused_until: Time | None
    release_at: Time | None = None
    expanded: bool = False
    pause_reason: str | None = None
    finished_at: Time | None = None


class Issue(Struct, kw_only=True):
    """A bulletin issue; `delivery` on GET of one issue."""

    id: int
    slug: str
    title: str
    issue_date: str
    summary: str
    body: Annotated[str, Meta(description="Markdown")]
    status: Literal["draft", "scheduled", "released"]
    release_at: Time | None
    released_at: Time | None
    version: int
    created_at: Time
    updated_at: Time
    topic: str
    url: str
    delivery: Delivery | None = None


class MailPreview(Struct):
    subject: str
    text: str
    html: str


class QueuedTest(Struct):
    queued: int
    email: str


class Recipients(Struct):
    recipients: int


class Released(Struct, kw_only=True):
    id: int
    status: Literal["released", "scheduled"]
    release_at: Time | None
    mailing: int
    recipients: int


class Queued(Struct):
    queued: int


class Announced(Struct, kw_only=True):
    mailing: int
    recipients: int
    status: str
