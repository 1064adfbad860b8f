"""Staff accounts (argon2 password hashes), their browser sessions and their API tokens.

Secrets are never stored: a session cookie's value and an API token are random and only their
SHA-256 is kept.

Signing in. Password hashes are checked off the event loop, in a small pool of low-priority
threads (`HASH_THREADS`), so a stream of sign-ins cannot slow every other request; when the
pool and its short queue (`HASH_QUEUE`) are full, an attempt is refused at once with `Busy`
rather than waiting behind the others. Failed sign-ins are counted per address in one shared
table, `login_attempt` (keyed by the SHA-256 of the lower-cased address), for addresses with and
without an account alike, so the answers never tell which addresses exist, in any process or
after a restart. An attempt is claimed before its hash is checked, by one atomic statement that
counts it and says whether it may go ahead: after `FREE_ATTEMPTS` failures in a row the next one
must wait a period that doubles with every further failure, however many arrive at once. Signing
in (or an operator's password reset) clears the count. The old `staff_user.failed_logins` and
`last_failed_login_at` columns are no longer used.

Audit (domain/audit.py), written in the change's transaction whoever asks: `staff.create` (by
`actor`; None: the CLI), `staff.password` (a member's own change, or an operator's reset),
`staff.login` (a session opened), `token.create` and `token.revoke` (only when it revoked).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .. import db, tokens
from ..clock import now
from . import audit
from . import validation as v
from .errors import Conflict, DomainError, NotFound, Unauthorized, ValidationFailed

_hasher = PasswordHasher()
# Verified against when the address has no account, so that both answers take as long.
_DUMMY_HASH = _hasher.hash("no account has this password")

MIN_PASSWORD = 10
MAX_PASSWORD = 1000
FREE_ATTEMPTS = 5  # failures in a row before attempts are slowed down
BASE_DELAY = 30  # seconds of waiting after the fifth failure; doubles with each further one
MAX_DELAY = 3600
FORGET_AFTER = timedelta(days=1)  # a count untouched this long is dropped
SESSION_HOURS = 12  # a session ends this long after it was last used
SESSION_MAX_DAYS = 14  # ... and in any case this long after signing in
# Password checks at once per process (each argon2 check uses several cores for ~0.1 s), and
# attempts allowed to wait for one; more than that are refused with Busy.
HASH_THREADS = 2
HASH_QUEUE = 8


def _password(value: object, field: str = "password") -> str:
    if not isinstance(value, str) or len(value) < MIN_PASSWORD:
        raise ValidationFailed({field: f"must be at least {MIN_PASSWORD} characters"})
    if len(value) > MAX_PASSWORD:
        raise ValidationFailed({field: f"must be at most {MAX_PASSWORD} characters"})
    return value


# Hashing off the event loop ----------------------------------------------------------------


def _lower_priority() -> None:
    """Run this pool thread (and the threads argon2 starts from it) at the lowest CPU priority,
    so that serving pages wins the CPU over checking passwords. Linux sets niceness per thread;
    elsewhere the call would change the whole process, so it is skipped."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except OSError:
            pass


_pool = ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="argon2", initializer=_lower_priority)
_slots = threading.Lock()
_in_flight = 0


class Busy(DomainError):
    """Too many sign-ins at once in this process; try again in `retry_after` seconds."""

    def __init__(self) -> None:
        super().__init__("Sign-in is busy right now. Please try again in a moment.")
        self.retry_after = 1


class _Slot:
    """A place among the HASH_THREADS + HASH_QUEUE attempts a process handles at once."""

    def __enter__(self) -> None:
        global _in_flight
        with _slots:
            if _in_flight >= HASH_THREADS + HASH_QUEUE:
                raise Busy()
            _in_flight += 1

    def __exit__(self, *exc: object) -> None:
        global _in_flight
        with _slots:
            _in_flight -= 1


async def _off_loop(work: Callable[..., Any], *args: Any) -> Any:
    """Run CPU-heavy `work` in the hashing pool. (A waiter cancelled before its turn is dropped
    from the pool's queue, so abandoned requests leave no work behind.)"""
    return await asyncio.get_running_loop().run_in_executor(_pool, work, *args)


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


async def _hash(password: str) -> str:
    return await _off_loop(_hasher.hash, password)


# Accounts ----------------------------------------------------------------------------------


async def create(email: str, password: str, name: str = "", *, actor: int | None = None) -> dict:
    """Create a staff account (by `actor`; None: the CLI or the demo). Raises ValidationFailed
    for a bad email, a short password or an address that already has an account. Audit:
    `staff.create`, "account <email>"."""
    errors: dict[str, str] = {}
    address = ""
    try:
        address = v.email(email)
    except ValidationFailed as exc:
        errors.update(exc.fields)
    try:
        _password(password)
    except ValidationFailed as exc:
        errors.update(exc.fields)
    if errors:  # every problem at once
        raise ValidationFailed(errors)
    hashed = await _hash(password)
    try:
        async with db.transaction():
            rows = await db.fetch(
                "INSERT INTO staff_user (email, name, password_hash, created_at) VALUES ({}, {}, {}, {}) "
                "RETURNING id, email, name",
                address,
                (name or "").strip()[:200],
                hashed,
                now(),
            )
            await audit.record(actor, "staff.create", "staff", rows[0]["id"], f"account {address}")
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


async def reset_password(email: str, password: str, *, actor: int | None = None) -> dict:
    """An operator sets a new password (`events-app staff password`): every session of the
    member ends and the sign-in throttle of the address is lifted. Raises NotFound or
    ValidationFailed (password). Audit: `staff.password`, "set by an operator; every session ended"."""
    member = await get_by_email(email)
    _password(password)
    hashed = await _hash(password)
    async with db.transaction():
        await db.fetch(
            "UPDATE staff_user SET password_hash = {}, password_changed_at = {} WHERE id = {}",
            hashed,
            now(),
            member["id"],
        )
        await db.fetch("DELETE FROM staff_session WHERE staff = {}", member["id"])
        await db.fetch("DELETE FROM login_attempt WHERE key = {}", _attempt_key(member["email"]))
        await audit.record(actor, "staff.password", "staff", member["id"], "set by an operator; every session ended")
    return member


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


def _delay(failures: int) -> int:
    """Seconds to wait after `failures` failures in a row before the next attempt."""
    if failures < FREE_ATTEMPTS:
        return 0
    return min(BASE_DELAY * 2 ** min(failures - FREE_ATTEMPTS, 20), MAX_DELAY)


def _wait(failures: int, last: datetime | None, moment: datetime) -> int:
    """Seconds still to wait before the next attempt (0: go ahead)."""
    if failures < FREE_ATTEMPTS or last is None:
        return 0
    return max(0, int((last + timedelta(seconds=_delay(failures)) - moment).total_seconds() + 0.999))


def _attempt_key(address: str) -> str:
    """The sign-in throttle's key for an address: its fingerprint (the address is not kept)."""
    return tokens.email_hash(address)


# The failure counts with a wait of their own below MAX_DELAY; from the next count on it is MAX_DELAY.
_STEPS = [f for f in range(FREE_ATTEMPTS, FREE_ATTEMPTS + 64) if _delay(f) < MAX_DELAY]
# The one statement that claims an attempt: it counts a failure in advance (signing in clears
# it) only when no wait is due, and returns a row only then. The waits are spelt out per count
# with their deadlines as parameters: no date arithmetic in SQL, so the same text runs on SQLite
# and PostgreSQL (which infers every parameter's type from the column it is compared with).
_CLAIM = (
    "INSERT INTO login_attempt AS a (key, failures, last_failed_at) VALUES ({}, 1, {}) "
    "ON CONFLICT (key) DO UPDATE SET failures = a.failures + 1, last_failed_at = excluded.last_failed_at "
    f"WHERE a.failures < {FREE_ATTEMPTS} OR "
    + " OR ".join(f"(a.failures = {f} AND a.last_failed_at <= {{}})" for f in _STEPS)
    + f" OR (a.failures > {_STEPS[-1]} AND a.last_failed_at <= {{}}) RETURNING failures"
)
_claims = 0


async def _claim(key: str, moment: datetime) -> None:
    """Claim one attempt for `key` (atomically, whatever runs in parallel), or raise Throttled
    with the seconds still to wait."""
    global _claims
    deadlines = [moment - timedelta(seconds=_delay(f)) for f in _STEPS] + [moment - timedelta(seconds=MAX_DELAY)]
    for _ in range(2):
        if await db.fetch(_CLAIM, key, moment, *deadlines):
            _claims += 1
            if _claims % 1000 == 0:  # counts nobody has touched for a day are forgotten
                await db.fetch("DELETE FROM login_attempt WHERE last_failed_at < {}", moment - FORGET_AFTER)
            return
        rows = await db.fetch("SELECT failures, last_failed_at FROM login_attempt WHERE key = {}", key)
        if rows and (wait := _wait(rows[0]["failures"], rows[0]["last_failed_at"], moment)):
            raise Throttled(wait)
        # The wait ended (or the count was cleared) between the two statements: claim again.
    raise Throttled(1)


async def authenticate(email: str, password: str) -> dict:
    """The staff member with this address and password.

    Raises Busy (before anything is counted) when the process already handles as many sign-ins
    as it takes; Throttled while attempts for the address are slowed down (even for the right
    password, which is not checked then); Unauthorized with one message for a wrong address or a
    wrong password. Every attempt that is let through costs exactly one password check, whether
    or not the address has an account, and is counted as a failure until it succeeds."""
    address = (email if isinstance(email, str) else "").strip().lower()[:320]
    # No password can be longer (create refuses it): a cut one stays wrong, at bounded cost.
    password = password[: MAX_PASSWORD + 1] if isinstance(password, str) else ""
    key = _attempt_key(address)
    with _Slot():
        await _claim(key, now())
        rows = await db.fetch("SELECT id, email, name, password_hash FROM staff_user WHERE email = {}", address)
        stored = rows[0]["password_hash"] if rows else _DUMMY_HASH
        if not await _off_loop(_verify, stored, password) or not rows:
            raise Unauthorized("That email and password do not match a staff account.")
    row = rows[0]
    await db.fetch("DELETE FROM login_attempt WHERE key = {}", key)
    if _hasher.check_needs_rehash(row["password_hash"]):
        await db.fetch("UPDATE staff_user SET password_hash = {} WHERE id = {}", await _hash(password), row["id"])
    return {"id": row["id"], "email": row["email"], "name": row["name"]}


async def check_password_change(staff_id: int, current: str, new: str) -> None:
    """ValidationFailed naming every problem at once (`current_password` not the password,
    `new_password` too short or long); nothing changes."""
    rows = await db.fetch("SELECT password_hash FROM staff_user WHERE id = {}", staff_id)
    if not rows:
        raise NotFound("No such staff account")
    given = current[: MAX_PASSWORD + 1] if isinstance(current, str) else ""
    errors: dict[str, str] = {}
    if not await _off_loop(_verify, rows[0]["password_hash"], given):
        errors["current_password"] = "is not your current password"
    try:
        _password(new, "new_password")
    except ValidationFailed as exc:
        errors.update(exc.fields)
    if errors:
        raise ValidationFailed(errors)


async def change_password(staff_id: int, current: str, new: str, keep_session_hash: str | None = None) -> None:
    """Replace the password after checking the current one, and end every other session of the
    account (a stolen session must not outlive the password change). Audit: `staff.password` by
    the member, "changed their password; every other session ended"."""
    await check_password_change(staff_id, current, new)
    hashed = await _hash(new)
    moment = now()
    async with db.transaction():
        await db.fetch(
            "UPDATE staff_user SET password_hash = {}, password_changed_at = {} WHERE id = {}",
            hashed,
            moment,
            staff_id,
        )
        await db.fetch(
            "DELETE FROM staff_session WHERE staff = {} AND token_hash <> {}", staff_id, keep_session_hash or ""
        )
        # The browser that changed it has just proved the new password: its session counts as
        # opened now (sessions older than the change are refused, which also covers resets).
        await db.fetch(
            "UPDATE staff_session SET created_at = {} WHERE staff = {} AND token_hash = {}",
            moment,
            staff_id,
            keep_session_hash or "",
        )
        await audit.record(
            staff_id, "staff.password", "staff", staff_id, "changed their password; every other session ended"
        )


# Sessions ----------------------------------------------------------------------------------


async def start_session(staff_id: int, user_agent: str = "") -> str:
    """Open a session (the member signed in) and return the cookie value (shown to the browser
    only). Audit: `staff.login` by the member, "signed in"."""
    token = tokens.new_random()
    moment = now()
    async with db.transaction():
        await db.fetch(
            "INSERT INTO staff_session (staff, token_hash, user_agent, created_at, last_seen_at, expires_at) "
            "VALUES ({}, {}, {}, {}, {}, {})",
            staff_id,
            tokens.digest(token),
            (user_agent or "")[:300],
            moment,
            moment,
            moment + timedelta(hours=SESSION_HOURS),
        )
        await audit.record(staff_id, "staff.login", "staff", staff_id, "signed in")
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
            moment,
            moment + timedelta(hours=SESSION_HOURS),
            row["session_id"],
        )
    return {"id": row["id"], "email": row["email"], "name": row["name"], "session_hash": digest}


async def end_session(token: str) -> None:
    await db.fetch("DELETE FROM staff_session WHERE token_hash = {}", tokens.digest(token or ""))


async def sessions(staff_id: int) -> list[dict]:
    return await db.fetch(
        "SELECT id, token_hash, user_agent, created_at, last_seen_at FROM staff_session "
        "WHERE staff = {} AND expires_at > {} ORDER BY last_seen_at DESC",
        staff_id,
        now(),
    )


# API tokens --------------------------------------------------------------------------------


async def new_token(email: str, label: str = "", *, actor: int | None = None) -> str:
    """Create an API token for the staff member and return it; only its hash is stored."""
    member = await get_by_email(email)
    return await create_token(member["id"], label, actor=actor)


async def create_token(staff_id: int, label: str = "", *, actor: int | None = None) -> str:
    """A new API token for the staff member, returned once; only its hash is stored. Audit:
    `token.create` by `actor` (None: the CLI), "API token '<label>' of <owner's email>"."""
    token = tokens.new_random()
    clean = (label or "").strip()[:200]
    async with db.transaction():
        rows = await db.fetch(
            "INSERT INTO api_token (staff, label, token_hash, created_at) VALUES ({}, {}, {}, {}) RETURNING id",
            staff_id,
            clean,
            tokens.digest(token),
            now(),
        )
        owner = await db.fetch("SELECT email FROM staff_user WHERE id = {}", staff_id)
        summary = f"API token {clean!r} of {owner[0]['email']}" if owner else f"API token {clean!r}"
        await audit.record(actor, "token.create", "api_token", rows[0]["id"], summary)
    return token


async def token_list() -> list[dict]:
    """Every API token (never the token itself), live ones first, newest first."""
    return await db.fetch(
        "SELECT t.id, t.label, t.created_at, t.last_used_at, t.revoked_at, s.email AS staff_email, "
        "t.staff AS staff_id FROM api_token t JOIN staff_user s ON s.id = t.staff "
        "ORDER BY CASE WHEN t.revoked_at IS NULL THEN 0 ELSE 1 END, t.id DESC"
    )


async def revoke_token(token_id: int, *, actor: int | None = None) -> dict:
    """Revoke an API token (repeating it changes nothing, and writes no second entry); returns
    its row. Audit: `token.revoke` by `actor`, "API token '<label>'"."""
    async with db.transaction():
        rows = await db.fetch(
            "UPDATE api_token SET revoked_at = {} WHERE id = {} AND revoked_at IS NULL RETURNING id, label",
            now(),
            token_id,
        )
        if rows:
            await audit.record(actor, "token.revoke", "api_token", token_id, f"API token {rows[0]['label']!r}")
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
