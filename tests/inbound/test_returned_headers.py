"""A delivery report whose returned headers come as message/rfc822-headers (or
message/global-headers) instead of text/rfc822-headers: read like the text form. The parser reads a
message/* part as a message of its own, whose content came back as bytes; such a report was
ignored as unreadable and the bounce acted on nothing."""

from __future__ import annotations

import pytest

from events_app import db

from .test_inbound import confirmed_subscriber, postfix, sent_row, subscriber


@pytest.mark.parametrize("kind", ["message/rfc822-headers", "message/global-headers"])
async def test_a_hard_bounce_returning_headers_as_a_message_part_marks_the_address_and_row(deliver, kind):
    ada = await confirmed_subscriber("ada@example.net")
    row = await sent_row("issue", "ada@example.net", ada["id"])
    raw = postfix(row, "ada@example.net").replace(b"Content-Type: text/rfc822-headers", f"Content-Type: {kind}".encode())
    assert f"Content-Type: {kind}".encode() in raw

    await deliver(raw)

    assert (await subscriber(ada["id"]))["bounced_at"] is not None
    failed = (await db.fetch("SELECT status, last_error FROM outbox WHERE id = {}", row["id"]))[0]
    assert failed["status"] == "failed" and "5.1.1" in failed["last_error"]
