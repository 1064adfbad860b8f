"""Staff accounts (argon2 password hashes), their browser sessions and their API tokens.

Secrets are never stored: a session cookie's value and an API token are random and only their
SHA-256 is kept. Failed sign-ins are counted per account; after `FREE_ATTEMPTS` in a row the next
attempt must wait a period that doubles with every further failure. Addresses without an account
are counted the same way in this process, so the answers never tell which addresses exist.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .. import db, tokens
from . import validation as v
from .errors import Conflict, NotFound, Unauthorized, ValidationFailed

_hasher = PasswordHasher()
# Verified against when the address has no account, so that both answers take as long.
_DUMMY_HASH = _hasher.hash("no account has this password")

MIN_PASSWORD = 10
FREE_ATTEMPTS = 5  # failures in a row before attempts are slowed down
BASE_DELAY = 30  # seconds of waiting after the fifth failure; doubles with each further one
MAX_DELAY = 3600
SESSION_HOURS = 12  # a session ends this long after it was last used
SESSION_MAX_DAYS = 14  # ... and in any case this long after signing in

# Failures for addresses without an account (email -> (count, last failure)), this process only.
_UNKNOWN: dict[str, tuple[int, datetime]] = {}


def now() -> datetime:
    return datetime.now(timezone.utc)


def _password(value: object, field: str = "password") -> str:
    if not isinstance(value, str) or len(value) < MIN_PASSWORD:
        raise ValidationFailed({field: f"must be at least {MIN_PASSWORD} characters"})
    if len(value) > 1000:
        raise ValidationFailed({field: "must be at most 1000 characters"})
    return value


async def create(email: str, password: str, name: str = "") -> dict:
    """Create a staff account. Raises ValidationFailed for a bad email, a short password or an
    address that already has an account."""
    address = v.email(email)
    _password(password)
    try:
        rows = await db.fetch(
            "INSERT INTO staff_user (email, name, password_hash, created_at) VALUES ({}, {}, {}, {}) "
            "RETURNING id, email, name",
            address, (name or "").strip()[:200], _hasher.hash(password), now(),
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


async def members() -> list[dict]:
    """Every staff account, oldest first (no hashes)."""
    return await db.fetch("SELECT id, email, name, created_at FROM staff_user ORDER BY id")


# Signing in --------------------------------------------------------------------------------

class Throttled(Conflict):
    """Too many failed sign-ins in a row; `retry_after` is in seconds."""

    def __init__(self, retry_after: int) -> None:
        minutes = max(1, -(-retry_after // 60))
        super().__init__(
            "Too many failed sign-ins for this address. For your account's safety, please wait "
            f"{minutes} minute{'s' if minutes != 1 else ''} before trying again.",
            "throttled",
        )
        self.retry_after = retry_after


def _wait(failures: int, last: datetime | None, moment: datetime) -> int:
    """Seconds still to wait before the next attempt (0: go ahead)."""
    if failures < FREE_ATTEMPTS or last is None:
        return 0
    delay = min(BASE_DELAY * 2 ** (failures - FREE_ATTEMPTS), MAX_DELAY)
    return max(0, int((last + timedelta(seconds=delay) - moment).total_seconds() + 0.999))


async def authenticate(email: str, password: str) -> dict:
    """The staff member with this address and password. Raises Throttled while attempts are
    slowed down (even for the right password, which is not checked then), and Unauthorized with
    one message for a wrong address or a wrong password."""
    address = (email or "").strip().lower()[:320]
    password = password if isinstance(password, str) else ""
    moment = now()
    rows = await db.fetch(
        "SELECT id, email, name, password_hash, failed_logins, last_failed_login_at FROM staff_user "
        "WHERE email = {}",
        address,
    )
    wrong = Unauthorized("That email and password do not match a staff account.")
    if not rows:
        count, last = _UNKNOWN.get(address, (0, None))
        if wait := _wait(count, last, moment):
            raise Throttled(wait)
        try:
            _hasher.verify(_DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            pass
        if len(_UNKNOWN) > 10_000:
            _UNKNOWN.clear()
        _UNKNOWN[address] = (count + 1, moment)
        raise wrong
    row = rows[0]
    if wait := _wait(row["failed_logins"], row["last_failed_login_at"], moment):
        raise Throttled(wait)
    try:
        _hasher.verify(row["password_hash"], password)
    except (VerificationError, InvalidHashError):
        await db.fetch(
            "UPDATE staff_user SET failed_logins = failed_logins + 1, last_failed_login_at = {} WHERE id = {}",
            moment, row["id"],
        )
        raise wrong from None
    if row["failed_logins"]:
        await db.fetch("UPDATE staff_user SET failed_logins = 0 WHERE id = {}", row["id"])
    if _hasher.check_needs_rehash(row["password_hash"]):
        await db.fetch(
            "UPDATE staff_user SET password_hash = {} WHERE id = {}", _hasher.hash(password), row["id"]
        )
    return {"id": row["id"], "email": row["email"], "name": row["name"]}


async def change_password(staff_id: int, current: str, new: str, keep_session_hash: str | None = None) -> None:
    """Replace the password after checking the current one, and end every other session of the
    account (a stolen session must not outlive the password change)."""
    rows = await db.fetch("SELECT password_hash FROM staff_user WHERE id = {}", staff_id)
    if not rows:
        raise NotFound("No such staff account")
    try:
        _hasher.verify(rows[0]["password_hash"], current if isinstance(current, str) else "")
    except (VerificationError, InvalidHashError):
        raise ValidationFailed({"current_password": "is not your current password"}) from None
    _password(new, "new_password")
    moment = now()
    async with db.transaction():
        await db.fetch(
            "UPDATE staff_user SET password_hash = {}, password_changed_at = {} WHERE id = {}",
            _hasher.hash(new), moment, staff_id,
        )
        await db.fetch(
            "DELETE FROM staff_session WHERE staff = {} AND token_hash <> {}", staff_id, keep_session_hash or ""
        )
        # The browser that changed it has just proved the new password: its session counts as
        # opened now (sessions older than the change are refused, which also covers resets).
        await db.fetch(
            "UPDATE staff_session SET created_at = {} WHERE staff = {} AND token_hash = {}",
            moment, staff_id, keep_session_hash or "",
        )


# Sessions ----------------------------------------------------------------------------------

async def start_session(staff_id: int, user_agent: str = "") -> str:
    """Open a session and return the cookie value (shown to the browser only)."""
    token = tokens.new_random()
    moment = now()
    await db.fetch(
        "INSERT INTO staff_session (staff, token_hash, user_agent, created_at, last_seen_at, expires_at) "
        "VALUES ({}, {}, {}, {}, {}, {})",
        staff_id, tokens.digest(token), (user_agent or "")[:300], moment, moment,
        moment + timedelta(hours=SESSION_HOURS),
    )
    return token


async def by_session(token: str) -> dict | None:
    """The staff member of a live session (with `session_hash`), or None. Extends the session's
    idle time, writing at most once a minute per session."""
    if not token or len(token) > 200:
        return None
    digest = tokens.digest(token)
    moment = now()
    rows = await db.fetch(
        "SELECT s.id, s.email, s.name, x.id AS session_id, x.created_at AS session_created_at, "
        "x.last_seen_at, x.expires_at, s.password_changed_at FROM staff_session x "
        "JOIN staff_user s ON s.id = x.staff WHERE x.token_hash = {}",
        digest,
    )
    if not rows:
        return None
    row = rows[0]
    changed = row["password_changed_at"]
    too_old = row["session_created_at"] + timedelta(days=SESSION_MAX_DAYS) <= moment
    if row["expires_at"] <= moment or too_old or (changed is not None and row["session_created_at"] < changed):
        await db.fetch("DELETE FROM staff_session WHERE id = {}", row["session_id"])
        return None
    if moment - row["last_seen_at"] > timedelta(minutes=1):
        await db.fetch(
            "UPDATE staff_session SET last_seen_at = {}, expires_at = {} WHERE id = {}",
            moment, moment + timedelta(hours=SESSION_HOURS), row["session_id"],
        )
    return {"id": row["id"], "email": row["email"], "name": row["name"], "session_hash": digest}


async def end_session(token: str) -> None:
    await db.fetch("DELETE FROM staff_session WHERE token_hash = {}", tokens.digest(token or ""))


async def sessions(staff_id: int) -> list[dict]:
    return await db.fetch(
        "SELECT id, token_hash, user_agent, created_at, last_seen_at FROM staff_session "
        "WHERE staff = {} AND expires_at > {} ORDER BY last_seen_at DESC",
        staff_id, now(),
    )


# API tokens --------------------------------------------------------------------------------

async def new_token(email: str, label: str = "") -> str:
    """Create an API token for the staff member and return it; only its hash is stored."""
    member = await get_by_email(email)
    return await create_token(member["id"], label)


async def create_token(staff_id: int, label: str = "") -> str:
    """A new API token for the staff member, returned once; only its hash is stored."""
    token = tokens.new_random()
    await db.fetch(
        "INSERT INTO api_token (staff, label, token_hash, created_at) VALUES ({}, {}, {}, {})",
        staff_id, (label or "").strip()[:200], tokens.digest(token), now(),
    )
    return token


async def token_list() -> list[dict]:
    """Every API token (never the token itself), live ones first, newest first."""
    return await db.fetch(
        "SELECT t.id, t.label, t.created_at, t.last_used_at, t.revoked_at, s.email AS staff_email, "
        "t.staff AS staff_id FROM api_token t JOIN staff_user s ON s.id = t.staff "
        "ORDER BY CASE WHEN t.revoked_at IS NULL THEN 0 ELSE 1 END, t.id DESC"
    )


async def revoke_token(token_id: int) -> dict:
    """Revoke an API token (repeating it changes nothing); returns its row."""
    rows = await db.fetch(
        "UPDATE api_token SET revoked_at = {} WHERE id = {} AND revoked_at IS NULL RETURNING id, label",
        now(), token_id,
    )
    if rows:
        return rows[0]
    found = await db.fetch("SELECT id, label FROM api_token WHERE id = {}", token_id)
    if not found:
        raise NotFound("No such API token")
    return found[0]


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
