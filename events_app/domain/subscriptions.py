"""Subscriptions: double opt-in, the preference centre, one-click unsubscribe, erasure.

Nothing here tells a caller whether an address is known: `subscribe` and `send_link` return
nothing and the web layer answers the same way, after doing this work in the background. Every
message goes through the outbox. Links are capabilities (`tokens.link`): `confirm` (valid a week
after it was last sent) and `manage` (the preference centre and one-click unsubscribe). Re-sends
to one address are throttled (`RESEND_EVERY`).

Statuses: pending -> confirmed -> unsubscribed (may come back by a new double opt-in);
erased keeps only the SHA-256 of the address.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from typing import Any

from .. import db, settings, tokens
from ..mail import outbox
from . import validation as v
from .errors import Conflict, NotFound, ValidationFailed

CONFIRM = "confirm"
MANAGE = "manage"
CONFIRM_VALID = timedelta(days=7)
RESEND_EVERY = timedelta(minutes=10)
MAX_PAUSE_WEEKS = 52


def now() -> datetime:
    return datetime.now(timezone.utc)


def email_hash(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def confirm_token(row: dict) -> str:
    return tokens.link(settings.get().secret_key, CONFIRM, row["id"], row["token_salt"])


def manage_token(row: dict) -> str:
    return tokens.link(settings.get().secret_key, MANAGE, row["id"], row["token_salt"])


async def topic_ids(slugs: list[str] | None, field: str = "topics") -> dict[str, int]:
    """slug -> id for the given topic slugs (default: the bulletin); ValidationFailed names an
    unknown one."""
    if slugs is None:
        slugs = ["bulletin"]
    if not isinstance(slugs, list) or not slugs or not all(isinstance(s, str) for s in slugs):
        raise ValidationFailed({field: "must be a non-empty list of topic slugs, e.g. [\"bulletin\"]"})
    rows = await db.fetch("SELECT id, slug FROM topic")
    known = {r["slug"]: r["id"] for r in rows}
    unknown = [s for s in slugs if s not in known]
    if unknown:
        raise ValidationFailed({field: f"unknown topic {unknown[0]!r}; known: {', '.join(sorted(known))}"})
    return {s: known[s] for s in dict.fromkeys(slugs)}


def clean_request(data: Any) -> tuple[str, str, list[str] | None]:
    """(email, name, topics) from a subscribe request, or ValidationFailed with every field."""
    if not isinstance(data, dict):
        raise ValidationFailed({"body": "must be a JSON object"})
    errors: dict[str, str] = {}
    email = name = ""
    try:
        email = v.email(data.get("email"))
    except ValidationFailed as exc:
        errors.update(exc.fields)
    try:
        name = v.text(data, "name", max_len=200) or ""
    except ValidationFailed as exc:
        errors.update(exc.fields)
    topics = data.get("topics")
    if topics is not None and (not isinstance(topics, list) or not topics):
        errors["topics"] = "must be a non-empty list of topic slugs"
    if errors:
        raise ValidationFailed(errors)
    return email, name, topics


async def _set_topics(subscriber_id: int, ids: list[int], *, replace: bool) -> None:
    if replace:
        await db.fetch("DELETE FROM subscription WHERE subscriber = {}", subscriber_id)
    for topic_id in ids:
        await db.fetch(
            "INSERT INTO subscription (subscriber, topic, created_at) VALUES ({}, {}, {}) "
            "ON CONFLICT DO NOTHING",
            subscriber_id, topic_id, now(),
        )


async def subscribe(email: str, name: str, topics: dict[str, int], source: str = "form") -> None:
    """Start (or continue) a double opt-in for `email`. Returns nothing on purpose.

    Unknown, unsubscribed or erased address: a pending subscriber with these topics and a
    confirmation email. Pending: the topics are added and the confirmation re-sent (at most every
    10 minutes). Confirmed: nothing changes without the owner: they get a note with their
    preference link instead (also throttled)."""
    moment = now()
    async with db.transaction():
        rows = await db.fetch(
            "SELECT * FROM subscriber WHERE email_hash = {}", email_hash(email)
        )
        if not rows:
            created = await db.fetch(
                "INSERT INTO subscriber (email, email_hash, name, status, token_salt, source, created_at, "
                "confirm_sent_at) VALUES ({}, {}, {}, 'pending', {}, {}, {}, {}) RETURNING id",
                email, email_hash(email), name, tokens.new_salt(), source, moment, moment,
            )
            await _set_topics(created[0]["id"], list(topics.values()), replace=True)
            await outbox.enqueue("subscription_confirm", email, {"subscriber_id": created[0]["id"]})
            return
        row = rows[0]
        recent = row["confirm_sent_at"] is not None and moment - row["confirm_sent_at"] < RESEND_EVERY
        if row["status"] == "confirmed":
            if not recent:
                await db.fetch("UPDATE subscriber SET confirm_sent_at = {} WHERE id = {}", moment, row["id"])
                await outbox.enqueue("subscription_known", email, {"subscriber_id": row["id"]})
            return
        if row["status"] in ("unsubscribed", "erased"):
            await db.fetch(
                "UPDATE subscriber SET status = 'pending', email = {}, name = {}, erased_at = NULL, "
                "unsubscribed_at = NULL, confirmed_at = NULL, paused_until = NULL WHERE id = {}",
                email, name or row["name"] or "", row["id"],
            )
            await _set_topics(row["id"], list(topics.values()), replace=True)
        else:
            await _set_topics(row["id"], list(topics.values()), replace=False)
            if name and not row["name"]:
                await db.fetch("UPDATE subscriber SET name = {} WHERE id = {}", name, row["id"])
        if recent and row["status"] == "pending":
            return
        await db.fetch("UPDATE subscriber SET confirm_sent_at = {} WHERE id = {}", moment, row["id"])
        await outbox.enqueue("subscription_confirm", email, {"subscriber_id": row["id"]})


async def _by_link(token: str, purpose: str) -> dict:
    row_id = tokens.link_row_id(token)
    rows = await db.fetch("SELECT * FROM subscriber WHERE id = {}", row_id) if row_id else []
    if not rows or rows[0]["status"] == "erased" or not tokens.link_matches(
        token, settings.get().secret_key, purpose, row_id, rows[0]["token_salt"]
    ):
        raise NotFound("This link is not valid, or the subscription was deleted.")
    return rows[0]


async def by_confirm_token(token: str) -> dict:
    """The subscriber a confirmation link names; NotFound when invalid or older than a week
    (for a pending subscriber: a confirmed one just sees that it is done)."""
    row = await _by_link(token, CONFIRM)
    sent = row["confirm_sent_at"] or row["created_at"]
    if row["status"] == "pending" and now() - sent > CONFIRM_VALID:
        raise NotFound("This confirmation link has expired. Subscribe again to get a new one.")
    return row


async def by_manage_token(token: str) -> dict:
    return await _by_link(token, MANAGE)


async def confirm(token: str) -> dict:
    """Confirm a pending subscription (POST only). Repeating it changes nothing."""
    row = await by_confirm_token(token)
    if row["status"] == "unsubscribed":
        raise Conflict(
            "This address was unsubscribed after this link was sent. To receive our emails again, "
            "subscribe again or choose topics on your preference page.",
            "unsubscribed",
        )
    if row["status"] == "pending":
        await db.fetch(
            # A working confirmation link proves the address works again: lift a bounce mark.
            "UPDATE subscriber SET status = 'confirmed', confirmed_at = {}, bounced_at = NULL, bounce_reason = '' "
            "WHERE id = {} AND status = 'pending'",
            now(), row["id"],
        )
    return await get(row["id"])


async def get(subscriber_id: int) -> dict:
    rows = await db.fetch("SELECT * FROM subscriber WHERE id = {}", subscriber_id)
    if not rows:
        raise NotFound("No such subscriber")
    row = dict(rows[0])
    topics = await db.fetch(
        "SELECT t.slug FROM subscription s JOIN topic t ON t.id = s.topic WHERE s.subscriber = {} ORDER BY t.id",
        subscriber_id,
    )
    row["topics"] = [t["slug"] for t in topics]
    return row


async def all_topics() -> list[dict]:
    return await db.fetch("SELECT id, slug, name, description FROM topic ORDER BY id")


async def update_preferences(token: str, *, topics: list[str], name: str | None) -> dict:
    """Set exactly these topics (joining and leaving) and the name. An empty list leaves
    everything but keeps the address confirmed, so topics can be joined again later."""
    row = await by_manage_token(token)
    ids = await topic_ids(topics, "topics") if topics else {}
    async with db.transaction():
        await _set_topics(row["id"], list(ids.values()), replace=True)
        if name is not None:
            await db.fetch("UPDATE subscriber SET name = {} WHERE id = {}", name.strip()[:200], row["id"])
        if row["status"] == "unsubscribed" and ids:
            # Choosing topics again on one's own preference page is consent.
            await db.fetch("UPDATE subscriber SET status = 'confirmed', unsubscribed_at = NULL WHERE id = {}", row["id"])
        # Saving from a link we emailed shows the address receives mail: lift a bounce mark.
        await db.fetch(
            "UPDATE subscriber SET bounced_at = NULL, bounce_reason = '' WHERE id = {} AND bounced_at IS NOT NULL",
            row["id"],
        )
    return await get(row["id"])


async def leave_topic(token: str, slug: str) -> dict:
    row = await by_manage_token(token)
    ids = await topic_ids([slug], "topic")
    await db.fetch("DELETE FROM subscription WHERE subscriber = {} AND topic = {}", row["id"], ids[slug])
    return await get(row["id"])


async def pause(token: str, weeks: Any) -> dict:
    """Pause everything for 1-52 weeks (0 resumes)."""
    row = await by_manage_token(token)
    count = v.optional_int(weeks, "weeks", minimum=0, maximum=MAX_PAUSE_WEEKS)
    if count is None:
        raise ValidationFailed({"weeks": "is required (0 to resume)"})
    until = now() + timedelta(weeks=count) if count else None
    await db.fetch("UPDATE subscriber SET paused_until = {} WHERE id = {}", until, row["id"])
    return await get(row["id"])


async def unsubscribe(token: str) -> None:
    """One-click unsubscribe from everything (RFC 8058). Repeatable; erased is left alone."""
    row = await by_manage_token(token)
    await db.fetch(
        "UPDATE subscriber SET status = 'unsubscribed', unsubscribed_at = {} "
        "WHERE id = {} AND status IN ('pending', 'confirmed')",
        now(), row["id"],
    )


async def export(token: str) -> dict:
    """Everything we hold about this subscriber's address, as JSON-able data."""
    row = await get((await by_manage_token(token))["id"])
    registrations = await db.fetch(
        "SELECT e.title, e.starts_at, r.name, r.status, r.answers, r.created_at, r.attended_at "
        "FROM registration r JOIN event e ON e.id = r.event WHERE r.email = {} ORDER BY r.id",
        row["email"],
    )
    iso = lambda m: m.isoformat() if m else None  # noqa: E731
    return {
        "email": row["email"],
        "name": row["name"],
        "status": row["status"],
        "topics": row["topics"],
        "subscribed_at": iso(row["created_at"]),
        "confirmed_at": iso(row["confirmed_at"]),
        "paused_until": iso(row["paused_until"]),
        "unsubscribed_at": iso(row["unsubscribed_at"]),
        "event_registrations": [
            {"event": r["title"], "starts_at": iso(r["starts_at"]), "name": r["name"], "status": r["status"],
             "answers": json.loads(r["answers"]), "registered_at": iso(r["created_at"]),
             "attended_at": iso(r["attended_at"])}
            for r in registrations
        ],
    }


async def erase(token: str) -> None:
    """Delete the personal data: topics go, name and address are blanked, and only the address's
    SHA-256 stays so that an import cannot quietly add it again. Messages still queued to the
    address are dropped."""
    row = await by_manage_token(token)
    async with db.transaction():
        await db.fetch("DELETE FROM subscription WHERE subscriber = {}", row["id"])
        await db.fetch(
            "UPDATE subscriber SET status = 'erased', email = NULL, name = '', erased_at = {}, "
            "paused_until = NULL WHERE id = {}",
            now(), row["id"],
        )
        await db.fetch(
            "UPDATE outbox SET status = 'failed', last_error = 'not sent: the subscriber was erased' "
            "WHERE recipient = {} AND status = 'queued' AND kind LIKE 'subscription_%'",
            row["email"],
        )
        # The delivery log keeps no copy of the address either.
        await db.fetch("UPDATE outbox SET recipient = '' WHERE recipient = {}", row["email"])


async def send_link(email: str) -> None:
    """"Email me my link": the preference link to a known, not erased address (throttled).
    Returns nothing on purpose."""
    rows = await db.fetch(
        "SELECT id, status, link_sent_at FROM subscriber WHERE email_hash = {}", email_hash(email)
    )
    if not rows or rows[0]["status"] == "erased":
        return
    row, moment = rows[0], now()
    if row["link_sent_at"] is not None and moment - row["link_sent_at"] < RESEND_EVERY:
        return
    async with db.transaction():
        await db.fetch("UPDATE subscriber SET link_sent_at = {} WHERE id = {}", moment, row["id"])
        await outbox.enqueue("subscription_link", email, {"subscriber_id": row["id"]})
