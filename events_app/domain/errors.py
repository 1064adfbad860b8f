"""Errors the domain raises; `web/errors.py` maps each kind to one HTTP answer."""

from __future__ import annotations


class DomainError(Exception):
    """Base class. `message` is safe to show to the person who caused it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationFailed(DomainError):
    """Input that cannot be accepted; `fields` maps a field name to its reason."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


class NotFound(DomainError):
    pass


class Conflict(DomainError):
    """The request is valid but the state forbids it (closed, cancelled, draft...)."""

    def __init__(self, message: str, reason: str = "conflict") -> None:
        super().__init__(message)
        self.reason = reason


class Unauthorized(DomainError):
    pass


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` means the database cannot be reached just now (the web answers 503 "try
    again" instead of 500). The test lives with the database code; this is the domain's name for it."""
    from .. import db

    return db.is_outage(exc)
