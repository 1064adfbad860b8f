"""Must show 2: link scanners and previews fetch every link in an email by GET, so no GET may
change anything. Through a full flow (subscribe, register with the bulletin box ticked, confirm,
"already subscribed", "email me my link" before and after unsubscribing, an issue of the
bulletin and an event announcement, a cancelled registration) every message that reaches the SMTP server is read, every link to this site in it
(href attributes and bare URLs, text and HTML parts) is fetched by GET, and every table is
compared before and after: nothing changed. Fetched when the message arrives (the links are live)
and once more at the end."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.message import EmailMessage

from events_app import db
from events_app.domain import events, issues, mailings, registrations, subscriptions
from mail.helpers import published_webinar
from mail.sending import drain
from subscriber_mail import forget_throttle, manage_url, path_of, row, site_links, snapshot


class Scanner:
    """Fetches every site link in every new message, as a mail scanner does."""

    def __init__(self, client, smtp_server) -> None:
        self.client, self.smtp_server = client, smtp_server
        self.seen: list[EmailMessage] = []
        self.fetched: dict[str, int] = {}

    async def scan_new(self, worker) -> list[str]:
        await drain(worker)
        new = self.smtp_server.messages()[len(self.seen):]
        self.seen.extend(new)
        for message in new:
            assert site_links(message), f"no links found in {message['Subject']!r}"
            await self._fetch_all(site_links(message), live=True)
        return [str(m["Subject"]) for m in new]

    async def _fetch_all(self, links: set[str], *, live: bool) -> None:
        before = await snapshot()
        for url in sorted(links):
            answer = await self.client.get(path_of(url), follow_redirects=False)
            self.fetched[url] = answer.status_code
            assert answer.status_code < 500, url
            if live:  # a link in a message that just arrived works
                assert answer.status_code < 400, f"{url} answered {answer.status_code}"
        assert await snapshot() == before, "a GET of a link in an email changed the database"

    async def rescan_everything(self) -> None:
        await self._fetch_all(set().union(*(site_links(m) for m in self.seen)), live=False)


async def test_no_link_in_any_message_changes_anything_when_fetched(client, smtp_server, worker):
    scan = Scanner(client, smtp_server)
    event = await published_webinar()

    await client.post("/api/v1/subscribers", json={"email": "ada@example.org", "name": "Ada", "topics": ["bulletin", "events"]})
    assert await scan.scan_new(worker) == ["Please confirm your subscription"]
    assert (await row("ada@example.org"))["status"] == "pending", "the scan confirmed the subscription"

    registered = await client.post(
        f"/api/v1/events/{event['id']}/registrations",
        json={"name": "Grace Hopper", "email": "grace@example.org", "subscribe": True},
    )
    assert registered.status_code == 201
    subjects = await scan.scan_new(worker)
    assert sorted(subjects) == sorted([
        f"You're registered: {event['title']}", "Please confirm your subscription to Implementation in Action",
    ])
    assert (await row("grace@example.org"))["status"] == "pending"
    (grace_reg,) = await db.fetch("SELECT status FROM registration")
    assert grace_reg["status"] == "registered", "the scan cancelled the registration"

    ada = await row("ada@example.org")
    await client.post(f"/s/confirm/{subscriptions.confirm_token(ada)}")
    await forget_throttle("ada@example.org")
    await client.post("/api/v1/subscribers", json={"email": "ada@example.org"})
    assert await scan.scan_new(worker) == ["You're already subscribed"]
    await client.post("/s/link", data={"email": "ada@example.org"})
    assert await scan.scan_new(worker) == ["Your link to your subscription preferences"]
    assert (await row("ada@example.org"))["status"] == "confirmed", "the scan unsubscribed someone"

    # Bulk mail: an issue of the bulletin and an event announcement, with their unsubscribe links.
    issue = await issues.create({"title": "October 2019", "body": "News. [Register here](/events)"})
    await issues.release(issue["id"])
    await mailings.tick()
    assert await scan.scan_new(worker) == ["Implementation in Action: October 2019"]
    await mailings.announce(event["id"])
    await mailings.tick()
    assert (await scan.scan_new(worker))[0].startswith(event["title"])
    assert (await row("ada@example.org"))["status"] == "confirmed", "the scan unsubscribed someone"

    await client.post(path_of(manage_url(ada)) + "/unsubscribe")
    await forget_throttle("ada@example.org")
    await client.post("/s/link", data={"email": "ada@example.org"})
    assert await scan.scan_new(worker) == ["Your link to your subscription preferences"]

    (reg,) = await db.fetch("SELECT * FROM registration")
    await client.post(f"/r/{registrations.personal_token(reg)}/cancel")
    assert (await scan.scan_new(worker))[0].startswith("Your registration is cancelled")

    await scan.rescan_everything()
    assert len(scan.seen) == 9
    fetched = {path_of(u).split("/")[1] for u in scan.fetched}
    assert {"s", "r", "j", "events", "bulletin"} <= fetched, fetched
    assert any("/s/confirm/" in u for u in scan.fetched) and any(u.endswith("/unsubscribe") for u in scan.fetched)


async def test_the_join_link_fetched_while_the_doors_are_open_changes_nothing(client, smtp_server, worker):
    soon = datetime.now(timezone.utc) + timedelta(minutes=30)
    event = await events.create({
        "title": "Starting soon", "starts_at": soon.isoformat(), "ends_at": (soon + timedelta(hours=1)).isoformat(),
        "timezone": "UTC", "join_url": "https://meet.example.com/room", "doors_open_minutes": 60,
    })
    await events.publish(event["id"])
    await client.post(f"/api/v1/events/{event['id']}/registrations", json={"name": "Ada", "email": "ada@example.org"})
    scan = Scanner(client, smtp_server)
    # The confirmation holds the join link while the doors are open: the scanner's GET of it
    # shows the page that joins by POST, and records no attendance (scan_new compares tables).
    assert await scan.scan_new(worker) == ["You're registered: Starting soon"]
    assert any("/j/" in url for url in scan.fetched)
    assert [r["attended_at"] for r in await db.fetch("SELECT attended_at FROM registration")] == [None]
    # The person's own click (the page's POST) records it and takes them in.
    joined = await client.post(path_of(next(u for u in scan.fetched if "/j/" in u)), follow_redirects=False)
    assert joined.status_code == 303 and joined.headers["location"] == "https://meet.example.com/room"
    assert [r["attended_at"] is not None for r in await db.fetch("SELECT attended_at FROM registration")] == [True]
