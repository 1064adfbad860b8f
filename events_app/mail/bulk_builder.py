"""Building the bulk rows of one claimed batch (issues, announcements, staff tests).

`Builder.prepare` loads what a batch's rows need, one query each: their subscribers, their
mailings with each one's shared parts (mail/bulk.py, rendered once and kept in a small cache per
mailing and content version, across batches), and for a mailing to several topics which of them
each recipient has. `Builder.build` then composes one row's message, or refuses it: `Superseded`
when the recipient may no longer get list mail (domain/subscriptions.py `bulk_refusal`: left,
paused, or refused for good since the release; the row is marked skipped), `Undeliverable` when the mailing or its issue or event is gone.
"""

from __future__ import annotations

import json
from collections import OrderedDict

from .. import db
from ..domain import audience, events, identity, issues
from ..domain.errors import NotFound
from ..settings import Settings
from .bulk import RawMessage, Shared, compose, render_announcement, render_issue
from .messages import Superseded, Undeliverable


class Builder:
    """Builds the bulk rows of one claimed batch: their subscribers in one query, each mailing's
    shared parts from a small cache kept across batches (a worker's lifetime)."""

    def __init__(self, settings: Settings, cache_size: int = 8) -> None:
        self.settings = settings
        self.cache: OrderedDict[tuple, Shared] = OrderedDict()
        self.cache_size = cache_size
        self.subscribers: dict[int, dict] = {}
        self.mailings: dict[int, dict] = {}
        self.topics_of: dict[int, set[int]] = {}  # subscriber -> topic ids (multi-topic mailings)

    def forget(self) -> None:
        """Drop the rows' subscribers and mailings of the previous run (not the rendered cache)."""
        self.subscribers, self.mailings, self.topics_of = {}, {}, {}

    async def prepare(self, rows: list[dict]) -> None:
        """Load what these bulk rows need: subscribers and mailings, one query each. Adds to what
        earlier batches of the same run loaded."""
        ids = sorted({r["subscriber"] for r in rows if r.get("subscriber") is not None})
        if ids:
            where, args = db.sql_in("id", ids)
            for s in await db.fetch(
                f"SELECT id, email, name, status, token_salt, paused_until, bounced_at FROM subscriber WHERE {where}",
                *args,
            ):
                self.subscribers[s["id"]] = s
        mailing_ids = sorted({r["mailing"] for r in rows if r.get("mailing") is not None} - set(self.mailings))
        if mailing_ids:
            where, args = db.sql_in("id", mailing_ids)
            fresh = await db.fetch(f"SELECT * FROM mailing WHERE {where}", *args)
            for m in fresh:
                self.mailings[m["id"]] = m
            for m in fresh:
                try:
                    await self._shared_for(m)  # render now, once, not in each lane
                except Undeliverable:
                    del self.mailings[m["id"]]  # its rows fail with the reason in build()
        # Which of a multi-topic mailing's topics each recipient has (their List-Id and one-click).
        several = {m["id"] for m in self.mailings.values() if len(json.loads(m["topics"] or "[]")) > 1}
        wanted = sorted({r["subscriber"] for r in rows if r.get("mailing") in several} - set(self.topics_of))
        if wanted:
            where, args = db.sql_in("subscriber", wanted)
            for sid in wanted:
                self.topics_of[sid] = set()
            for s in await db.fetch(f"SELECT subscriber, topic FROM subscription WHERE {where}", *args):
                self.topics_of[s["subscriber"]].add(s["topic"])

    async def _shared_for(self, mailing: dict) -> Shared:
        # (kind, id, content version[, topics], identity version): a new version renders anew, and
        # so does a change to the organisation's identity (name, logo, postal address).
        key: tuple
        if mailing["kind"] == "issue":
            version = await db.fetch("SELECT version FROM issue WHERE id = {}", mailing["issue"])
            if not version:
                raise Undeliverable(f"issue {mailing['issue']} no longer exists")
            key = ("issue", mailing["issue"], version[0]["version"], identity.snapshot().version)
        else:
            try:
                event = await events.get(mailing["event"])
            except NotFound:
                raise Undeliverable(f"event {mailing['event']} no longer exists") from None
            key = ("announcement", event["id"], event["version"], mailing["topics"], identity.snapshot().version)
        shared = self.cache.get(key)
        if shared is None:
            if mailing["kind"] == "issue":
                shared = render_issue(await issues.get(mailing["issue"]), self.settings)
            else:
                where, args = db.sql_in("id", json.loads(mailing["topics"]))
                topics = await db.fetch(f"SELECT id, slug, name FROM topic WHERE {where} ORDER BY id", *args)
                shared = render_announcement(event, topics, self.settings)
                shared.encoded.topic_ids.update({t["slug"]: t["id"] for t in topics})
            self.cache[key] = shared
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
        self.cache.move_to_end(key)
        self.mailings[mailing["id"]] = {**mailing, "_shared": shared}
        return shared

    async def build(self, row: dict) -> RawMessage:
        """The message for one row; Superseded when its recipient left after the release."""
        if row["kind"] == "issue_test":
            payload = json.loads(row["payload"])
            try:
                issue = await issues.get(payload["issue_id"])
            except (NotFound, KeyError):
                raise Undeliverable("the issue of this test no longer exists") from None
            return compose(render_issue(issue, self.settings, test=True), row, None, row["recipient"], self.settings)
        mailing = self.mailings.get(row["mailing"]) if row.get("mailing") is not None else None
        if mailing is None:
            raise Undeliverable(f"mailing {row.get('mailing')} no longer exists")
        subscriber = self.subscribers.get(row["subscriber"])
        refusal = audience.bulk_refusal(subscriber)
        if refusal is not None or subscriber is None:
            raise Superseded(refusal or "the subscriber erased their data")
        shared = mailing["_shared"]
        topics = None
        if len(shared.topics) > 1:
            held = self.topics_of.get(subscriber["id"], set())
            ids = shared.encoded.topic_ids
            topics = tuple(slug for slug, _ in shared.topics if ids.get(slug) in held) or None
        return compose(shared, row, subscriber, subscriber["email"], self.settings, topics)
