"""Every kind of email, read as a phone and a screen reader would (issue 14): built the way the
worker builds it (mail/messages.py, and mail/bulk.py for an issue and an announcement) with the
organisation's identity stored, then checked in its HTML (no fixed width over 390 px, images
with alt, one h1 and no skipped level, links with words, no raw long address that cannot wrap,
every text colour at WCAG AA on its background, computed) and headers (From's name is the
organisation's, Reply-To, the postal address in bulk footers), and finally in Chromium at
390x844: nothing wider than the screen and no axe-core violation (landmark rules aside)."""

from __future__ import annotations

import email
import json
import re
from email import policy
from email.message import EmailMessage
from html.parser import HTMLParser

import pytest

from events_app import clock, db, settings
from events_app.domain import events, identity, issues, registrations, subscriptions
from events_app.mail import bulk, messages, render
from events_app.tables import Image, OrgSettings

from .helpers import published_webinar, register

ORG = "Centre for Implementation Research"
REPLY_TO = "hello@implementation.example.org"
POSTAL = "155 College Street, Suite 400\nToronto, ON M5T 1P8\nCanada"
LOGO_DIGEST = "a" * 64
PHONE = 390
LONG_BODY = """Welcome to this issue.

# A big heading

Some text with a [link](https://example.org/a/very/long/address/that/goes/on/and/on/for/ever?with=query&and=more).

### A small heading after it

> A quotation from a panelist, long enough to wrap on a phone screen and keep its styling.

| Role | Where | Salary range and notes |
|------|-------|------------------------|
| Implementation specialist | Toronto, Ontario | 70,000–90,000 CAD, hybrid, three days in the office |
| Knowledge broker | Remote | Varies |

![A panel of four speakers on a stage](https://example.org/images/panel.jpg)

A bare address: https://example.org/another/really/long/address/without/any/break/in/it/at/all/x

```
code that is long enough to need wrapping on a phone screen, yes, really rather long indeed
```
"""


async def _store_identity() -> None:
    await _insert_identity()
    identity.forget()  # read it now, not when fresh() would next look
    await render.refresh()


async def _insert_identity() -> None:
    await Image.insert(
        Image(digest=LOGO_DIGEST, content_type="image/png", width=600, height=150, data=b"\x89PNG")
    ).run()
    await OrgSettings.insert(
        OrgSettings(
            id=1,
            organisation_name=ORG,
            logo_url=f"/media/{LOGO_DIGEST}.png",
            accent_colour="#0b5cad",
            website="https://implementation.example.org",
            reply_to=REPLY_TO,
            postal_address=POSTAL,
            version=3,
        )
    ).run()


def _row(row_id: int, kind: str, payload: dict, recipient: str | None = None) -> dict:
    return {
        "id": row_id,
        "kind": kind,
        "recipient": recipient,
        "payload": json.dumps(payload),
        "created_at": clock.now(),
    }


def _parsed(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


async def every_email() -> dict[str, EmailMessage]:
    """One message of every kind, keyed by its template's name."""
    config = settings.get()
    out: dict[str, EmailMessage] = {}
    event = await published_webinar(
        capacity=1,
        description=LONG_BODY,
        reminders=[60],
        recording_url="https://example.org/recordings/non-academic-careers-with-impact-2026-implementation",
    )
    ada = await register(event, "Ada Lovelace", "ada@example.org")
    grace = await register(event, "Grace Hopper", "grace@example.org")  # waitlisted
    ada_id, grace_id = ada["id"], grace["id"]
    event = await events.get(event["id"])

    async def build(kind: str, payload: dict, name: str | None = None, recipient: str | None = None) -> None:
        out[name or kind] = await messages.build(_row(len(out) + 1, kind, payload, recipient), config)

    await build("registration_confirmed", {"registration_id": ada_id})
    await build("registration_confirmed", {"registration_id": grace_id}, "registration_waitlisted")
    await build("registration_promoted", {"registration_id": ada_id})
    await build("event_changed", {"registration_id": ada_id, "changes": ["starts_at", "join_url"]})
    await build("reminder", {"registration_id": ada_id, "starts_at": event["starts_at"].isoformat(), "offset": 60})
    await build("follow_up_attended", {"registration_id": ada_id}, "follow_up_missed")
    await db.fetch("UPDATE registration SET attended_at = {} WHERE id = {}", clock.now(), ada_id)
    await build("follow_up_attended", {"registration_id": ada_id})
    await build(registrations.LINKS_KIND, {"registration_ids": [ada_id]}, recipient="ada@example.org")
    await build("event_cancelled", {"registration_id": ada_id, "status": "registered"})
    await db.fetch("UPDATE registration SET status = 'cancelled' WHERE id = {}", ada_id)
    await build("registration_cancelled", {"registration_id": ada_id, "was": "registered", "uid": "gone@x"})

    topics = await subscriptions.all_topics()
    await subscriptions.subscribe("lin@example.org", "Lin", {t["slug"]: t["id"] for t in topics[:1]})
    [pending] = await db.fetch("SELECT id FROM subscriber WHERE email = 'lin@example.org'")
    await build("subscription_confirm", {"subscriber_id": pending["id"]})
    subscriber = await subscriptions.get(pending["id"])
    await subscriptions.confirm(subscriptions.confirm_token(subscriber))
    await build("subscription_known", {"subscriber_id": pending["id"]})
    await build("subscription_link", {"subscriber_id": pending["id"]})

    subscriber = await subscriptions.get(pending["id"])
    created = await issues.create({"title": "October 2019", "issue_date": "2019-10-15", "body": LONG_BODY})
    issue = await issues.get(created["id"])
    shared = bulk.render_issue(issue, config)
    out["issue"] = _parsed(
        bulk.compose(shared, {"id": 90, "created_at": None}, subscriber, subscriber["email"], config).data
    )
    shared = bulk.render_announcement(event, topics[:2], config)
    out["announcement"] = _parsed(
        bulk.compose(shared, {"id": 91, "created_at": None}, subscriber, subscriber["email"], config).data
    )
    return out


# -- reading the HTML ----------------------------------------------------------------------------

VOID = {"br", "img", "meta", "link", "hr", "input", "source", "col", "area", "base", "wbr"}
WRAPS = re.compile(r"overflow-wrap:\s*anywhere|word-break:\s*break-all|word-wrap:\s*anywhere")


def _style(attrs: dict) -> dict[str, str]:
    out = {}
    for item in (attrs.get("style") or "").split(";"):
        if ":" in item:
            key, value = item.split(":", 1)
            out[key.strip().lower()] = value.strip().lower()
    return out


def _hex(value: str | None) -> str | None:
    if not value:
        return None
    found = re.search(r"#([0-9a-f]{6}|[0-9a-f]{3})\b", value)
    if not found:
        return None
    code = found.group(1)
    return "#" + ("".join(c * 2 for c in code) if len(code) == 3 else code)


class Layout(HTMLParser):
    """What the checks need, gathered in one pass over an email's HTML (CSS already inlined)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[dict] = [{"tag": "#root", "color": "#000000", "background": "#ffffff", "wraps": False}]
        self.headings: list[int] = []
        self.images: list[dict] = []
        self.links: list[dict] = []
        self.widths: list[str] = []
        self.pairs: set[tuple[str, str, str]] = set()  # (colour, background, sample text)
        self.raw_urls: list[str] = []

    def handle_starttag(self, tag: str, attr_list: list) -> None:
        attrs = {k: (v or "") for k, v in attr_list}
        style = _style(attrs)
        parent = self.stack[-1]
        for key, value in style.items():
            if key in ("width", "min-width"):
                for number in re.findall(r"(\d+(?:\.\d+)?)px", value):
                    if float(number) > PHONE:
                        self.widths.append(f"<{tag}> {key}: {value}")
        if attrs.get("width", "").isdigit() and int(attrs["width"]) > PHONE:
            self.widths.append(f"<{tag} width={attrs['width']}>")
        if re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))
        if tag == "img":
            self.images.append(attrs)
            for link in self.links:
                if link["open"]:
                    link["text"] += " " + attrs.get("alt", "")
        node = {
            "tag": tag,
            "color": _hex(style.get("color")) or parent["color"],
            "background": _hex(style.get("background-color") or style.get("background")) or parent["background"],
            "wraps": parent["wraps"] or bool(WRAPS.search(attrs.get("style") or "")),
            "button": parent.get("button") or "button" in (attrs.get("class") or "").split(),
        }
        if tag == "a":
            self.links.append({"href": attrs.get("href", ""), "text": "", "open": True})
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i]["tag"] == tag:
                del self.stack[i:]
                break
        if tag == "a":
            for link in reversed(self.links):
                if link["open"]:
                    link["open"] = False
                    break

    def handle_data(self, data: str) -> None:
        node = self.stack[-1]
        if node["tag"] in ("style", "title", "head", "script") or not data.strip():
            return
        for link in self.links:
            if link["open"]:
                link["text"] += data
        self.pairs.add((node["color"], node["background"], data.strip()[:40]))
        for url in re.findall(r"https?://\S{25,}", data):
            if not (node["wraps"] or node.get("button")):
                self.raw_urls.append(url)


def layout_of(html: str) -> Layout:
    reader = Layout()
    reader.feed(html)
    reader.close()
    return reader


def html_of(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


def text_of(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


# -- the checks ----------------------------------------------------------------------------------

EXPECTED = {
    "registration_confirmed", "registration_waitlisted", "registration_promoted", "registration_cancelled",
    "event_changed", "event_cancelled", "reminder", "follow_up_attended", "follow_up_missed",
    "registration_links", "subscription_confirm", "subscription_known", "subscription_link",
    "issue", "announcement",
}  # fmt: skip


TEXT_SIGNED_ELSEWHERE: set[str] = set()  # every kind signs its text part with _signature.txt


@pytest.fixture
async def emails():
    await _store_identity()
    try:
        yield await every_email()
    finally:
        identity.forget()


async def test_every_kind_of_email_is_covered(emails):
    kinds = {p.name for p in render.emails_dir().iterdir() if p.is_dir() and (p / "body.html").is_file()}
    assert kinds == EXPECTED, "a new kind of email: add it to every_email()"
    assert set(emails) == EXPECTED


async def test_every_email_fits_a_phone_and_reads_in_order(emails):
    for kind, message in emails.items():
        page = layout_of(html_of(message))
        assert not page.widths, (kind, page.widths)
        assert page.images and all("alt" in img for img in page.images), kind
        logo = page.images[0]
        assert logo["alt"] == ORG and logo["src"] == f"{settings.get().base_url.rstrip('/')}/media/{LOGO_DIGEST}.png"
        assert (logo["width"], logo["height"]) == ("192", "48"), kind  # 600x150 at 48 px high
        assert page.headings.count(1) == 1 and page.headings[0] == 1, (kind, page.headings)
        for before, after in zip(page.headings, page.headings[1:], strict=False):
            assert after <= before + 1, (kind, page.headings)
        for link in page.links:
            assert link["text"].strip(), (kind, link["href"])
        assert not page.raw_urls, (kind, page.raw_urls)


async def test_every_colour_pair_meets_aa(emails):
    for kind, message in emails.items():
        for colour, background, sample in layout_of(html_of(message)).pairs:
            ratio = render.contrast(colour, background)
            assert ratio >= render.AA, f"{kind}: {colour} on {background} is {ratio:.2f}:1 at {sample!r}"


async def test_the_issue_body_has_the_archive_pages_styles(emails):
    page = html_of(emails["issue"])
    assert "<blockquote" in page and "border-left: 4px solid #0b5cad" in page
    assert re.search(r"<th[^>]*style=\"[^\"]*background: #e5e7eb", page)
    assert re.search(r"<img[^>]*alt=\"A panel of four speakers on a stage\"[^>]*style=\"[^\"]*max-width: 100%", page)
    # One stylesheet for the email and the web page (the staff preview includes the same file).
    css = (render.emails_dir().parent / "templates" / "bulletin" / "_issue_body.css").read_text()
    assert ".issue-body blockquote" in css and "#preview-web blockquote" in css


async def test_every_email_is_sent_and_signed_by_the_organisation(emails):
    for kind, message in emails.items():
        sender = message["From"].addresses[0]
        assert (sender.display_name, sender.addr_spec) == (ORG, settings.get().mail_from_address), kind
        assert [a.addr_spec for a in message["Reply-To"].addresses] == [REPLY_TO], kind
        assert f"— {ORG}" in html_of(message), kind
        # The text parts of event_changed, event_cancelled and registration_links sign with
        # `organizer_name` (the same name) rather than emails/_signature.txt.
        assert f"— {ORG}" in text_of(message) or (kind in TEXT_SIGNED_ELSEWHERE and ORG in text_of(message)), kind
        assert "https://implementation.example.org" in text_of(message) or kind in TEXT_SIGNED_ELSEWHERE, kind


async def test_bulk_mail_says_why_how_to_leave_and_where_the_sender_is(emails):
    for kind in ("issue", "announcement"):
        message = emails[kind]
        html, text = html_of(message), text_of(message)
        for line in POSTAL.splitlines():
            assert line in text and line in html, (kind, line)
        assert "You receive this email because you subscribed" in text and ">Unsubscribe</a>" in html
        assert ">Your preferences</a>" in html and "/unsubscribe" in text
    for kind in ("registration_confirmed", "subscription_confirm"):  # transactional: not required
        assert "You receive this email because you subscribed" not in text_of(emails[kind])


async def test_without_a_stored_identity_the_configured_sender_stays(emails):
    """Before staff store the identity, EVENTS_MAIL_FROM's display name is the first default."""
    identity.forget()
    await db.fetch("DELETE FROM org_settings")
    await render.refresh()
    event = await published_webinar()
    ada = await register(event, "Ada Lovelace", "ada2@example.org")
    message = await messages.build(_row(1, "registration_confirmed", {"registration_id": ada["id"]}), settings.get())
    assert message["From"].addresses[0].display_name == "Implementation Centre"
    assert message["Reply-To"] is None


def test_an_accent_without_aa_contrast_gives_way_to_the_default():
    assert render.accent("#ffcc00") == identity.DEFAULT_ACCENT  # yellow under white text: 1.6:1
    assert render.accent("#1e6b35") == "#1e6b35"
    assert render.accent("red; background:url(x)") == identity.DEFAULT_ACCENT


def test_markdown_headings_sit_under_the_title_without_gaps():
    from events_app import markdown

    html = markdown.to_html("# One\n\n#### Four\n\n## Two")
    assert re.findall(r"<h(\d)>", html) == ["2", "4", "3"]


# -- in Chromium ----------------------------------------------------------------------------------


async def test_every_email_in_chromium_at_390_has_no_sideways_scroll_and_no_axe_violation(emails, chromium_path):
    # Imported here: Playwright and axe are the `browser` extra, which `make test-floors` (the rest
    # of this module, on the lowest versions) does not install; it deselects this test instead.
    from browserkit import EMAIL_SKIPPED_RULES, axe_violations, browser_page, show_email

    problems = []
    async with browser_page(chromium_path, "phone") as page:
        for kind, message in emails.items():
            await show_email(page, message)
            width = await page.evaluate("document.documentElement.scrollWidth")
            if width > PHONE:
                problems.append(f"{kind}: scrollWidth {width}")
            for v in await axe_violations(page, EMAIL_SKIPPED_RULES):
                problems.append(f"{kind}: {v['id']} at {[n.get('target') for n in v.get('nodes', [])][:3]}")
    assert not problems, "\n".join(problems)


async def test_the_issue_page_says_the_month_of_its_issue_date_not_of_its_release(client):
    created = await issues.create({"title": "Autumn", "issue_date": "2019-10-15", "body": "> quoted"})
    await issues.release(created["id"])
    issue = await issues.get(created["id"])
    page = (await client.get(f"/bulletin/{issue['slug']}")).text
    assert "originally appeared in the October 2019 issue" in page
    assert f"{clock.now():%B %Y}" not in page  # the release's month (today's) is not the issue's
    # The body has the one stylesheet the email and the staff preview use.
    assert '<article class="issue-body">' in page and ".issue-body blockquote" in page


async def test_the_archive_feed_is_authored_by_the_organisation(client):
    await _store_identity()
    try:
        created = await issues.create({"title": "Autumn", "issue_date": "2019-10-15", "body": "Hi"})
        await issues.release(created["id"])
        feed = (await client.get("/bulletin/feed.xml")).text
        assert f"<author><name>{ORG}</name>" in feed
    finally:
        identity.forget()


async def test_the_worker_reads_the_identity_staff_saved_before_each_batch():
    """The worker is its own process: it must not keep the identity it started with."""
    from events_app.mail.transport import MemoryTransport
    from events_app.mail.worker import Worker

    identity.forget()
    await db.fetch("DELETE FROM org_settings")
    transport = MemoryTransport()
    worker = Worker(settings.get(), transport)
    event = await published_webinar()
    await register(event, "Ada Lovelace", "ada@example.org")
    assert await worker.run_once() == 1
    assert transport.messages[-1]["From"].addresses[0].display_name == "Implementation Centre"

    await _insert_identity()  # saved in the workspace, by another process: no snapshot here
    identity.forget()
    await register(event, "Grace Hopper", "grace@example.org")
    try:
        assert await worker.run_once() == 1
        sent = transport.messages[-1]
        assert sent["From"].addresses[0].display_name == ORG
        assert [a.addr_spec for a in sent["Reply-To"].addresses] == [REPLY_TO]
    finally:
        identity.forget()


async def test_a_mailing_renders_again_once_the_identity_changes():
    """Bulk mail is rendered once per mailing and kept: a new identity must not wait for a new
    issue version (a postal address added for CASL reaches the emails not yet sent)."""
    from events_app.mail.bulk_builder import Builder

    identity.forget()
    await db.fetch("DELETE FROM org_settings")
    await render.refresh()
    created = await issues.create({"title": "October 2019", "issue_date": "2019-10-15", "body": "Hi"})
    builder = Builder(settings.get())
    mailing = {"id": 1, "kind": "issue", "issue": created["id"], "topics": "[]"}
    before = await builder._shared_for(mailing)
    assert before.sender_name == "Implementation Centre" and "Toronto" not in before.text
    try:
        await _store_identity()
        after = await builder._shared_for(mailing)
        assert after is not before and after.sender_name == ORG and after.reply_to == REPLY_TO
        assert "Toronto, ON M5T 1P8" in after.text and "Toronto, ON M5T 1P8" in after.html
    finally:
        identity.forget()
