"""The API's request bodies as msgspec Structs: their shape (types, lengths, ranges, choices) is
checked here, at the edge, and documented in /schema/openapi.json as named components. What the
values mean (a real time zone, an end after the start, answers to this event's questions, a
free slug) is the domain's business: handlers hand it plain dicts (`fields`) with only the
fields the caller sent, so its signatures and messages do not change.

Litestar decodes a body once (its JSON is cached on the request) and converts it into a Struct in
lax mode (the string "5" becomes the integer 5, 1 becomes true), which is not what the document
promises. `checked` makes the answer strict without converting again: given Litestar's Struct,
it walks the decoded JSON against the model's types (`_agrees`) and keeps that Struct when no
value is one that lax mode coerces; only then (a string or an integer where a number or a
boolean belongs, a whole float such as 5.0) does it convert the JSON strictly, as before. Both
passes report errors the same way (`reasons`): `{"title": "must be a string"}`, keyed by the
JSON path (`questions[0].options`). Unknown fields are refused where the domain refused them before
(events, issues) and ignored where it ignored them (registrations, subscriptions).

The answers are in web/responses.py; error answers share `Problem`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import available_timezones

import msgspec
from litestar import Request
from litestar.openapi.spec import Example
from litestar.params import Body
from msgspec import UNSET, Meta, Struct, UnsetType
from msgspec import inspect as types

from ..domain.errors import ValidationFailed

S = TypeVar("S", bound=Struct)

# Lengths and ranges are enforced here, as msgspec constraints. The forms of text (one line, no
# control characters, an address, a slug, an ISO time, an IANA zone) are the domain's checks,
# with its own messages and every bad field at once (domain/validation.py); `_doc` writes them
# into the document as patterns and choices, so that what the document calls valid is accepted.
# The domain trims text before checking it, so whitespace (tabs and line breaks included) may
# surround any of these.
ONE_LINE = r"^\s*[^\x00-\x1f\x7f-\x9f\u2028\u2029]*\s*$"
FILLED_LINE = (
    r"^\s*[^\x00-\x1f\x7f-\x9f\u2028\u2029]*[^\s\x00-\x1f\x7f-\x9f\u2028\u2029][^\x00-\x1f\x7f-\x9f\u2028\u2029]*\s*$"
)
TEXT = r"^\s*[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*\s*$"
EMAIL = r"^\s*[!#-'*+\-./0-9=?A-Z^-~]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}\s*$"
SLUG = r"^(?:[a-z0-9]+(?:-[a-z0-9]+)*)?$"
URL = r"^\s*(?:https?://[^\s/$.?#\x00-\x1f\x7f-\x9f][^\s\x00-\x1f\x7f-\x9f]+)?\s*$"
MOMENT = (
    r"^\s*(?:19[7-9][0-9]|20[0-9][0-9])-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])[T ](?:[01][0-9]|2[0-3]):[0-5][0-9]"
    r"(?::[0-5][0-9](?:\.[0-9]{1,6})?)?(?:Z|[+-](?:0[0-9]|1[0-4]):?[0-5][0-9])?\s*$"
)
KEY = r"^(?:[A-Za-z0-9_]*[A-Za-z0-9][A-Za-z0-9_]*)?$"
# Etc/GMT+5 and its kind are left out: generated clients turn choices into identifiers, and
# "GMT+5" and "GMT-5" would become the same one (the domain still accepts them).
ZONES = sorted(z for z in available_timezones() | {"UTC"} if not re.search(r"[+-][0-9]", z))


def _doc(description: str | None = None, *, examples: list | None = None, **schema: Any) -> Any:
    """Meta documenting what the domain checks (`schema`: Litestar Schema attributes such as
    pattern, enum, items, max_items); msgspec does not enforce these."""
    return Meta(description=description, examples=examples, extra_json_schema={"extra": schema})


def _minimum(low: int, high: int, description: str) -> Any:
    # Litestar leaves out a minimum of 0 when it writes the schema; the extra puts it back.
    return Meta(ge=low, le=high, description=description, extra_json_schema={"extra": {"minimum": low}})


Title = Annotated[
    str, Meta(max_length=300), _doc("One line", examples=["Non-Academic Careers with Impact"], pattern=FILLED_LINE)
]
Slug = Annotated[
    str,
    Meta(max_length=120),
    _doc("Lower-case letters, digits and single hyphens; empty or null: from the title", pattern=SLUG),
]


_MOMENT_TEXT = "ISO 8601, 1970 to 2100; without an offset it is read in the event's time zone"
Moment = Annotated[str, Meta(max_length=64), _doc(_MOMENT_TEXT, examples=["2030-11-29T12:00:00-05:00"], pattern=MOMENT)]
# An example after Moment's: together they make a valid event.
EndMoment = Annotated[
    str, Meta(max_length=64), _doc(_MOMENT_TEXT, examples=["2030-11-29T13:00:00-05:00"], pattern=MOMENT)
]
# Where an empty time means none (registration_closes_at, release_at).
OptionalMoment = Annotated[
    str,
    Meta(max_length=64),
    _doc(
        "ISO 8601, 1970 to 2100; empty or null: none",
        examples=["2030-11-28T12:00:00-05:00"],
        pattern=f"^(?:{MOMENT[1:-1]})?$",
    ),
]
Zone = Annotated[str, Meta(max_length=64), _doc("An IANA time zone name", examples=["America/Toronto"], enum=ZONES)]
Url = Annotated[str, Meta(max_length=2000), _doc("An http:// or https:// address, or empty", pattern=URL)]
Email = Annotated[str, Meta(max_length=320), _doc("One address", examples=["ada@example.org"], pattern=EMAIL)]
Name = Annotated[str, Meta(max_length=200), _doc("One line", examples=["Ada Lovelace"], pattern=FILLED_LINE)]
OptionalName = Annotated[str, Meta(max_length=200), _doc("One line, or empty", pattern=ONE_LINE)]
OptionalEmail = Annotated[
    str,
    Meta(max_length=320),
    _doc("One address; empty: the signed-in member's", pattern=f"^(?:{EMAIL[1:-1]})?$"),
]
TopicSlug = Annotated[str, Meta(max_length=64, examples=["bulletin"])]


# Text that may span lines, at most so many characters.
ShortText = Annotated[str, Meta(max_length=1000), _doc(pattern=TEXT)]
Markdown = Annotated[str, Meta(max_length=50_000), _doc("Markdown", pattern=TEXT)]
IssueSummary = Annotated[str, Meta(max_length=2000), _doc(pattern=TEXT)]
IssueBody = Annotated[str, Meta(max_length=200_000), _doc("Markdown", pattern=TEXT)]


Capacity = Annotated[int, _minimum(0, 1_000_000, "Seats; null: unlimited")]
DoorsOpen = Annotated[int, _minimum(0, 24 * 60, "Minutes before the start the join link opens")]
FollowUp = Annotated[int, _minimum(0, 14 * 24 * 60, "Minutes after the end the follow-up email goes")]
RetentionDays = Annotated[int, Meta(ge=1, le=3650, description="Days after the event personal data is kept")]
Tags = Annotated[
    list[str],
    Meta(max_length=20),
    _doc("Short words, at most 50 characters each", items={"type": "string", "pattern": ONE_LINE}),
]
Reminders = Annotated[
    list[int],
    _doc(
        "Minutes before the start, 5 to 43200 (30 days); at most 5 different ones",
        items={"type": "integer", "minimum": 5, "maximum": 43_200},
    ),
]
Options = Annotated[
    list[str],
    Meta(max_length=50),
    _doc("For single and multiple choice: two or more different one-line choices (ignored for other types)"),
]


class QuestionIn(Struct, kw_only=True):
    """A question on the registration form; `options` for single and multiple choice (2 to 50)."""

    label: Annotated[str, Meta(max_length=300), _doc(pattern=FILLED_LINE)]
    type: Literal["text", "single", "multiple", "yesno"] = "text"
    key: Annotated[str, Meta(max_length=60), _doc("Letters, digits and underscores", pattern=KEY)] | None = None
    required: bool = False
    options: Options | None = None


# An image: an http(s) address, or the /media/ path of one uploaded in the workspace.
MEDIA = r"/media/[A-Za-z0-9_-]{1,128}\.(?:jpg|jpeg|png|webp|gif)"
ImageUrl = Annotated[
    str,
    Meta(max_length=2000),
    _doc(
        "An http:// or https:// address, the /media/ path of an uploaded image, or empty",
        pattern=URL.replace(")?\\s*$", f"|{MEDIA})?\\s*$"),
    ),
]
OptionalLine = Annotated[str, Meta(max_length=200), _doc("One line, or empty", pattern=ONE_LINE)]


class SpeakerIn(Struct, kw_only=True, forbid_unknown_fields=True):
    """A host or speaker shown on the event page (and as a performer in its JSON-LD)."""

    name: Name
    role: OptionalLine | None = None
    bio: Annotated[str, Meta(max_length=600), _doc("A short bio", pattern=TEXT)] | None = None
    photo_url: ImageUrl | None = None


class _EventFields(Struct, kw_only=True, forbid_unknown_fields=True):
    slug: Slug | None | UnsetType = UNSET
    summary: ShortText | None | UnsetType = UNSET
    description: Markdown | None | UnsetType = UNSET
    audience: ShortText | None | UnsetType = UNSET
    tags: Tags | None | UnsetType = UNSET
    capacity: Capacity | None | UnsetType = UNSET
    join_url: Url | None | UnsetType = UNSET
    registration_closes_at: OptionalMoment | None | UnsetType = UNSET
    questions: Annotated[list[QuestionIn], Meta(max_length=30)] | None | UnsetType = UNSET
    reminders: Reminders | None | UnsetType = UNSET
    recording_url: Url | None | UnsetType = UNSET
    doors_open_minutes: DoorsOpen | None | UnsetType = UNSET
    follow_up_minutes: FollowUp | None | UnsetType = UNSET
    retention_days: RetentionDays | None | UnsetType = UNSET
    cover_image_url: ImageUrl | None | UnsetType = UNSET
    cover_alt: (
        Annotated[str, Meta(max_length=300), _doc("What the cover shows", pattern=ONE_LINE)] | None | UnsetType
    ) = UNSET
    speakers: Annotated[list[SpeakerIn], Meta(max_length=12)] | None | UnsetType = UNSET
    show_registered_count: bool | None | UnsetType = UNSET
    status: Literal["draft", "published"] | UnsetType = UNSET


class EventIn(_EventFields, kw_only=True, forbid_unknown_fields=True):
    """A new event (a draft unless `status` is published)."""

    title: Title
    starts_at: Moment
    ends_at: EndMoment
    timezone: Zone


class EventChange(_EventFields, kw_only=True, forbid_unknown_fields=True):
    """Any fields of an event; those not sent stay as they are."""

    title: Title | UnsetType = UNSET
    starts_at: Moment | UnsetType = UNSET
    ends_at: EndMoment | UnsetType = UNSET
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
    name: OptionalName | None = None
    topics: Annotated[list[TopicSlug], Meta(min_length=1, max_length=20)] | None = None


class _IssueFields(Struct, kw_only=True, forbid_unknown_fields=True):
    slug: Slug | None | UnsetType = UNSET
    issue_date: Annotated[str, Meta(pattern=r"^(\d{4}-\d{2}-\d{2})?$", examples=["2019-10-15"])] | None | UnsetType = (
        UNSET
    )
    summary: IssueSummary | None | UnsetType = UNSET
    body: IssueBody | None | UnsetType = UNSET
    topic: TopicSlug | None | UnsetType = UNSET


class IssueIn(_IssueFields, kw_only=True, forbid_unknown_fields=True):
    """A new issue (a draft)."""

    title: Title


class IssueChange(_IssueFields, kw_only=True, forbid_unknown_fields=True):
    """Any fields of an issue (`topic` only before release); those not sent stay as they are."""

    title: Title | UnsetType = UNSET


class SendTestIn(Struct, kw_only=True):
    """Where to send a test; no address: the signed-in staff member's."""

    email: OptionalEmail | None = None


class ReleaseIn(Struct, kw_only=True):
    """When to release; no time: now."""

    release_at: OptionalMoment | None = None


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


async def checked(request: Request, model: type[S], data: S | None = None) -> S:
    """The request's JSON as `model`, converted strictly (no string for a number or a boolean);
    ValidationFailed naming the field otherwise. An empty body is the model's defaults.

    `data`: what Litestar made of the same body (the handler's `data`). It is the answer when
    strict conversion would give the same Struct, which `_agrees` tells from the decoded JSON
    Litestar cached (the body is neither read nor decoded again); the JSON is converted a second
    time only when it holds a value that lax mode coerced."""
    raw = await request.json()
    if raw is None:
        raw = {}
    if data is not None and type(data) is model and isinstance(raw, dict) and _agrees(raw, _info(model)):
        return data
    return strict(raw, model)


def strict(raw: Any, model: type[S]) -> S:
    """`raw` (decoded JSON) as `model`, converted strictly after whole floats became integers;
    ValidationFailed naming the field otherwise."""
    try:
        return msgspec.convert(_whole_numbers(raw), model, strict=True)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at ")
        raise ValidationFailed(dict([reasons(message, where.strip("`"))])) from None


def _whole_numbers(value: Any, key: str = "") -> Any:
    """JSON Schema counts 5.0 as an integer, and so does the document: such floats become ints
    (not inside `answers`, whose values are the person's own)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    if isinstance(value, dict) and key != "answers":
        return {k: _whole_numbers(item, k) for k, item in value.items()}
    return value


_INFOS: dict[type, Any] = {}


def _info(model: type) -> Any:
    info = _INFOS.get(model)
    if info is None:
        info = _INFOS[model] = types.type_info(model)
    return info


def _kinds(info: Any) -> tuple:
    """The alternatives of a type, constraints (Metadata) taken off."""
    while isinstance(info, types.Metadata):
        info = info.type
    if isinstance(info, types.UnionType):
        return tuple(kind for alternative in info.types for kind in _kinds(alternative))
    return (info,)


def _whole(value: Any) -> bool:
    return type(value) is float and value.is_integer() and abs(value) < 2**63


Check = Callable[[Any, str, bool], bool]
_CHECKS: dict[int, tuple[Any, Check]] = {}


def _agrees(value: Any, info: Any, key: str = "", kept: bool = False) -> bool:
    """Whether `value` (decoded JSON, found under `key`), converted to the type `info` after
    `_whole_numbers`, gives in strict mode what lax mode gave, given that lax mode accepted it:
    `_whole_numbers` leaves it as it is (no whole float outside `answers`; `kept`: inside them)
    and every value has a JSON type that strict mode takes as it is (a string where a string
    belongs, an integer where a number does, ...). False when unsure: the caller then converts
    strictly."""
    return _check(info)(value, key, kept)


def _check(info: Any) -> Check:
    """`_agrees` for one type, worked out once (this runs on every typed request)."""
    known = _CHECKS.get(id(info))
    if known is not None:
        return known[1]
    kinds = _kinds(info)
    has = lambda *classes: any(isinstance(kind, classes) for kind in kinds)  # noqa: E731
    anything, none_ok, str_ok = has(types.AnyType), has(types.NoneType), has(types.StrType, types.LiteralType)
    bool_ok, int_ok, float_ok = has(types.BoolType), has(types.IntType, types.FloatType), has(types.FloatType)
    lists = [kind for kind in kinds if isinstance(kind, types.ListType)]
    shapes = [kind for kind in kinds if isinstance(kind, (types.StructType, types.DictType))]
    items = lists[0].item_type if len(lists) == 1 else None
    shape = shapes[0] if len(shapes) == 1 else None
    scalars = {type(None): none_ok, str: str_ok, bool: bool_ok, int: int_ok, float: float_ok}
    # A Struct's fields by name (their checks are made at first use: _check(type) is cached).
    fields = {field.encode_name: field.type for field in shape.fields} if isinstance(shape, types.StructType) else {}

    def check(value: Any, key: str, kept: bool) -> bool:
        kind = type(value)
        if not kept and kind is float and _whole(value):
            return False
        if anything:
            return kept or _agrees_any(value, key)
        if kind in scalars:
            return scalars[kind]
        if kind is list:
            if items is None:
                return False
            inner = _check(items)
            for item in value:
                if not inner(item, "", kept):
                    return False
            return True
        if kind is dict and shape is not None:
            kept_inside = kept or key == "answers"
            if isinstance(shape, types.DictType):
                inner = _check(shape.value_type)
                for k, v in value.items():
                    if type(k) is not str or not inner(v, k, kept_inside):
                        return False
                return True
            for k, v in value.items():
                field = fields.get(k)  # fields the model does not name are ignored by both modes
                if field is not None and not _check(field)(v, k, kept_inside):
                    return False
            return True
        return False

    _CHECKS[id(info)] = (info, check)  # the type is held, so that its id is never reused
    return check


def _agrees_any(value: Any, key: str) -> bool:
    """For a value typed Any: whether `_whole_numbers` leaves it as it is."""
    if _whole(value):
        return False
    if isinstance(value, list):
        return all(_agrees_any(item, "") for item in value)
    if isinstance(value, dict) and key != "answers":
        return all(_agrees_any(item, k) for k, item in value.items())
    return True


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
        if message.strip("'") == "data":  # Litestar's word for a body that is missing altogether
            return field, "is required"
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
