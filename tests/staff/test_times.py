"""Times in the workspace carry their zone (issue 14): the zone staff work in (the latest event's),
written as people read it, "Tue 1 Dec 2026, 12:00 PM EST"."""

from __future__ import annotations

import re

from events_app.domain import outbox
from factories import published_event

TIME_IN_TORONTO = re.compile(r"\w{3} \d{1,2} \w{3} \d{4}, \d{1,2}:\d\d [AP]M E[SD]T")


async def test_audit_mail_and_account_times_have_their_zone(client, csrf):
    await published_event(timezone="America/Toronto")
    await outbox.enqueue("registration_confirmed", "ada@example.org", {"registration_id": 1})
    for path in ("/staff/audit", "/staff/mail", "/staff/account"):
        html = (await client.get(path)).text
        assert TIME_IN_TORONTO.search(html), path
        assert not re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", html), path  # no bare, zoneless stamps


async def test_the_subscriber_list_gives_confirmation_times_with_their_zone(client, csrf):
    """It gave a bare date ("2026-11-30"), the one workspace time without its zone."""
    from subscriber.subscriber_mail import confirmed

    await published_event(timezone="America/Toronto")
    await confirmed("ada@example.org", "Ada")
    html = (await client.get("/staff/subscribers")).text
    row = html[html.index("ada@example.org") :]
    row = row[: row.index("</tr>")]
    assert TIME_IN_TORONTO.search(row), row
