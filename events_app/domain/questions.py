"""An event's questions: their definitions (what staff may ask) and the answers to them (what a
registrant may send). Pure functions, no database. domain/events.py cleans definitions when an
event is created or changed; domain/registrations.py cleans answers before taking a seat, so
every door (API, form, staff tools) gets the same checks and messages."""

from __future__ import annotations

import re
from typing import Any

from . import validation as v
from .errors import ValidationFailed

TYPES = {"text", "single", "multiple", "yesno"}
# Caps on staff input where one slip would bloat every page and answer.
MAX_QUESTIONS, MAX_OPTIONS, MAX_OPTION_LEN, MAX_LABEL_LEN = 30, 50, 200, 300
MAX_TEXT_ANSWER = 5000
# A definition's key needs a letter or digit; an answer's key is only echoed when it looks like one.
DEFINITION_KEY_RE = re.compile(r"^(?=.*[A-Za-z0-9])[A-Za-z0-9_]{1,60}$")
ANSWER_KEY_RE = re.compile(r"^[A-Za-z0-9_]{1,60}$")
RESERVED_KEYS = {"name", "email", "subscribe"}  # the registration form's own fields


# Definitions ---------------------------------------------------------------------------------


def clean_definitions(value: Any) -> list[dict]:
    """Staff's questions checked and normalised: each `{key, label, type, required, options}`.
    Raises ValidationFailed naming the first bad field (`questions[i].label` etc.)."""
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
        label = (
            v.text(
                {f"{where}.label": q.get("label")},
                f"{where}.label",
                required=True,
                max_len=MAX_LABEL_LEN,
                multiline=False,
            )
            or ""
        )
        kind = q.get("type", "text")
        if not isinstance(kind, str) or kind not in TYPES:
            raise v.fail(f"{where}.type", f"must be one of {', '.join(sorted(TYPES))}")
        key = q.get("key") or v.slugify(label).replace("-", "_")[:60]
        if not isinstance(key, str) or not DEFINITION_KEY_RE.match(key):
            raise v.fail(f"{where}.key", "must be at most 60 letters, digits and underscores")
        if key in keys or key in RESERVED_KEYS:
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


# Answers -------------------------------------------------------------------------------------


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
        shown = f"answers.{key}" if isinstance(key, str) and ANSWER_KEY_RE.match(key) else "answers"
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
