"""Each topic is its own list (issue 12): the one-click unsubscribe in an events announcement
leaves the events announcements and nothing else; the bulletin keeps coming. The preference
centre's "leave everything" still leaves everything.

Mail goes through the real worker to the loopback SMTP server; the one-click POSTs are what a
mail client sends (RFC 8058: no cookie, no CSRF token, the body `List-Unsubscribe=One-Click`).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from events_app import db, settings
from events_app.domain import importer, issues, mailings
from events_app.mail import verp
from bulletin.helpers import new_issue, run_until_settled
from mail.helpers import published_webinar

ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}
HTTPS = re.compile(r"<(https?://[^>]+)>")
MAILTO = re.compile(r"<mailto:([^>]+)>")


async def readers(tmp_path, topics: list[str], count: int = 2) -> list[str]:
    addresses = [f"reader{n}@example.org" for n in range(count)]
    path = tmp_path / "readers.csv"
    path.write_text("email,name\n" + "".join(f"{a},Reader {n}\n" for n, a in enumerate(addresses)))
    await importer.import_csv(path, topics)
    return addresses


def latest_to(sink, address: str, subject_start: str):
    found = [m for m in sink.to(address) if str(m["Subject"]).startswith(subject_start)]
    assert found, (address, subject_start)
    return found[-1]


async def topics_of(address: str) -> list[str]:
    rows = await db.fetch(
        "SELECT t.slug FROM subscription s JOIN topic t ON t.id = s.topic JOIN subscriber r ON r.id = s.subscriber "
        "WHERE r.email = {} ORDER BY t.slug", address,
    )
    return [r["slug"] for r in rows]


async def one_click(client, url: str):
    parts = urlsplit(url)
    return await client.post(parts.path + (f"?{parts.query}" if parts.query else ""),
                             content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)


async def test_leaving_the_events_list_keeps_the_bulletin(tmp_path, client, smtp_server, worker):  # noqa: F811
    ada, grace = await readers(tmp_path, ["bulletin", "events"])
    event = await published_webinar()
    await mailings.announce(event["id"])
    await run_until_settled(worker)
    announcement = latest_to(smtp_server, ada, event["title"][:20])
    host = settings.get().host
    assert announcement["List-Id"] == f'"events" <events.{host}>' or announcement["List-Id"].endswith(f"<events.{host}>")
    [url] = HTTPS.findall(announcement["List-Unsubscribe"])
    assert url.endswith("/unsubscribe?topic=events")
    [mailto] = MAILTO.findall(announcement["List-Unsubscribe"])
    assert verp.parse(mailto)[0] == "u" and "?subject=" not in announcement["List-Unsubscribe"]

    first = await one_click(client, url)
    again = await one_click(client, url)

    assert first.status_code == again.status_code == 200
    assert "no more emails from" in first.text and first.text == again.text
    assert "set-cookie" not in first.headers
    assert await topics_of(ada) == ["bulletin"] and await topics_of(grace) == ["bulletin", "events"]
    status = (await db.fetch("SELECT status FROM subscriber WHERE email = {}", ada))[0]["status"]
    assert status == "confirmed"

    # The next issue reaches Ada; the next announcement does not.
    issue = await new_issue(title="November 2019")
    await issues.release(issue["id"])
    await mailings.announce(event["id"], again=True)
    smtp_server.received.clear()
    await run_until_settled(worker)
    bulletin = latest_to(smtp_server, ada, "Implementation in Action")
    assert bulletin["List-Id"].endswith(f"<bulletin.{host}>")
    assert HTTPS.findall(bulletin["List-Unsubscribe"])[0].endswith("/unsubscribe?topic=bulletin")
    assert [str(m["Subject"]) for m in smtp_server.to(ada)] == [str(bulletin["Subject"])]
    assert len(smtp_server.to(grace)) == 2

    # The issue's own one-click: the last topic gone, Ada is unsubscribed (and her links retired).
    answer = await one_click(client, HTTPS.findall(bulletin["List-Unsubscribe"])[0])
    assert answer.status_code == 200
    status = (await db.fetch("SELECT status FROM subscriber WHERE email = {}", ada))[0]["status"]
    assert status == "unsubscribed" and await topics_of(ada) == []


async def test_the_page_offers_this_list_or_everything(tmp_path, client, smtp_server, worker):  # noqa: F811
    [ada] = await readers(tmp_path, ["bulletin", "events"], count=1)
    event = await published_webinar()
    await mailings.announce(event["id"])
    await run_until_settled(worker)
    [url] = HTTPS.findall(latest_to(smtp_server, ada, event["title"][:20])["List-Unsubscribe"])
    path = urlsplit(url).path

    page = await client.get(f"{path}?topic=events")

    assert page.status_code == 200
    assert f'action="{path}?topic=events"' in page.text and f'action="{path}"' in page.text
    assert await topics_of(ada) == ["bulletin", "events"]  # a GET changes nothing

    # "Unsubscribe from everything" (no topic): out of every list.
    everything = await one_click(client, path)
    assert everything.status_code == 200 and "You are unsubscribed" in everything.text
    status = (await db.fetch("SELECT status FROM subscriber WHERE email = {}", ada))[0]["status"]
    assert status == "unsubscribed"


async def test_an_unknown_topic_in_the_url_still_unsubscribes(tmp_path, client, smtp_server, worker):  # noqa: F811
    """A mail client's one-click must act: a topic we no longer know leaves everything."""
    [ada] = await readers(tmp_path, ["bulletin", "events"], count=1)
    event = await published_webinar()
    await mailings.announce(event["id"])
    await run_until_settled(worker)
    [url] = HTTPS.findall(latest_to(smtp_server, ada, event["title"][:20])["List-Unsubscribe"])

    answer = await one_click(client, url.replace("topic=events", "topic=gone"))

    assert answer.status_code == 200
    status = (await db.fetch("SELECT status FROM subscriber WHERE email = {}", ada))[0]["status"]
    assert status == "unsubscribed"
