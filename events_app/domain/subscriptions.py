"""Subscriptions: double opt-in, the preference centre, one-click unsubscribe, erasure.

Nothing here tells a caller whether an address is known: `subscribe` and `send_link` return
nothing, do their writes before returning (so nothing is lost after the answer) and do comparable
work for every address (one upsert or conditional UPDATE, then an email unless one went out in the
last `RESEND_EVERY`); the web layer answers the same way whatever happened. Every message goes
through the outbox. Links are capabilities (`tokens.link`): `confirm` (valid a week after it was
last sent) and `manage` (the preference centre and one-click unsubscribe).

Statuses: pending -> confirmed -> unsubscribed; erased keeps only the address's fingerprint
(`tokens.email_hash`, the one function for it).

Who receives list mail (paused, suppressed) is decided in domain/audience.py.

An opt-out stands until its owner confirms otherwise. A request for an unsubscribed or erased
address keeps the status and only records the topics asked for in `requested_topics` (a JSON list
of topic ids); the confirmation email's link, POSTed by the owner, applies them. An erased address
asked for again is stored again as a request only, like any unknown address: its old data is gone,
it is not listed to staff, has no preference page and no export, and the importer skips it, until
confirmed.

Each topic is its own list: bulk mail's one-click URL names the topic(s) it was sent for
(`/s/TOKEN/unsubscribe?topic=events`), and that POST leaves only those; leaving the last topic is
a whole unsubscribe. Without a topic (links sent before, or the preference centre's "leave
everything") it leaves everything.

Unsubscribing and erasure rotate `token_salt`, so every link already sent (confirmation,
preferences, one-click unsubscribe) stops working for the old data. RFC 8058 one-click stays
repeatable: `unsubscribe` accepts any well-formed token and answers alike whether it is current,
stale or unknown, acting only on a current one.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

from .. import db, settings, tokens
from ..clock import now
from ..tokens import email_hash
from . import outbox
from . import validation as v
from .audience import LIFT_BOUNCE
from .errors import Conflict, NotFound, ValidationFailed

CONFIRM = "confirm"
MANAGE = "manage"
CONFIRM_VALID = timedelta(days=7)
RESEND_EVERY = timedelta(minutes=10)
MAX_PAUSE_WEEKS = 52
MAX_NAME = 200
OPTED_OUT = ("unsubscribed", "erased")
RETRIES = 3

# One statement for every address, known or not: a new pending row, or (on the unique address
# hash) a no-op update that returns the stored row and, on PostgreSQL, holds its lock until commit,
# so identical requests at once queue up instead of racing. A row is new when its salt is ours.
_UPSERT = (
    "INSERT INTO subscriber (email, email_hash, name, status, token_salt, source, created_at) "
    "VALUES ({}, {}, {}, 'pending', {}, {}, {}) "
    "ON CONFLICT (email_hash) DO UPDATE SET email_hash = excluded.email_hash RETURNING *"
)
# The re-send throttle, claimed atomically: only one of many requests in a window gets a row back.
_CLAIM_SEND = (
    "UPDATE subscriber SET confirm_sent_at = {} WHERE id = {} "
    "AND (confirm_sent_at IS NULL OR confirm_sent_at <= {}) RETURNING id"
)


def confirm_token(row: dict) -> str:
    return tokens.link(settings.get().secret_key, CONFIRM, row["id"], row["token_salt"])


def manage_token(row: dict) -> str:
    return tokens.link(settings.get().secret_key, MANAGE, row["id"], row["token_salt"])


def requested_ids(row: dict) -> list[int]:
    """The topic ids of an opt-in asked for while unsubscribed or erased ([] when none)."""
    try:
        ids = json.loads(row.get("requested_topics") or "[]")
    except ValueError:
        return []
    return [i for i in ids if isinstance(i, int)] if isinstance(ids, list) else []


def awaits_confirmation(row: dict) -> bool:
    """True while a confirmation link for this row would change something: a pending address,
    or an opt-out with a new opt-in asked for (and an address to write to)."""
    if row["status"] == "pending":
        return True
    return row["status"] in OPTED_OUT and bool(row.get("email")) and bool(requested_ids(row))


async def topic_ids(slugs: list[str] | None, field: str = "topics") -> dict[str, int]:
    """slug -> id for the given topic slugs (default: the bulletin); ValidationFailed names an
    unknown one."""
    if slugs is None:
        slugs = ["bulletin"]
    if not isinstance(slugs, list) or not slugs or not all(isinstance(s, str) for s in slugs):
        raise ValidationFailed({field: 'must be a non-empty list of topic slugs, e.g. ["bulletin"]'})
    rows = await db.fetch("SELECT id, slug FROM topic")
    known = {r["slug"]: r["id"] for r in rows}
    unknown = [s for s in slugs if s not in known]
    if unknown:
        raise ValidationFailed({field: f"unknown topic {unknown[0][:100]!r}; known: {', '.join(sorted(known))}"})
    return {s: known[s] for s in dict.fromkeys(slugs)}


def clean_name(data: dict, field: str = "name") -> str:
    """A person's name: one line (validation.text refuses control characters), at most
    MAX_NAME characters; "" when absent."""
    return v.text(data, field, max_len=MAX_NAME) or ""


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
        name = clean_name(data)
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
            "INSERT INTO subscription (subscriber, topic, created_at) VALUES ({}, {}, {}) ON CONFLICT DO NOTHING",
            subscriber_id,
            topic_id,
            now(),
        )


async def _retry(work):
    """Run `work` (one transaction) again when a unique constraint refused it: two requests for
    one new address at once; the next attempt finds the winner's row."""
    for attempt in range(RETRIES):
        try:
            return await work()
        except Exception as exc:
            if not db.is_unique_violation(exc) or attempt == RETRIES - 1:
                raise


async def subscribe(email: str, name: str, topics: dict[str, int], source: str = "form") -> None:
    """Start (or continue) a double opt-in for `email`, written before returning. Returns nothing
    on purpose. Safe to run many times at once for one address (one row, one email per window).

    Unknown address: a pending subscriber with these topics and a confirmation email. Pending:
    the topics are added and the confirmation re-sent. Confirmed: nothing changes without the
    owner: a note with their preference link instead. Unsubscribed or erased: the opt-out stands;
    the topics are recorded as requested (an erased address is stored again for the email, with
    no old data) and a confirmation email asks the owner. Emails: at most one per RESEND_EVERY."""
    await _retry(lambda: _subscribe_once(email, name, list(topics.values()), source))


async def _subscribe_once(email: str, name: str, ids: list[int], source: str) -> None:
    moment, salt = now(), tokens.new_salt()
    async with db.transaction():
        row = (await db.fetch(_UPSERT, email, email_hash(email), name, salt, source, moment))[0]
        if row["token_salt"] == salt:
            await _set_topics(row["id"], ids, replace=True)
        elif row["status"] == "pending":
            await _set_topics(row["id"], ids, replace=False)
            if name and not row["name"]:
                await db.fetch("UPDATE subscriber SET name = {} WHERE id = {}", name, row["id"])
        elif row["status"] in OPTED_OUT:
            wanted = sorted(set(requested_ids(row)) | set(ids))
            if row["status"] == "erased":
                # Stored again only as a request, like an unknown address (the email needs it).
                await db.fetch(
                    "UPDATE subscriber SET requested_topics = {}, email = {}, name = {} WHERE id = {}",
                    json.dumps(wanted),
                    email,
                    row["name"] or name,
                    row["id"],
                )
            else:  # the owner's own name and topics stay as they are
                await db.fetch(
                    "UPDATE subscriber SET requested_topics = {} WHERE id = {}", json.dumps(wanted), row["id"]
                )
        due = await db.fetch(_CLAIM_SEND, moment, row["id"], moment - RESEND_EVERY)
        if due:
            kind = "subscription_known" if row["status"] == "confirmed" else "subscription_confirm"
            await outbox.enqueue(kind, email, {"subscriber_id": row["id"]})


async def _by_link(token: str, purpose: str) -> dict:
    row_id = tokens.link_row_id(token)
    rows = await db.fetch("SELECT * FROM subscriber WHERE id = {}", row_id) if row_id else []
    if not rows or not tokens.link_matches(token, settings.get().secret_key, purpose, row_id, rows[0]["token_salt"]):
        raise NotFound(
            "This link is not valid. Links stop working when an address is unsubscribed or deleted; "
            "ask for a new one at /s/link."
        )
    row = rows[0]
    if row["status"] == "erased" and not (purpose == CONFIRM and awaits_confirmation(row)):
        raise NotFound("This link is not valid, or the subscription was deleted.")
    return row


async def by_confirm_token(token: str) -> dict:
    """The subscriber a confirmation link names; NotFound when invalid or older than a week
    (while there is something to confirm: a confirmed one just sees that it is done)."""
    row = await _by_link(token, CONFIRM)
    sent = row["confirm_sent_at"] or row["created_at"]
    if awaits_confirmation(row) and now() - sent > CONFIRM_VALID:
        raise NotFound("This confirmation link has expired. Subscribe again to get a new one.")
    return row


async def by_manage_token(token: str) -> dict:
    return await _by_link(token, MANAGE)


async def confirm(token: str) -> dict:
    """Confirm (POST only): a pending subscription, or the opt-in asked for since an unsubscribe
    or erasure (status confirmed with exactly the topics asked for). Repeating it changes nothing."""
    row = await by_confirm_token(token)
    moment = now()
    if row["status"] == "pending":
        await db.fetch(
            # A working confirmation link proves the address works again: lift a bounce mark.
            f"UPDATE subscriber SET status = 'confirmed', confirmed_at = {{}}, {LIFT_BOUNCE} "
            "WHERE id = {} AND status = 'pending'",
            moment,
            row["id"],
        )
    elif awaits_confirmation(row):
        async with db.transaction():
            applied = await db.fetch(
                "UPDATE subscriber SET status = 'confirmed', confirmed_at = {}, unsubscribed_at = NULL, "
                f"erased_at = NULL, paused_until = NULL, {LIFT_BOUNCE}, requested_topics = '' "
                "WHERE id = {} AND status = {} AND requested_topics = {} RETURNING id",
                moment,
                row["id"],
                row["status"],
                row["requested_topics"],
            )
            if applied:
                known = {t["id"] for t in await db.fetch("SELECT id FROM topic")}
                await _set_topics(row["id"], [i for i in requested_ids(row) if i in known], replace=True)
    elif row["status"] == "unsubscribed":
        raise Conflict(
            "This address was unsubscribed after this link was sent. To receive our emails again, "
            "subscribe again or choose topics on your preference page.",
            "unsubscribed",
        )
    return await get(row["id"])


async def get(subscriber_id: int) -> dict:
    """The subscriber row with `topics` (slugs received), `requested` (slugs of an opt-in asked
    for while opted out) and `confirm_topics` (what a confirmation would give)."""
    rows = await db.fetch("SELECT * FROM subscriber WHERE id = {}", subscriber_id)
    if not rows:
        raise NotFound("No such subscriber")
    row = dict(rows[0])
    topics = await db.fetch(
        "SELECT t.slug FROM subscription s JOIN topic t ON t.id = s.topic WHERE s.subscriber = {} ORDER BY t.id",
        subscriber_id,
    )
    row["topics"] = [t["slug"] for t in topics]
    wanted = set(requested_ids(row))
    row["requested"] = [t["slug"] for t in await all_topics() if t["id"] in wanted] if wanted else []
    row["awaits_confirmation"] = awaits_confirmation(row)
    row["confirm_topics"] = row["requested"] if row["status"] in OPTED_OUT else row["topics"]
    return row


async def all_topics() -> list[dict]:
    return await db.fetch("SELECT id, slug, name, description FROM topic ORDER BY id")


async def update_preferences(token: str, *, topics: list[str], name: Any) -> dict:
    """Set exactly these topics (joining and leaving) and the name (None: unchanged; one line).
    An empty list leaves everything but keeps the address confirmed, so topics can be joined
    again later. While unsubscribed nothing is joined: the opt-out stands until its owner
    confirms by email, so topics chosen are asked for as `resubscribe` does (a confirmation
    email; the name is saved)."""
    row = await by_manage_token(token)
    clean = clean_name({"name": name}) if name is not None else None
    ids = await topic_ids(topics, "topics") if topics else {}
    if row["status"] == "unsubscribed":
        if clean is not None:
            await db.fetch("UPDATE subscriber SET name = {} WHERE id = {}", clean, row["id"])
        if ids:
            await _ask_again(row, list(ids.values()))
        return await get(row["id"])
    async with db.transaction():
        await _set_topics(row["id"], list(ids.values()), replace=True)
        if clean is not None:
            await db.fetch("UPDATE subscriber SET name = {} WHERE id = {}", clean, row["id"])
        # Saving from a link we emailed shows the address receives mail: lift a bounce mark.
        await db.fetch(
            f"UPDATE subscriber SET {LIFT_BOUNCE} WHERE id = {{}} AND (bounced_at IS NOT NULL OR soft_bounces > 0)",
            row["id"],
        )
    return await get(row["id"])


# A request to subscribe again, from the owner's preference page: a confirmation is due unless one
# went out in the last RESEND_EVERY since the unsubscribe (the one sent before it asked for
# something else, so it does not count).
_CLAIM_AGAIN = (
    "UPDATE subscriber SET confirm_sent_at = {} WHERE id = {} AND status = 'unsubscribed' "
    "AND (confirm_sent_at IS NULL OR confirm_sent_at <= {} OR confirm_sent_at <= unsubscribed_at) RETURNING id"
)


async def _ask_again(row: dict, ids: list[int]) -> None:
    """Record `ids` as the topics an unsubscribed owner asks for and email them a confirmation
    link (at most one per RESEND_EVERY). Nothing is received until that link is POSTed."""
    moment = now()
    async with db.transaction():
        await db.fetch(
            "UPDATE subscriber SET requested_topics = {} WHERE id = {} AND status = 'unsubscribed'",
            json.dumps(sorted(set(ids))),
            row["id"],
        )
        if await db.fetch(_CLAIM_AGAIN, moment, row["id"], moment - RESEND_EVERY):
            await outbox.enqueue("subscription_confirm", row["email"], {"subscriber_id": row["id"]})


async def resubscribe(token: str, topics: Any) -> dict:
    """ "Subscribe again" on an unsubscribed owner's preference page: the chosen topics (at
    least one) are asked for and a confirmation email sent; the address stays unsubscribed until
    the owner POSTs the link in it (`confirm`). For an address that is not unsubscribed this
    changes nothing."""
    row = await by_manage_token(token)
    if not isinstance(topics, list) or not topics:
        raise ValidationFailed({"topics": "choose at least one topic to receive"})
    ids = await topic_ids(topics, "topics")
    if row["status"] == "unsubscribed":
        await _ask_again(row, list(ids.values()))
    return await get(row["id"])


async def recent_issues(limit: int = 3) -> list[dict]:
    """The latest released issues (title, slug, issue_date), newest first, for the subscribe page."""
    return await db.fetch(
        "SELECT title, slug, issue_date FROM issue WHERE released_at IS NOT NULL AND released_at <= {} "
        f"ORDER BY issue_date DESC, id DESC LIMIT {int(limit)}",
        now(),
    )


def cadence_of(issue_dates: list[str]) -> str | None:
    """How often the bulletin comes, in words, from the released issues' dates (ISO): the
    average gap over the latest six. None with fewer than two distinct dates (no pattern yet)."""
    parsed = set()
    for d in issue_dates:
        try:
            parsed.add(date.fromisoformat(d))
        except (TypeError, ValueError):
            continue
    days = sorted(parsed)[-6:]
    if len(days) < 2:
        return None
    gap = (days[-1] - days[0]).days / (len(days) - 1)
    if gap < 10:
        return "about every week"
    if gap < 21:
        return "about every two weeks"
    if gap < 46:
        return "about once a month"
    months = round(gap / 30.44)
    if months < 12:
        return f"about every {months} months"
    years = round(gap / 365.25)
    return "about once a year" if years <= 1 else f"about every {years} years"


async def cadence() -> str | None:
    """`cadence_of` the released issues."""
    rows = await db.fetch(
        "SELECT issue_date FROM issue WHERE released_at IS NOT NULL AND released_at <= {} "
        "ORDER BY issue_date DESC LIMIT 6",
        now(),
    )
    return cadence_of([r["issue_date"] for r in rows])


async def leave_topic(token: str, slug: Any) -> dict:
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


async def one_click_topics(slugs: Any) -> list[dict]:
    """The known topics (id, slug, name) among the `topic` values of a one-click URL, in topic
    order. Anything else (an unknown or malformed value) is left out: a mail client's one-click
    must act, and with no known topic left it leaves everything, which is what the person asked
    for at the least."""
    if isinstance(slugs, str):
        slugs = [slugs]
    if not isinstance(slugs, list):
        return []
    wanted = {s for s in slugs if isinstance(s, str)}
    return [t for t in await all_topics() if t["slug"] in wanted]


async def unsubscribe(token: str, topics: list[dict] | None = None) -> None:
    """One-click unsubscribe (RFC 8058). With `topics` (from `one_click_topics`, non-empty):
    leave only those lists; when no topic is left, as below. Otherwise: unsubscribe from
    everything, and any opt-in asked for meanwhile, rotating the link secret so every link sent
    before stops working. Repeatable: a well-formed token that is stale (already used), forged or
    unknown does nothing and raises nothing, so the answer is the same for all; only a
    malformed one raises NotFound."""
    row_id = tokens.link_row_id(token)
    if row_id is None:
        raise NotFound("This link is not valid.")
    rows = await db.fetch("SELECT id, status, token_salt FROM subscriber WHERE id = {}", row_id)
    if (
        not rows
        or rows[0]["status"] == "erased"
        or not tokens.link_matches(token, settings.get().secret_key, MANAGE, row_id, rows[0]["token_salt"])
    ):
        return
    if topics:
        where, args = db.sql_in("topic", [t["id"] for t in topics])
        async with db.transaction():
            await db.fetch(f"DELETE FROM subscription WHERE subscriber = {{}} AND {where}", row_id, *args)
            left = await db.fetch("SELECT topic FROM subscription WHERE subscriber = {} LIMIT 1", row_id)
        if left:
            return
    await db.fetch(
        # The salt in the condition: of two clicks at once only one acts (and rotates).
        "UPDATE subscriber SET status = 'unsubscribed', unsubscribed_at = COALESCE(unsubscribed_at, {}), "
        "requested_topics = '', token_salt = {} WHERE id = {} AND token_salt = {} AND status <> 'erased'",
        now(),
        tokens.new_salt(),
        row_id,
        rows[0]["token_salt"],
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
        "requested_topics": row["requested"],
        "subscribed_at": iso(row["created_at"]),
        "confirmed_at": iso(row["confirmed_at"]),
        "paused_until": iso(row["paused_until"]),
        "unsubscribed_at": iso(row["unsubscribed_at"]),
        "event_registrations": [
            {
                "event": r["title"],
                "starts_at": iso(r["starts_at"]),
                "name": r["name"],
                "status": r["status"],
                "answers": json.loads(r["answers"]),
                "registered_at": iso(r["created_at"]),
                "attended_at": iso(r["attended_at"]),
            }
            for r in registrations
        ],
    }


async def erase(token: str) -> None:
    """Delete the personal data: topics go; address, name, every date and mark about the person
    and any opt-in asked for are blanked; only the address's SHA-256 stays, so that an import
    cannot quietly add it again. The link secret is rotated: every link sent before stops
    working, also if the address is asked for again later. Messages still queued to the address
    are dropped, and the delivery log forgets the address."""
    row = await by_manage_token(token)
    moment = now()
    async with db.transaction():
        await db.fetch("DELETE FROM subscription WHERE subscriber = {}", row["id"])
        await db.fetch(
            "UPDATE subscriber SET status = 'erased', email = NULL, name = '', erased_at = {}, created_at = {}, "
            "confirm_sent_at = NULL, confirmed_at = NULL, paused_until = NULL, unsubscribed_at = NULL, "
            f"{LIFT_BOUNCE}, link_sent_at = NULL, requested_topics = '', token_salt = {{}} "
            "WHERE id = {}",
            moment,
            moment,
            tokens.new_salt(),
            row["id"],
        )
        await db.fetch(
            "UPDATE outbox SET status = 'failed', last_error = 'not sent: the subscriber was erased' "
            "WHERE recipient = {} AND status = 'queued' AND kind LIKE 'subscription_%'",
            row["email"],
        )
        await db.fetch("UPDATE outbox SET recipient = '' WHERE recipient = {}", row["email"])


async def send_link(email: str) -> None:
    """ "Email me my link": the preference link to a known, not erased address, at most once per
    RESEND_EVERY (claimed by one conditional UPDATE, so requests at once send one). Written
    before returning; returns nothing on purpose."""
    moment = now()
    async with db.transaction():
        rows = await db.fetch(
            "UPDATE subscriber SET link_sent_at = {} WHERE email_hash = {} AND status <> 'erased' "
            "AND (link_sent_at IS NULL OR link_sent_at <= {}) RETURNING id",
            moment,
            email_hash(email),
            moment - RESEND_EVERY,
        )
        if rows:
            await outbox.enqueue("subscription_link", email, {"subscriber_id": rows[0]["id"]})
