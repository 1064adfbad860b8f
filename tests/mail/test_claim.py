"""Claiming outbox rows (mail/outbox.py): a claim takes at most its limit, so several workers
share the queue and no batch outgrows the claim time-out (after which its rows would be handed to
another worker while still being sent, and arrive twice)."""

from __future__ import annotations

import asyncio

from events_app.domain import outbox

from .helpers import outbox_rows


async def test_a_claim_takes_at_most_its_limit_and_two_claims_never_share_a_row():
    for i in range(12):
        await outbox.enqueue("registration_confirmed", f"p{i}@example.com", {"registration_id": i})

    first = await outbox.claim(4, claim_timeout=600)
    assert sorted(r["id"] for r in first) == [r["id"] for r in (await outbox_rows())[:4]]

    second, third = await asyncio.gather(outbox.claim(3, 600), outbox.claim(3, 600))
    assert len(second) == len(third) == 3
    claimed = [r["id"] for r in first + second + third]
    assert len(set(claimed)) == 10
    assert sorted(r["status"] for r in await outbox_rows()) == ["queued"] * 2 + ["sending"] * 10
