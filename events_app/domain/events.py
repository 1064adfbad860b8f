"""Events: create, change, publish, cancel, and read.

An event row is returned as a plain dict with its JSON fields decoded. A change of time, title or
join link raises the event's `version` and every active registration's invite SEQUENCE, and
queues an "event changed" message per registered person in the same transaction; cancelling the
event queues a cancellation per registrant.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .. import clock, db
from . import outbox, registrations
from . import validation as v
from .errors import Conflict, NotFound, ValidationFailed

QUESTION_TYPES = {"text", "single", "multiple", "yesno"}
# Caps on staff input where one slip would mass-mail people or bloat every page and answer.
MAX_QUESTIONS, MAX_OPTIONS, MAX_OPTION_LEN, MAX_LABEL_LEN = 30, 50, 200, 300
MAX_REMINDERS, MIN_REMINDER, MAX_REMINDER = 5, 5, 30 * 24 * 60  # minutes before the start
KEY_RE = re.compile(r"^(?=.*[A-Za-z0-9])[A-Za-z0-9_]{1,60}$")
STATUSES = {"draft", "published"}
JSON_FIELDS = ("tags", "questions", "reminders")
# Fields whose change reaches people's calendars.
INVITE_FIELDS = ("starts_at", "ends_at", "title", "join_url", "timezone")


def decode(row: dict) -> dict:
    event = dict(row)
    for field in JSON_FIELDS:
        if isinstance(event.get(field), str):
            event[field] = json.loads(event[field])
    return event


def _questions(value: Any) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise v.fail("questions", "must be a list of questions")
    if len(value) > MAX_QUESTIONS:
        raise v.fail("questions", f"at most {MAX_QUESTIONS} questions")
    clean, keys = [], set()
    for i, q in enumerate(value):
        where = f"questions[{i}]"
        if not isinstance(q, dict):
            raise v.fail(where, "must be an object with label and type")
        label = v.text(
            {f"{where}.label": q.get("label")}, f"{where}.label", required=True, max_len=MAX_LABEL_LEN, multiline=False
        )
        kind = q.get("type", "text")
        if not isinstance(kind, str) or kind not in QUESTION_TYPES:
            raise v.fail(f"{where}.type", f"must be one of {', '.join(sorted(QUESTION_TYPES))}")
        key = q.get("key") or v.slugify(label).replace("-", "_")[:60]
        if not isinstance(key, str) or not KEY_RE.match(key):
            raise v.fail(f"{where}.key", "must be at most 60 letters, digits and underscores")
        if key in keys or key in {"name", "email", "subscribe"}:
            raise v.fail(f"{where}.key", f"{key!r} is used twice or reserved")
        keys.add(key)
        options = q.get("options") or []
        if kind in {"single", "multiple"}:
            options = _options(options, f"{where}.options")
        else:
            options = []
        clean.append(
            {"key": key, "label": label, "type": kind, "required": bool(q.get("required")), "options": options}
        )
    return clean


def _options(value: Any, field: str) -> list[str]:
    """Two to MAX_OPTIONS distinct one-line choices, each at most MAX_OPTION_LEN characters."""
    if not isinstance(value, list) or len(value) < 2 or not all(isinstance(o, str) and o.strip() for o in value):
        raise v.fail(field, "needs at least two non-empty choices")
    if len(value) > MAX_OPTIONS:
        raise v.fail(field, f"at most {MAX_OPTIONS} choices")
    options = [v.clean_chars(o.strip(), field, multiline=False) for o in value]
    if any(len(o) > MAX_OPTION_LEN for o in options):
        raise v.fail(field, f"each choice must be at most {MAX_OPTION_LEN} characters")
    if len(set(options)) != len(options):
        raise v.fail(field, "the choices must differ from each other")
    return options


def _reminders(value: Any) -> list[int]:
    """At most MAX_REMINDERS distinct offsets, each MIN_REMINDER minutes to 30 days before the
    start, latest first. A slip here emails every registrant once per offset."""
    if value is None:
        return [1440, 60]
    if not isinstance(value, list) or not all(isinstance(m, int) and not isinstance(m, bool) for m in value):
        raise v.fail("reminders", "must be a list of minutes before the start, e.g. [1440, 60]")
    offsets = sorted(set(value), reverse=True)
    if len(offsets) > MAX_REMINDERS:
        raise v.fail("reminders", f"at most {MAX_REMINDERS} reminders")
    if any(not MIN_REMINDER <= m <= MAX_REMINDER for m in offsets):
        raise v.fail(
            "reminders", f"each must be between {MIN_REMINDER} and {MAX_REMINDER} minutes (30 days) before the start"
        )
    return offsets


def clean_fields(data: dict, current: dict | None = None) -> dict:
    """Check the given fields (all of them on create, any subset on change) and return the
    columns to write. Raises ValidationFailed naming the first bad field."""
    if not isinstance(data, dict):
        raise ValidationFailed({"body": "must be a JSON object"})
    creating = current is None
    known = {
        "title",
        "slug",
        "summary",
        "description",
        "audience",
        "tags",
        "starts_at",
        "ends_at",
        "timezone",
        "capacity",
        "join_url",
        "registration_closes_at",
        "questions",
        "reminders",
        "recording_url",
        "status",
        "doors_open_minutes",
        "follow_up_minutes",
        "retention_days",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise v.fail(unknown[0], "is not a field of an event")
    out: dict[str, Any] = {}
    if creating or "title" in data:
        out["title"] = v.text(data, "title", required=True, max_len=300)
    tz = v.zone(data["timezone"]) if (creating or "timezone" in data) else current["timezone"]
    if creating or "timezone" in data:
        out["timezone"] = tz
    for field in ("starts_at", "ends_at"):
        if creating or field in data:
            out[field] = v.timestamp(data.get(field), field, tz)
    starts = out.get("starts_at") or current["starts_at"]
    ends = out.get("ends_at") or current["ends_at"]
    if ends <= starts:
        raise v.fail("ends_at", "must be after starts_at")
    if "slug" in data and data["slug"] not in (None, ""):
        out["slug"] = v.slug(data["slug"])
    for field, limit in (("summary", 1000), ("description", 50_000), ("audience", 1000)):
        if field in data:
            out[field] = v.text(data, field, max_len=limit) or ""
    if "tags" in data:
        out["tags"] = json.dumps(v.string_list(data["tags"], "tags"))
    if "capacity" in data:
        out["capacity"] = v.optional_int(data["capacity"], "capacity", minimum=0)
    for field in ("join_url", "recording_url"):
        if field in data:
            out[field] = v.url(data[field], field)
    if "registration_closes_at" in data:
        value = data["registration_closes_at"]
        out["registration_closes_at"] = (
            None if value in (None, "") else v.timestamp(value, "registration_closes_at", tz)
        )
    if "questions" in data:
        out["questions"] = json.dumps(_questions(data["questions"]))
    if creating or "reminders" in data:
        out["reminders"] = json.dumps(_reminders(data.get("reminders")))
    if "doors_open_minutes" in data:
        out["doors_open_minutes"] = (
            v.optional_int(data["doors_open_minutes"], "doors_open_minutes", maximum=24 * 60) or 0
        )
    if "follow_up_minutes" in data:
        out["follow_up_minutes"] = (
            v.optional_int(data["follow_up_minutes"], "follow_up_minutes", maximum=14 * 24 * 60) or 0
        )
    if "retention_days" in data:
        # Days after the event its registrants' personal data is kept; None: the default setting.
        out["retention_days"] = v.optional_int(data["retention_days"], "retention_days", minimum=1, maximum=3650)
    if "status" in data:
        if not isinstance(data["status"], str) or data["status"] not in STATUSES:
            raise v.fail("status", "must be 'draft' or 'published' (cancel with /cancel)")
        out["status"] = data["status"]
    return out


async def _unique_slug(base: str, exclude_id: int | None = None) -> str:
    candidate, n = base, 1
    while True:
        rows = await db.fetch("SELECT id FROM event WHERE slug = {}", candidate)
        if not rows or rows[0]["id"] == exclude_id:
            return candidate
        n += 1
        candidate = f"{base}-{n}"


async def create(data: dict) -> dict:
    """Create an event (draft unless `status` is published) and return it."""
    fields = clean_fields(data)
    if "slug" in fields:
        if await db.fetch("SELECT id FROM event WHERE slug = {}", fields["slug"]):
            raise v.fail("slug", "is taken by another event")
    else:
        fields["slug"] = await _unique_slug(v.slugify(fields["title"]))
    moment = clock.now()
    fields.update(
        created_at=moment, updated_at=moment, version=1, taken=0, calendar_uid=registrations.new_calendar_uid()
    )
    fields.setdefault("status", "draft")
    columns = list(fields)
    try:
        rows = await db.fetch(
            f"INSERT INTO event ({', '.join(columns)}) VALUES ({', '.join('{}' for _ in columns)}) RETURNING id",
            *fields.values(),
        )
    except Exception as exc:
        if db.is_unique_violation(exc):
            raise v.fail("slug", "is taken by another event") from None
        raise
    return await get(rows[0]["id"])


async def get(event_id: int) -> dict:
    rows = await db.fetch("SELECT * FROM event WHERE id = {}", event_id)
    if not rows:
        raise NotFound("No such event")
    return decode(rows[0])


_CACHE: dict[int, dict] = {}


async def current(event_id: int, verify: bool = False) -> dict:
    """The event for taking a registration: re-read only when its `version` moved, since every
    change that matters to registering (status, times, questions, closing) raises it. The
    returned dict is shared: do not modify it, and do not rely on its `taken`.

    On PostgreSQL a cached published event is returned without asking (`verify` forces the
    check): the version test is a round trip there, and registrations.register checks the
    version inside its own statement and judges again on the current event when it moved."""
    cached = _CACHE.get(event_id)
    if not verify and cached is not None and cached["status"] == "published" and db.is_postgres():
        return cached
    rows = await db.fetch("SELECT version FROM event WHERE id = {}", event_id)
    if not rows:
        raise NotFound("No such event")
    # Events are never deleted, so an id always names the same event. (Whatever deletes one
    # must call forget().)
    if cached is not None and cached["version"] == rows[0]["version"]:
        return cached
    if len(_CACHE) > 1000:
        _CACHE.clear()
    event = _CACHE[event_id] = await get(event_id)
    return event


def forget(event_id: int | None = None) -> None:
    """Drop cached events (one, or all when None)."""
    if event_id is None:
        _CACHE.clear()
    else:
        _CACHE.pop(event_id, None)


async def get_by_slug(slug: str) -> dict:
    rows = await db.fetch("SELECT * FROM event WHERE slug = {}", slug)
    if not rows:
        raise NotFound("No such event")
    return decode(rows[0])


async def listing(include_drafts: bool = False) -> list[dict]:
    """Published (and cancelled) events, upcoming first (soonest first), then past (latest
    first). Staff also see drafts."""
    where = "" if include_drafts else "WHERE status != 'draft'"
    rows = [decode(r) for r in await db.fetch(f"SELECT * FROM event {where} ORDER BY starts_at")]
    moment = clock.now()
    upcoming = [e for e in rows if e["ends_at"] >= moment]
    past = [e for e in rows if e["ends_at"] < moment]
    return upcoming + past[::-1]


async def update(event_id: int, data: dict) -> tuple[dict, int]:
    """Apply a change. Returns the event and how many people were emailed about it."""
    async with db.transaction():
        current = await get(event_id)
        if current["status"] == "cancelled":
            raise Conflict("This event is cancelled and can no longer change", "cancelled")
        fields = clean_fields(data, current)
        if "slug" in fields and fields["slug"] != current["slug"]:
            if await db.fetch("SELECT id FROM event WHERE slug = {} AND id != {}", fields["slug"], event_id):
                raise v.fail("slug", "is taken by another event")
        changed = {k: val for k, val in fields.items() if _differs(current.get(k), val)}
        if not changed:
            return current, 0
        invite_changes = _invite_changes(current, fields)
        changed["updated_at"] = clock.now()
        sets = ", ".join(f"{k} = {{}}" for k in changed)
        await db.fetch(f"UPDATE event SET {sets}, version = version + 1 WHERE id = {{}}", *changed.values(), event_id)
        if "capacity" in changed:
            await registrations.promote_waitlisted(event_id)
        notified = 0
        if invite_changes and current["status"] == "published":
            notified = await _notify_registered(event_id, "event_changed", {"changes": invite_changes})
        forget(event_id)  # this process stops trusting its copy at once (current() on PostgreSQL)
        return await get(event_id), notified


def _invite_changes(current: dict, fields: dict) -> list[str]:
    """The fields of a change that reach people's calendars (update and its preview agree)."""
    return [k for k in INVITE_FIELDS if k in fields and _differs(current.get(k), fields[k])]


def _differs(old: Any, new: Any) -> bool:
    if isinstance(old, (list, dict)):
        return json.dumps(old) != new
    return old != new


async def _notify_registered(event_id: int, kind: str, extra: dict, statuses=("registered",)) -> int:
    """Raise the SEQUENCE of every registration in `statuses` and queue one `kind` message each.
    Runs inside the caller's transaction."""
    marks = ", ".join("{}" for _ in statuses)
    rows = await db.fetch(
        f"UPDATE registration SET sequence = sequence + 1, updated_at = {{}} "
        f"WHERE event = {{}} AND status IN ({marks}) RETURNING id, email, status",
        clock.now(),
        event_id,
        *statuses,
    )
    for row in rows:
        await outbox.enqueue(kind, row["email"], {"registration_id": row["id"], "status": row["status"], **extra})
    return len(rows)


async def count_affected(event_id: int, data: dict) -> int:
    """How many people a change would email (shown to staff before they save)."""
    current = await get(event_id)
    if current["status"] != "published" or not _invite_changes(current, clean_fields(data, current)):
        return 0
    rows = await db.fetch("SELECT COUNT(*) AS n FROM registration WHERE event = {} AND status = 'registered'", event_id)
    return rows[0]["n"]


async def publish(event_id: int) -> dict:
    event = await get(event_id)
    if event["status"] == "cancelled":
        raise Conflict("A cancelled event cannot be published again", "cancelled")
    if event["status"] != "published":
        await db.fetch(
            "UPDATE event SET status = 'published', version = version + 1, updated_at = {} WHERE id = {}",
            clock.now(),
            event_id,
        )
    return await get(event_id)


async def cancel(event_id: int) -> tuple[dict, int]:
    """Cancel the event: every registered and waitlisted person is told, registered people with
    a calendar CANCEL. Idempotent."""
    async with db.transaction():
        event = await get(event_id)
        if event["status"] == "cancelled":
            return event, 0
        await db.fetch(
            "UPDATE event SET status = 'cancelled', version = version + 1, updated_at = {} WHERE id = {}",
            clock.now(),
            event_id,
        )
        notified = 0
        if event["status"] == "published":
            notified = await _notify_registered(event_id, "event_cancelled", {}, statuses=("registered", "waitlisted"))
        forget(event_id)
        return await get(event_id), notified


def seats_left(event: dict) -> int | None:
    """Free seats, or None for unlimited capacity."""
    if event["capacity"] is None:
        return None
    return max(event["capacity"] - event["taken"], 0)
