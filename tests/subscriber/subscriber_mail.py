"""Helpers for the subscriber tests: subscribing through the domain, reading what arrived at the
loopback SMTP server, and the links in it.

(No conftest.py here: tests/subscriber is not a package, so one would clash with tests/conftest.py.
Test modules import the fixtures they use from mail.sending.)
"""

from __future__ import annotations

import re
from datetime import timedelta
from email.message import EmailMessage
from html import unescape
from html.parser import HTMLParser

from events_app import db, settings
from events_app.domain import subscriptions
from mail.helpers import html_of, text_of

BULLETIN = "Implementation in Action"


async def subscribe(email: str, name: str = "", topics: list[str] | None = None) -> dict:
    """Subscribe through the domain (as the web layer's background task does); the row after."""
    await subscriptions.subscribe(email, name, await subscriptions.topic_ids(topics))
    return await row(email)


async def row(email: str) -> dict:
    """The subscriber with this address, with `topics`."""
    found = await db.fetch("SELECT id FROM subscriber WHERE email_hash = {}", subscriptions.email_hash(email))
    assert found, f"no subscriber for {email}"
    return await subscriptions.get(found[0]["id"])


async def confirmed(email: str, name: str = "", topics: list[str] | None = None) -> dict:
    """A confirmed subscriber whose confirmation was sent long enough ago that a new request is
    not throttled."""
    subscriber = await subscribe(email, name, topics)
    await subscriptions.confirm(subscriptions.confirm_token(subscriber))
    await forget_throttle(email)
    return await row(email)


async def forget_throttle(email: str) -> None:
    """Move the last confirmation and link emails out of the re-send window."""
    earlier = subscriptions.now() - subscriptions.RESEND_EVERY - timedelta(minutes=1)
    key = subscriptions.email_hash(email)
    await db.fetch("UPDATE subscriber SET confirm_sent_at = {} WHERE email_hash = {}", earlier, key)
    await db.fetch(
        "UPDATE subscriber SET link_sent_at = {} WHERE email_hash = {} AND link_sent_at IS NOT NULL", earlier, key
    )


def confirm_url(subscriber: dict) -> str:
    return f"{settings.get().base_url}/s/confirm/{subscriptions.confirm_token(subscriber)}"


def manage_url(subscriber: dict) -> str:
    return f"{settings.get().base_url}/s/{subscriptions.manage_token(subscriber)}"


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.hrefs.extend(value for key, value in attrs if key in ("href", "src", "action") and value)


_URL = re.compile(r"https?://[^\s<>\"')\]]+")


def links_in(message: EmailMessage) -> set[str]:
    """Every link in a message: href/src/action attributes of its HTML and every bare URL in its
    text and HTML parts."""
    html, text = html_of(message), text_of(message)
    parser = _Hrefs()
    parser.feed(html)
    found = set(parser.hrefs) | set(_URL.findall(text)) | set(_URL.findall(unescape(html)))
    return {url.rstrip(".,;:") for url in found}


def site_links(message: EmailMessage) -> set[str]:
    """The links in `message` that point at this site (EVENTS_BASE_URL)."""
    base = settings.get().base_url.rstrip("/")
    return {u for u in links_in(message) if u == base or u.startswith(base + "/")}


async def snapshot() -> dict[str, list[dict]]:
    """Every row that a subscriber's or registrant's action could change, in full."""
    from events_app.tables import ALL_TABLES

    return {
        table._meta.tablename: await db.fetch(f"SELECT * FROM {table._meta.tablename} ORDER BY id")
        for table in ALL_TABLES
    }


def one_link(message: EmailMessage, path_pattern: str) -> str:
    """The one distinct site link in `message` whose path matches `path_pattern` in full."""
    found = {u for u in site_links(message) if re.fullmatch(path_pattern, path_of(u))}
    assert len(found) == 1, f"expected one link like {path_pattern}, found {sorted(found)}"
    return found.pop()


def path_of(url: str) -> str:
    """The path (and query) of a link on this site, for the in-process client."""
    base = settings.get().base_url.rstrip("/")
    assert url.startswith(base), url
    return url[len(base):] or "/"
