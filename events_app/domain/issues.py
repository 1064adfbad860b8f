"""Bulletin issues: writing them, the public archive, and releasing them to subscribers.

An issue is draft until released; releasing it (now or at a time) creates its mailing
(domain/mailings.py), whose ledger guarantees one email per recipient. The archive shows an issue
once its release time has come. Editing a released issue changes the archive page and the emails
not yet handed over, never those already sent. `version` grows on every edit (caches key on it).

Addresses that last: each issue has a `uid` (a random UUID, stored at creation; a row from before
the column gets one on first use), the Atom entry id whatever the slug. When a released or
scheduled issue's slug changes, the old one is kept in `issue_alias` and its archive address
redirects to the current one (every old slug points at the issue itself, so several renames
never chain). A slug chosen on purpose for another issue takes an old address over (its alias
is dropped); a slug made from a title never does.

The release time (`release_time`), one rule for the API, the workspace and any other caller: no
`release_at` releases now; a time still ahead schedules the release; a time that is not ahead
(past, or this very instant) is refused, naming `release_at` (400 from the API, the form again in
the workspace), as listmonk ("send_at date should be in the future") and Buttondown do. A past
time is most likely a typo (a wrong day, zone or AM/PM), and a bulk mail sent at once by mistake
cannot be called back; "now" is asked for by leaving the time out.

Every change staff make here (create, update, release, test, retry_failed, pause, resume) writes
its audit entry (domain/audit.py) in its own transaction, with one summary per action whoever
asked; `actor` is the staff member (None: the system or the CLI).
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Any

from .. import db, markdown
from ..clock import now
from ..tables import Event
from ..timefmt import iso
from . import audit, mailings, outbox
from . import validation as v
from .errors import Conflict, NotFound, ValidationFailed
from .subscriptions import topic_ids

DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FIELDS = ("title", "slug", "issue_date", "summary", "body", "topic")
SELECT = "SELECT i.*, t.slug AS topic_slug, t.name AS topic_name FROM issue i JOIN topic t ON t.id = i.topic "


def _issue_date(value: Any) -> str:
    if not isinstance(value, str) or not DATE_RE.match(value.strip()):
        raise v.fail("issue_date", "must be a date like 2019-10-15")
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise v.fail("issue_date", "is not a real date") from None


async def _clean(data: Any, *, creating: bool) -> dict:
    if not isinstance(data, dict):
        raise ValidationFailed({"body": "must be a JSON object"})
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise v.fail(unknown[0], "is not a field of an issue")
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}

    def check(field: str, fn) -> None:
        if field in data:
            try:
                out[field] = fn(data[field])
            except ValidationFailed as exc:
                errors.update(exc.fields)

    check("title", lambda _: v.text(data, "title", required=True, max_len=300))
    if creating and "title" not in data:
        errors["title"] = "is required"
    check("slug", lambda value: v.slug(value) if value not in (None, "") else None)
    check("issue_date", lambda value: _issue_date(value) if value not in (None, "") else None)
    check("summary", lambda _: v.text(data, "summary", max_len=2000) or "")
    check("body", lambda _: v.text(data, "body", max_len=200_000) or "")
    if "topic" in data:
        slug = data["topic"] if data["topic"] not in (None, "") else "bulletin"
        if not isinstance(slug, str):
            errors["topic"] = "must be a topic slug such as bulletin"
        else:
            try:
                out["topic"] = (await topic_ids([slug], "topic"))[slug]
            except ValidationFailed as exc:
                errors.update(exc.fields)
    if errors:
        raise ValidationFailed(errors)
    return {k: val for k, val in out.items() if val is not None or k == "summary"}


async def _slug_in_use(slug: str) -> bool:
    """Whether `slug` is an issue's address, current or old."""
    return bool(
        await db.fetch("SELECT id FROM issue WHERE slug = {}", slug)
        or await db.fetch("SELECT id FROM issue_alias WHERE slug = {}", slug)
    )


async def _unique_slug(base: str) -> str:
    """`base`, or `base-2`, `base-3`...: never another issue's current or old address."""
    candidate, n = base or "issue", 1
    while await _slug_in_use(candidate):
        n += 1
        candidate = f"{base}-{n}"
    return candidate


async def create(data: Any, actor: int | None = None) -> dict:
    """A draft issue by `actor` (its `created_by`). `title` is required; the slug comes from the
    title and the date from today when not given; the topic defaults to the bulletin. Audit:
    `issue.create`, the title."""
    fields = await _clean(data, creating=True)
    if "topic" not in fields:
        fields["topic"] = (await topic_ids(["bulletin"], "topic"))["bulletin"]
    fields.setdefault("issue_date", now().date().isoformat())
    if "slug" in fields:
        if await db.fetch("SELECT id FROM issue WHERE slug = {}", fields["slug"]):
            raise v.fail("slug", "is taken by another issue")
    else:
        fields["slug"] = await _unique_slug(v.slugify(fields["title"])[:100])
    moment = now()
    try:
        async with db.transaction():
            # A slug chosen on purpose takes over an old address of another issue.
            await db.fetch("DELETE FROM issue_alias WHERE slug = {}", fields["slug"])
            rows = await db.fetch(
                "INSERT INTO issue (slug, title, issue_date, summary, body, topic, status, version, uid, "
                "created_by, created_at, updated_at) "
                "VALUES ({}, {}, {}, {}, {}, {}, 'draft', 1, {}, {}, {}, {}) RETURNING id",
                fields["slug"],
                fields["title"],
                fields["issue_date"],
                fields.get("summary", ""),
                fields.get("body", ""),
                fields["topic"],
                str(uuid.uuid4()),
                actor,
                moment,
                moment,
            )
            await audit.record(actor, "issue.create", "issue", rows[0]["id"], fields["title"])
    except Exception as exc:
        if db.is_unique_violation(exc):
            raise v.fail("slug", "is taken by another issue") from None
        raise
    return await get(rows[0]["id"])


async def get(issue_id: int) -> dict:
    rows = await db.fetch(SELECT + "WHERE i.id = {}", issue_id)
    if not rows:
        raise NotFound(f"No issue {issue_id}")
    return rows[0]


def _changed(current: dict, fields: dict) -> list[str]:
    """The names of the fields whose new value differs from the stored one, in FIELDS order."""
    return [name for name in FIELDS if name in fields and str(fields[name]) != str(current[name])]


async def update(issue_id: int, data: Any, *, actor: int | None = None) -> dict:
    """Change any field; the topic only before release (the audience is fixed by then). Audit,
    when a value changed: `issue.update`, "<title>: <changed fields>"."""
    current = await get(issue_id)
    fields = await _clean(data, creating=False)
    if "topic" in fields and fields["topic"] != current["topic"] and current["status"] != "draft":
        raise v.fail("topic", "cannot change once the issue is released or scheduled")
    if "slug" in fields and await db.fetch(
        "SELECT id FROM issue WHERE slug = {} AND id != {}", fields["slug"], issue_id
    ):
        raise v.fail("slug", "is taken by another issue")
    if not fields:
        return current
    sets = ", ".join(f"{name} = {{}}" for name in fields)
    renamed = "slug" in fields and fields["slug"] != current["slug"]
    changed = _changed(current, fields)
    try:
        async with db.transaction():
            if renamed:
                await _move(current, fields["slug"])
            await db.fetch(
                f"UPDATE issue SET {sets}, version = version + 1, updated_at = {{}} WHERE id = {{}}",
                *fields.values(),
                now(),
                issue_id,
            )
            if changed:
                title = fields.get("title", current["title"])
                await audit.record(actor, "issue.update", "issue", issue_id, f"{title}: {', '.join(changed)}")
    except Exception as exc:
        if db.is_unique_violation(exc):  # a concurrent rename took it first
            raise v.fail("slug", "is taken by another issue") from None
        raise
    return await get(issue_id)


async def _move(current: dict, slug: str) -> None:
    """Within the rename's transaction: `slug` stops being anyone's old address (this issue's
    own, or another's taken over on purpose), and the slug being left becomes one of this
    issue's when people may have it (released or scheduled: sent emails, feeds, bookmarks)."""
    await db.fetch("DELETE FROM issue_alias WHERE slug = {}", slug)
    if current["status"] != "draft":
        await db.fetch(
            "INSERT INTO issue_alias (slug, issue, created_at) VALUES ({}, {}, {})",
            current["slug"],
            current["id"],
            now(),
        )


async def uid_of(issue_id: int) -> str:
    """The issue's stable uid (a UUID string). A row made before issue.uid existed gets a random
    one here, once: the UPDATE only writes while the column is still empty, so callers racing
    on the same row all read back the same value. Raises NotFound."""
    rows = await db.fetch("SELECT uid FROM issue WHERE id = {}", issue_id)
    if not rows:
        raise NotFound(f"No issue {issue_id}")
    if rows[0]["uid"]:
        return rows[0]["uid"]
    await db.fetch("UPDATE issue SET uid = {} WHERE id = {} AND uid = ''", str(uuid.uuid4()), issue_id)
    return (await db.fetch("SELECT uid FROM issue WHERE id = {}", issue_id))[0]["uid"]


async def with_uids(found: list[dict]) -> list[dict]:
    """`found` with every `uid` filled in (see `uid_of`)."""
    return [issue if issue["uid"] else {**issue, "uid": await uid_of(issue["id"])} for issue in found]


async def listing() -> list[dict]:
    """Every issue, newest first (staff)."""
    return await db.fetch(SELECT + "ORDER BY i.issue_date DESC, i.id DESC")


async def released(limit: int | None = None) -> list[dict]:
    """Issues whose release time has come, newest first (the public archive and feed)."""
    sql = SELECT + "WHERE i.released_at IS NOT NULL AND i.released_at <= {} ORDER BY i.issue_date DESC, i.id DESC"
    if limit:
        sql += f" LIMIT {int(limit)}"
    return await db.fetch(sql, now())


async def released_by_slug(slug: str) -> dict:
    rows = await db.fetch(
        SELECT + "WHERE i.slug = {} AND i.released_at IS NOT NULL AND i.released_at <= {}", slug, now()
    )
    if not rows:
        raise NotFound("No released issue at this address")
    return rows[0]


async def moved_to(slug: str) -> str | None:
    """The current slug of the released issue that once had `slug`, or None."""
    rows = await db.fetch(
        "SELECT i.slug FROM issue_alias a JOIN issue i ON i.id = a.issue "
        "WHERE a.slug = {} AND i.released_at IS NOT NULL AND i.released_at <= {}",
        slug,
        now(),
    )
    return rows[0]["slug"] if rows else None


def body_html(issue: dict) -> str:
    """The body as sanitised HTML (Markdown; raw HTML shown as text; images by URL)."""
    return markdown.to_html(issue["body"])


async def default_zone() -> str:
    """The time zone a release time is typed and shown in by default: the latest event's (the
    zone staff work in), or UTC before there is any event. A cold path: Piccolo's builder."""
    row = await Event.select(Event.timezone).order_by(Event.id, ascending=False).first()
    return row["timezone"] if row else "UTC"


async def recipient_count(issue_id: int, at: datetime | None = None) -> int:
    """How many people a release now (or at `at`) would reach: shown to staff before releasing."""
    issue = await get(issue_id)
    return await mailings.recipient_count([issue["topic"]], at)


def release_time(release_at: datetime | None, at: datetime | None = None) -> datetime | None:
    """The release time rule (see the module docstring): None releases now, a time after `at`
    (default now) schedules; any other time raises ValidationFailed on `release_at`."""
    if release_at is not None and release_at <= (at or now()):
        raise v.fail("release_at", "is in the past: choose a later time, or leave it out to release now")
    return release_at


async def release(issue_id: int, release_at: datetime | None = None, *, actor: int | None = None) -> dict:
    """Release now (no `release_at`) or schedule for `release_at`, which must be ahead
    (`release_time`: ValidationFailed otherwise). Raises Conflict when the issue is already
    released or scheduled (one release per issue; see `retry_failed`). Returns the mailing id,
    the release time, the status and `recipients` (the audience counted at that time). Audit:
    `issue.release`, "now, to about N subscribers" or "at <ISO time>, to about N subscribers"."""
    issue = await get(issue_id)
    moment = now()
    release_time(release_at, moment)
    at = release_at or moment
    scheduled = at > moment
    async with db.transaction():
        claimed = await db.fetch(
            "UPDATE issue SET status = {}, release_at = {}, released_at = {}, updated_at = {} "
            "WHERE id = {} AND status = 'draft' RETURNING id",
            "scheduled" if scheduled else "released",
            at,
            at,
            moment,
            issue_id,
        )
        if not claimed:
            raise Conflict(f"This issue is already {issue['status']}", reason="already_released")
        mailing = await mailings.create("issue", [issue["topic"]], issue_id=issue_id, release_at=at, staff_id=actor)
        count = await mailings.recipient_count([issue["topic"]], at)
        when = f"at {iso(at)}" if scheduled else "now"
        await audit.record(actor, "issue.release", "issue", issue_id, f"{when}, to about {count} subscribers")
    return {
        "mailing": mailing["id"],
        "release_at": at,
        "status": "scheduled" if scheduled else "released",
        "recipients": count,
    }


async def mailing_of(issue_id: int) -> dict:
    await get(issue_id)
    mailing = await mailings.latest_for_issue(issue_id)
    if mailing is None:
        raise Conflict("This issue has not been released", reason="not_released")
    return mailing


async def delivery(issue_id: int, *, live: bool = False) -> dict:
    """Ledger counts (queued, sending, sent, failed, skipped, total) and the mailing's state; all
    zero with status `draft` before release. `live`: for a page polled during the release, the
    figures of the latest count shared by the process's requests, with `as_of`, its time
    (mailings.delivery_live)."""
    issue = await get(issue_id)
    mailing = await mailings.latest_for_issue(issue_id)
    if mailing is None:
        counts = {state: 0 for state in mailings.STATES}
        empty = {**counts, "total": 0, "status": issue["status"], "mailing": None, "paused_until": None}
        return {**empty, "as_of": now()} if live else empty
    if live:
        return await mailings.delivery_live(mailing["id"], mailing=mailing)
    return await mailings.delivery(mailing["id"])


async def retry_failed(issue_id: int, include_bounced: bool = False, *, actor: int | None = None) -> int:
    """Queue the release's failed deliveries again (mailings.retry_failed); returns how many.
    Audit: `issue.retry_failed`, "N queued again" (and whether bounced addresses were included)."""
    mailing = await mailing_of(issue_id)
    async with db.transaction():
        count = await mailings.retry_failed(mailing["id"], include_bounced)
        summary = f"{count} queued again" + (", bounced addresses included" if include_bounced else "")
        await audit.record(actor, "issue.retry_failed", "issue", issue_id, summary)
    return count


async def pause(issue_id: int, *, actor: int | None = None) -> dict:
    """Hold back what is not sent yet (mailings.pause). Audit: `issue.pause`, "N queued messages
    held back" (the ledger's queued rows at that moment)."""
    mailing = await mailing_of(issue_id)
    async with db.transaction():
        paused = await mailings.pause(mailing["id"])
        waiting = await _queued(mailing["id"])
        await audit.record(actor, "issue.pause", "issue", issue_id, f"{waiting} queued messages held back")
    return paused


async def resume(issue_id: int, *, actor: int | None = None) -> dict:
    """Send the rest now (mailings.resume). Audit: `issue.resume`, "N queued messages due now"."""
    mailing = await mailing_of(issue_id)
    async with db.transaction():
        resumed = await mailings.resume(mailing["id"])
        waiting = await _queued(mailing["id"])
        await audit.record(actor, "issue.resume", "issue", issue_id, f"{waiting} queued messages due now")
    return resumed


async def _queued(mailing_id: int) -> int:
    rows = await db.fetch("SELECT count(*) AS n FROM outbox WHERE status = 'queued' AND mailing = {}", mailing_id)
    return rows[0]["n"]


async def send_test(issue_id: int, address: str, *, actor: int | None = None) -> int:
    """Queue the issue's email to one address (staff checking it), marked as a test, with the
    links of a sample subscriber that lead nowhere personal. Raises ValidationFailed (`email`)
    for a bad address. Audit: `issue.test`, "test to <address>"."""
    await get(issue_id)
    to = v.email(address)
    async with db.transaction():
        row_id = await outbox.enqueue("issue_test", to, {"issue_id": issue_id})
        await audit.record(actor, "issue.test", "issue", issue_id, f"test to {to}")
    return row_id
