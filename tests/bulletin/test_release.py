"""Releasing an issue: one email per confirmed subscriber, with the bulk headers, through a real
SMTP server (aiosmtpd on loopback), and a one-click unsubscribe link that works."""

from __future__ import annotations

import re
from collections import Counter

from events_app import db, settings
from events_app.domain import issues, mailings, subscriptions

from .helpers import new_issue, run_until_settled, subscribers

# The bulletin's own one-click URL: it leaves the bulletin (each topic is a list of its own).
UNSUB = re.compile(r"<(https?://[^>]+/s/([^/>]+)/unsubscribe\?topic=bulletin)>")


async def test_release_to_2000_subscribers(tmp_path, client, auth, smtp_server, worker):  # noqa: F811
    addresses = await subscribers(tmp_path, 2000)
    # People who must not receive it: pending, unsubscribed, another topic only.
    await subscriptions.subscribe("pending@example.org", "", await subscriptions.topic_ids(["bulletin"]))
    await subscribers(tmp_path, 3, topic="events", start=90000)
    issue = await new_issue()

    answer = await client.get(f"/api/v1/issues/{issue['id']}/recipients", headers=auth)
    assert answer.json() == {"recipients": 2000}
    answer = await client.post(f"/api/v1/issues/{issue['id']}/release", headers=auth)
    assert answer.status_code == 202, answer.text
    assert answer.json()["recipients"] == 2000

    await run_until_settled(worker)

    received = [r for r in smtp_server.received if r.message["Subject"].startswith("Implementation in Action")]
    recipients = Counter(a for r in received for a in r.rcpt_tos)
    assert len(received) == 2000
    assert set(recipients) == set(addresses) and max(recipients.values()) == 1
    ids = {r.message["Message-ID"] for r in received}
    assert len(ids) == 2000

    tokens = {}
    for r in received:
        m = r.message
        to = r.rcpt_tos[0]
        assert m["To"].addresses[0].addr_spec == to
        assert m["List-Id"] == f'"Implementation in Action" <bulletin.{settings.get().host}>'
        assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        https, token = UNSUB.search(m["List-Unsubscribe"]).groups()
        assert "<mailto:" in m["List-Unsubscribe"]
        text = m.get_body(("plain",)).get_content()
        html = m.get_body(("html",)).get_content()
        number = int(to.removeprefix("reader").split("@")[0])
        assert text.startswith(f"Hello Reader {number},")
        assert f"Hello Reader {number}," in html
        assert "Implementation positions you never knew existed." in text
        assert 'src="https://example.org/team.png"' in html
        assert f"/s/{token}/unsubscribe" in text and f"/s/{token}" in html
        assert m["Date"] and m["Message-ID"]
        tokens[to] = https

    # Every one-click link works: POST with no cookie and no CSRF token -> 200, unsubscribed.
    for to, url in tokens.items():
        answer = await client.post(url.split("127.0.0.1:8000", 1)[-1], content=b"List-Unsubscribe=One-Click",
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 200, (to, answer.status_code)
    rows = await db.fetch("SELECT status, count(*) AS n FROM subscriber GROUP BY status")
    assert {r["status"]: r["n"] for r in rows} == {"unsubscribed": 2000, "pending": 1, "confirmed": 3}

    got = (await client.get(f"/api/v1/issues/{issue['id']}", headers=auth)).json()
    assert got["status"] == "released"
    assert {k: got["delivery"][k] for k in ("queued", "sending", "sent", "failed", "skipped", "total")} == {
        "queued": 0, "sending": 0, "sent": 2000, "failed": 0, "skipped": 0, "total": 2000}
    assert got["delivery"]["status"] == "done"


async def test_people_who_join_after_the_release_are_not_added(tmp_path, smtp_server, worker):  # noqa: F811
    await subscribers(tmp_path, 5)
    issue = await new_issue()
    await issues.release(issue["id"])
    await subscribers(tmp_path, 3, start=100)  # confirmed a moment after the release
    await run_until_settled(worker)
    assert sorted(a for r in smtp_server.received for a in r.rcpt_tos) == sorted(
        f"reader{n}@example.org" for n in range(5))
    assert (await issues.delivery(issue["id"]))["sent"] == 5


async def test_someone_who_leaves_after_the_release_is_skipped(tmp_path, smtp_server, worker):  # noqa: F811
    addresses = await subscribers(tmp_path, 4)
    issue = await new_issue()
    await issues.release(issue["id"])
    await mailings.tick()  # the ledger is written with all four
    row = (await db.fetch("SELECT * FROM subscriber WHERE email = {}", addresses[0]))[0]
    await subscriptions.unsubscribe(subscriptions.manage_token(row))
    await run_until_settled(worker)
    assert sorted(a for r in smtp_server.received for a in r.rcpt_tos) == sorted(addresses[1:])
    delivery = await issues.delivery(issue["id"])
    assert (delivery["sent"], delivery["skipped"], delivery["total"]) == (3, 1, 4)
