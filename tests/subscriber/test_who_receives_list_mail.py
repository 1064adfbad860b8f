"""Who receives list mail is one rule (domain/subscriptions.py): the preference page, the audience
counted at release (domain/mailings.py, SQL) and the send-time check (`bulk_refusal`) agree on
"paused" at every moment, the instant a pause ends included, and on "suppressed" (bounced)."""

from __future__ import annotations

from datetime import timedelta

from events_app import clock, db
from events_app.domain import audience, mailings, subscriptions


async def _confirmed(email: str) -> dict:
    await subscriptions.subscribe(email, "", await subscriptions.topic_ids(["bulletin"]))
    row = (await db.fetch("SELECT * FROM subscriber WHERE email = {}", email))[0]
    return await subscriptions.confirm(subscriptions.confirm_token(row))


async def test_paused_means_the_same_on_the_page_in_the_audience_and_at_send_time(client):
    ada = await _confirmed("ada@example.org")
    token = subscriptions.manage_token(ada)
    await subscriptions.pause(token, 2)
    until = (await subscriptions.get(ada["id"]))["paused_until"]
    topic = (await subscriptions.topic_ids(["bulletin"]))["bulletin"]
    for moment, paused in ((until - timedelta(seconds=1), True), (until, False), (until + timedelta(days=1), False)):
        with clock.frozen(moment):
            row = await subscriptions.get(ada["id"])
            page = (await client.get(f"/s/{token}")).text
            assert audience.is_paused(row["paused_until"]) is paused
            assert ("paused until" in page) is paused and ("Resume now" in page) is paused
            assert await mailings.recipient_count([topic], moment) == (0 if paused else 1)
            refusal = audience.bulk_refusal(row)
            assert (refusal is not None and "paused" in refusal) is paused


async def test_a_suppressed_address_is_left_out_until_a_link_of_ours_lifts_the_mark(client):
    ada = await _confirmed("ada@example.org")
    topic = (await subscriptions.topic_ids(["bulletin"]))["bulletin"]
    for _ in range(audience.SOFT_BOUNCE_LIMIT - 1):
        await audience.count_soft_bounce("ADA@example.org", "452 mailbox full")
    assert not audience.is_suppressed(await subscriptions.get(ada["id"]))
    assert await mailings.recipient_count([topic]) == 1
    assert await audience.count_soft_bounce("ada@example.org", "452 mailbox full") == audience.SOFT_BOUNCE_LIMIT
    row = await subscriptions.get(ada["id"])
    assert audience.is_suppressed(row) and "452 mailbox full" in row["bounce_reason"]
    assert "refused" in audience.bulk_refusal(row) and await mailings.recipient_count([topic]) == 0
    # Saving preferences from a link we emailed proves the address works: counted afresh.
    await subscriptions.update_preferences(subscriptions.manage_token(row), topics=["bulletin"], name=None)
    row = await subscriptions.get(ada["id"])
    assert not audience.is_suppressed(row) and row["soft_bounces"] == 0
    assert audience.bulk_refusal(row) is None and await mailings.recipient_count([topic]) == 1
