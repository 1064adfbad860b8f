"""The API's request bodies as msgspec Structs: their shape (types, lengths, ranges, choices) is
checked here, at the edge, and documented in /schema/openapi.json as named components. What the
values mean (a real time zone, an end after the start, answers to this event's questions, a
free slug) is the domain's business: handlers hand it plain dicts (`fields`) with only the
fields the caller sent, so its signatures and messages do not change.

Litestar converts a body into a Struct in lax mode (the string "5" becomes the integer 5), which
is not what the document promises. `checked` converts the same JSON again, strictly; both passes
report errors the same way (`reasons`): `{"title": "must be a string"}`, keyed by the JSON path
(`questions[0].options`). Unknown fields are refused where the domain refused them before
(events, issues) and ignored where it ignored them (registrations, subscriptions).

The answers are in web/responses.py; error answers share `Problem`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from litestar import Request
from litestar.openapi.spec import Example
from litestar.params import Body
from msgspec import UNSET, Meta, Struct, UnsetType

from ..domain.errors import ValidationFailed

S = TypeVar("S", bound=Struct)

# Lengths as the domain caps them (domain/events.py, issues.py, validation.py, registration_input.py).
Title = Annotated[str, Meta(max_length=300, description="One line", examples=["Non-Academic Careers with Impact"])]
Slug = Annotated[
    str,
    Meta(max_length=120, description="Lower-case letters, digits and single hyphens; empty or null: from the title"),
]
Moment = Annotated[
    str,
    Meta(
        max_length=64,
        description="ISO 8601; without an offset it is read in the event's time zone",
        examples=["2030-11-29T12:00:00-05:00"],
    ),
]
Zone = Annotated[str, Meta(max_length=64, description="An IANA time zone name", examples=["America/Toronto"])]
Url = Annotated[str, Meta(max_length=2000, description="An http:// or https:// address, or empty")]
Email = Annotated[str, Meta(max_length=320, description="One address", examples=["ada@example.org"])]
Name = Annotated[str, Meta(max_length=200, description="One line", examples=["Ada Lovelace"])]
TopicSlug = Annotated[str, Meta(max_length=64, examples=["bulletin"])]


def _minimum(low: int, high: int, description: str) -> Any:
    # Litestar leaves out a minimum of 0 when it writes the schema; the extra puts it back.
    return Meta(ge=low, le=high, description=description, extra_json_schema={"extra": {"minimum": low}})


Capacity = Annotated[int, _minimum(0, 1_000_000, "Seats; null: unlimited")]
DoorsOpen = Annotated[int, _minimum(0, 24 * 60, "Minutes before the start the join link opens")]
FollowUp = Annotated[int, _minimum(0, 14 * 24 * 60, "Minutes after the end the follow-up email goes")]
RetentionDays = Annotated[int, Meta(ge=1, le=3650, description="Days after the event personal data is kept")]


class QuestionIn(Struct, kw_only=True):
    """A question on the registration form; `options` for single and multiple choice (2 to 50)."""

    label: Annotated[str, Meta(max_length=300)]
    type: Literal["text", "single", "multiple", "yesno"] = "text"
    key: Annotated[str, Meta(max_length=60)] | None = None
    required: bool = False
    options: Annotated[list[str], Meta(max_length=50)] | None = None


class _EventFields(Struct, kw_only=True, forbid_unknown_fields=True):
    slug: Slug | None | UnsetType = UNSET
    summary: Annotated[str, Meta(max_length=1000)] | None | UnsetType = UNSET
    description: Annotated[str, Meta(max_length=50_000, description="Markdown")] | None | UnsetType = UNSET
    audience: Annotated[str, Meta(max_length=1000)] | None | UnsetType = UNSET
    tags: Annotated[list[str], Meta(max_length=20)] | None | UnsetType = UNSET
    capacity: Capacity | None | UnsetType = UNSET
    join_url: Url | None | UnsetType = UNSET
    registration_closes_at: Moment | None | UnsetType = UNSET
    questions: Annotated[list[QuestionIn], Meta(max_length=30)] | None | UnsetType = UNSET
    reminders: (
        Annotated[list[int], Meta(description="Minutes before the start, 5 to 43200; at most 5")] | None | UnsetType
    ) = UNSET
    recording_url: Url | None | UnsetType = UNSET
    doors_open_minutes: DoorsOpen | None | UnsetType = UNSET
    follow_up_minutes: FollowUp | None | UnsetType = UNSET
    retention_days: RetentionDays | None | UnsetType = UNSET
    status: Literal["draft", "published"] | UnsetType = UNSET


class EventIn(_EventFields, kw_only=True, forbid_unknown_fields=True):
    """A new event (a draft unless `status` is published)."""

    title: Title
    starts_at: Moment
    ends_at: Moment
    timezone: Zone


class EventChange(_EventFields, kw_only=True, forbid_unknown_fields=True):
    """Any fields of an event; those not sent stay as they are."""

    title: Title | UnsetType = UNSET
    starts_at: Moment | UnsetType = UNSET
    ends_at: Moment | UnsetType = UNSET
    timezone: Zone | UnsetType = UNSET


class RegistrationIn(Struct, kw_only=True):
    """A registration: the person, their answers keyed by question key (or label), and whether
    they want the bulletin too (a confirmation email asks them first)."""

    name: Name
    email: Email
    answers: dict[str, Any] | None = None
    subscribe: bool | None = None


class SubscribeIn(Struct, kw_only=True):
    """A subscription to confirm by email; `topics` default to ["bulletin"]."""

    email: Email
    name: Name | None = None
    topics: Annotated[list[TopicSlug], Meta(min_length=1, max_length=20)] | None = None


class _IssueFields(Struct, kw_only=True, forbid_unknown_fields=True):
    slug: Slug | None | UnsetType = UNSET
    issue_date: Annotated[str, Meta(pattern=r"^(\d{4}-\d{2}-\d{2})?$", examples=["2019-10-15"])] | None | UnsetType = (
        UNSET
    )
    summary: Annotated[str, Meta(max_length=2000)] | None | UnsetType = UNSET
    body: Annotated[str, Meta(max_length=200_000, description="Markdown")] | None | UnsetType = UNSET
    topic: TopicSlug | None | UnsetType = UNSET


class IssueIn(_IssueFields, kw_only=True, forbid_unknown_fields=True):
    """A new issue (a draft)."""

    title: Title


class IssueChange(_IssueFields, kw_only=True, forbid_unknown_fields=True):
    """Any fields of an issue (`topic` only before release); those not sent stay as they are."""

    title: Title | UnsetType = UNSET


class SendTestIn(Struct, kw_only=True):
    """Where to send a test; no address: the signed-in staff member's."""

    email: Email | None = None


class ReleaseIn(Struct, kw_only=True):
    """When to release; no time: now."""

    release_at: Moment | None = None


class RetryIn(Struct, kw_only=True):
    """Whether addresses that bounced are tried again too."""

    include_bounced: bool = False


class AnnounceIn(Struct, kw_only=True):
    """`again`: announce an event that was announced before."""

    again: bool = False


def example(value: dict) -> Any:
    """A handler's `Body(...)` with one whole valid body as the documented example (what a
    reader copies, and what Schemathesis sends first)."""
    return Body(examples=[Example(summary="A valid body", value=value)])


EVENT_EXAMPLE = {
    "title": "Non-Academic Careers with Impact",
    "starts_at": "2030-11-29T12:00:00",
    "ends_at": "2030-11-29T13:00:00",
    "timezone": "America/Toronto",
    "capacity": 100,
    "join_url": "https://meet.example.org/careers",
    "questions": [{"key": "stage", "label": "Career stage", "type": "single", "options": ["Student", "Graduate"]}],
    "status": "published",
}
CHANGE_EXAMPLE = {"summary": "Careers beyond academia, with three practitioners"}
REGISTRATION_EXAMPLE = {"name": "Ada Lovelace", "email": "ada@example.org", "subscribe": False}
SUBSCRIBE_EXAMPLE = {"email": "ada@example.org", "name": "Ada Lovelace", "topics": ["bulletin"]}
ISSUE_EXAMPLE = {"title": "October 2019", "issue_date": "2019-10-15", "body": "Hello **readers**."}


def fields(data: Struct | None) -> dict[str, Any]:
    """The fields the caller sent, as plain dicts and lists for the domain (UNSET ones left out,
    nested Structs such as questions as dicts)."""
    if data is None:
        return {}
    return msgspec.to_builtins(data)


async def checked(request: Request, model: type[S]) -> S:
    """The request's JSON as `model`, converted strictly (no string for a number or a boolean);
    ValidationFailed naming the field otherwise. An empty body is the model's defaults."""
    raw = await request.json()
    if raw is None:
        raw = {}
    try:
        return msgspec.convert(raw, model, strict=True)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at ")
        raise ValidationFailed(dict([reasons(message, where.strip("`"))])) from None


_PATH = re.compile(r"^\$\.?")
_INDEX = re.compile(r"\[\d+\]$")
_NAMED = re.compile(r"^Object (contains unknown|missing required) field `(.+)`$")
_TYPES = {
    "str": "must be a string",
    "int": "must be a whole number",
    "bool": "must be true or false",
    "array": "must be a list",
    "object": "must be an object",
    "float": "must be a number",
}


def reasons(message: str, where: str) -> tuple[str, str]:
    """(field, reason) for one msgspec error: `message` as msgspec says it ("Expected `str`, got
    `int`"), `where` the JSON path ("$.title", or a field name as Litestar reports it). An error
    about a list's item names the list, as the domain does."""
    field = _PATH.sub("", where)
    named = _NAMED.match(message)
    if named:
        prefix = f"{field}." if field and field != "data" else ""
        unknown = named.group(1) == "contains unknown"
        return prefix + named.group(2), "is not a field of this request" if unknown else "is required"
    if not field or field == "data":
        field = "body"
    field = _INDEX.sub("", field)
    if field == "body" and message.startswith("Expected `object`"):
        return field, "must be a JSON object"
    return field, _reason(message)


def _reason(message: str) -> str:
    found = re.match(r"^Expected `([a-z]+)(?: \| null)?`", message)
    nullable = " or null" if "| null`" in message else ""
    if found and ", got" in message:
        return _TYPES.get(found.group(1), "has the wrong type") + nullable
    bound = re.search(r"(<=|>=|<|>) (-?\d+)$", message)
    if bound and "length" in message:
        kind = "items" if message.startswith("Expected `array`") else "characters"
        return f"must have at most {bound.group(2)} {kind}" if "<" in bound.group(1) else "must not be empty"
    if bound:
        return f"must be at most {bound.group(2)}" if "<" in bound.group(1) else f"must be at least {bound.group(2)}"
    if message.startswith("Invalid enum value"):
        return "is not one of the allowed values"
    if "matching regex" in message:
        return "is not in the expected form"
    return message[:1].lower() + message[1:]
