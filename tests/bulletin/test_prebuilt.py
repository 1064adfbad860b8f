"""A lane builds its next bulk message while the one before it is in flight (Delivery.prebuild):
what it sends is, but for the Date line, what building the row at its turn gives, every row is
sent once, and a row that cannot be built ahead (its recipient left) is still skipped as before."""

from __future__ import annotations

import re
from collections import Counter

from events_app import db
from events_app.domain import issues, subscriptions
from events_app.mail.delivery import Delivery

from .helpers import new_issue, run_until_settled, subscribers

DATE = re.compile(rb"^Date: [^\r]*\r\n", re.MULTILINE)


async def test_messages_built_ahead_are_the_messages_built_in_turn(tmp_path, smtp_server, worker, monkeypatch):
    addresses = await subscribers(tmp_path, 60)
    issue = await new_issue()
    await issues.release(issue["id"])
    send = Delivery.send
    ahead: list[int] = []

    async def checked_send(self, row, transport):
        if "_wire" in row:
            ahead.append(row["id"])
            fresh = self.wire(row, await self.bulk.build(row))
            kept = row["_wire"]
            assert (kept.sender, kept.recipient) == (fresh.sender, fresh.recipient)
            assert DATE.sub(b"", kept.data) == DATE.sub(b"", fresh.data)
        return await send(self, row, transport)

    monkeypatch.setattr(Delivery, "send", checked_send)
    # One unsubscribes after the ledger is written: built ahead or not, the row is skipped.
    from events_app.domain import mailings

    await mailings.tick()
    leaver = (await db.fetch("SELECT * FROM subscriber WHERE email = {}", addresses[7]))[0]
    await subscriptions.unsubscribe(subscriptions.manage_token(leaver))
    await run_until_settled(worker, limit=25)
    # Most rows were built ahead: not the first of each connection's share of a batch.
    assert len(ahead) >= 40, len(ahead)
    got = Counter(a for r in smtp_server.received for a in r.rcpt_tos)
    assert got == Counter(a for a in addresses if a != addresses[7])
    delivery = await issues.delivery(issue["id"])
    assert (delivery["sent"], delivery["skipped"], delivery["total"]) == (59, 1, 60)


async def test_a_row_that_cannot_be_built_is_left_for_send(tmp_path, smtp_settings):
    from events_app.mail.pause import PausePolicy

    delivery = Delivery(smtp_settings, PausePolicy(smtp_settings))
    row = {"id": 1, "kind": "issue", "mailing": 999, "subscriber": 1, "recipient": "a@example.org"}
    delivery.prebuild(row)  # mailing not loaded: Undeliverable, which send() records
    assert "_wire" not in row
    transactional = {"id": 2, "kind": "confirmation", "mailing": None}
    delivery.prebuild(transactional)  # reads the database: never built ahead
    assert "_wire" not in transactional
