"""Staff accounts (argon2 password hashes) and their API tokens (stored as SHA-256)."""

from __future__ import annotations

from datetime import datetime, timezone

from argon2 import PasswordHasher

from .. import db, tokens
from . import validation as v
from .errors import NotFound, Unauthorized, ValidationFailed

_hasher = PasswordHasher()


def now() -> datetime:
    return datetime.now(timezone.utc)


async def create(email: str, password: str, name: str = "") -> dict:
    """Create a staff account. Raises ValidationFailed for a bad email, a short password or an
    address that already has an account."""
    address = v.email(email)
    if not isinstance(password, str) or len(password) < 10:
        raise ValidationFailed({"password": "must be at least 10 characters"})
    try:
        rows = await db.fetch(
            "INSERT INTO staff_user (email, name, password_hash, created_at) VALUES ({}, {}, {}, {}) "
            "RETURNING id, email, name",
            address, name or "", _hasher.hash(password), now(),
        )
    except Exception as exc:
        if db.is_unique_violation(exc):
            raise ValidationFailed({"email": "already has a staff account"}) from None
        raise
    return rows[0]


async def get_by_email(email: str) -> dict:
    rows = await db.fetch("SELECT id, email, name FROM staff_user WHERE email = {}", email.strip().lower())
    if not rows:
        raise NotFound(f"No staff account for {email}")
    return rows[0]


async def new_token(email: str, label: str = "") -> str:
    """Create an API token for the staff member and return it; only its hash is stored."""
    member = await get_by_email(email)
    token = tokens.new_random()
    await db.fetch(
        "INSERT INTO api_token (staff, label, token_hash, created_at) VALUES ({}, {}, {}, {})",
        member["id"], label or "", tokens.digest(token), now(),
    )
    return token


async def by_token(token: str) -> dict:
    """The staff member owning a live API token, or Unauthorized."""
    rows = await db.fetch(
        "SELECT s.id, s.email, s.name FROM api_token t JOIN staff_user s ON s.id = t.staff "
        "WHERE t.token_hash = {} AND t.revoked_at IS NULL",
        tokens.digest(token),
    )
    if not rows:
        raise Unauthorized("A valid staff API token is required")
    return rows[0]
