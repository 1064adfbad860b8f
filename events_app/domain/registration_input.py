"""Who registers: the person's name and address, checked. A pure function (no database);
domain/registrations.py calls it, with questions.clean_answers for the answers, before taking a
seat, so every door (API, form, staff tools) gets the same checks and messages."""

from __future__ import annotations

from . import validation as v
from .errors import ValidationFailed


def clean_person(data: dict) -> tuple[str, str]:
    """(name, email): a one-line name of at most 200 characters and a deliverable address, or
    ValidationFailed with both fields' errors."""
    errors: dict[str, str] = {}
    name = email = ""
    try:
        name = v.text(data, "name", required=True, max_len=200, multiline=False) or ""
    except ValidationFailed as exc:
        errors.update(exc.fields)
    try:
        email = v.email(data.get("email"))
    except ValidationFailed as exc:
        errors.update(exc.fields)
    if errors:
        raise ValidationFailed(errors)
    return name, email
