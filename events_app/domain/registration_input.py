"""What a person sends to register, checked: their name and address, and their answers to the
event's questions. Pure functions (no database); domain/registrations.py calls them before
taking a seat, so every door (API, form, staff tools) gets the same checks and messages."""

from __future__ import annotations

import re
from typing import Any

from . import validation as v
from .errors import ValidationFailed

MAX_TEXT_ANSWER = 5000
KEY_RE = re.compile(r"^[A-Za-z0-9_]{1,60}$")


def clean_answers(event: dict, raw: Any) -> dict:
    """Check answers against the event's questions (keys may be a question's key or label) and
    return them clean: text bounded and free of control characters, a single choice one of the
    options, a multiple choice the SET of ticked options (deduplicated, in the offered order,
    never longer than the options), yes/no a bool. Raises ValidationFailed with every bad field."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise v.fail("answers", "must be an object keyed by question")
    by_label = {q["label"]: q["key"] for q in event["questions"]}
    given = {by_label.get(k, k): val for k, val in raw.items()}
    known = {q["key"] for q in event["questions"]}
    unknown = sorted((k for k in given if k not in known), key=str)
    if unknown:
        # Name the key only when it is safe to echo (an answer page or JSON must encode it).
        key = unknown[0]
        shown = f"answers.{key}" if isinstance(key, str) and KEY_RE.match(key) else "answers"
        raise v.fail(shown, "is not a question of this event")
    answers: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for q in event["questions"]:
        field = f"answers.{q['key']}"
        try:
            value = _answer(q, given.get(q["key"]), field)
        except ValidationFailed as exc:
            errors.update(exc.fields)
            continue
        if value is not None:
            answers[q["key"]] = value
    if errors:
        raise ValidationFailed(errors)
    return answers


def _answer(q: dict, value: Any, field: str) -> Any:
    """One question's clean answer, None when unanswered (optional), or ValidationFailed."""
    if isinstance(value, str):
        value = value.strip()
    if value in (None, "", []):
        if q["required"]:
            raise v.fail(field, "is required")
        return None
    if q["type"] == "text":
        if not isinstance(value, str) or len(value) > MAX_TEXT_ANSWER:
            raise v.fail(field, f"must be text of at most {MAX_TEXT_ANSWER} characters")
        return v.clean_chars(value, field, multiline=True)
    if q["type"] == "single":
        if not isinstance(value, str) or value not in q["options"]:
            raise v.fail(field, "must be one of the offered choices")
        return value
    if q["type"] == "multiple":
        ticked = [value] if isinstance(value, str) else value
        # Bounded before anything else: a list can be megabytes long.
        if (
            not isinstance(ticked, list)
            or len(ticked) > len(q["options"])
            or not all(isinstance(x, str) and x in q["options"] for x in ticked)
        ):
            raise v.fail(field, f"must be a list of at most {len(q['options'])} of the offered choices")
        return [o for o in q["options"] if o in ticked]
    try:
        return v.boolean(value, field)
    except ValidationFailed:
        raise v.fail(field, "must be yes or no") from None


def clean_person(data: dict) -> tuple[str, str]:
    """(name, email): a one-line name of at most 200 characters and a deliverable address, or
    ValidationFailed with both fields' errors."""
    errors: dict[str, str] = {}
    name = email = ""
    try:
        name = v.text(data, "name", required=True, max_len=200, multiline=False)
    except ValidationFailed as exc:
        errors.update(exc.fields)
    try:
        email = v.email(data.get("email"))
    except ValidationFailed as exc:
        errors.update(exc.fields)
    if errors:
        raise ValidationFailed(errors)
    return name, email
