"""Links that work outside the site, and addresses that last.

Every link and image in a bulk email (issue or announcement, both parts) and in the Atom feed's
content is absolute: a mail client or feed reader has no page to resolve `/events/x` or
`images/a.png` against. Each Atom entry keeps one id (`urn:uuid:`, stored) whatever its slug, and
an old archive address answers 301 to the current one. Checked through a real SMTP server.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
import xml.etree.ElementTree as ET
from datetime import datetime
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

from hypothesis import HealthCheck, example, given, settings as hsettings, strategies as st

from events_app import db, markdown, settings
from events_app.domain import issues
from events_app.mail import bulk
from factories import published_event

from .helpers import run_until_settled, subscribers

ATOM = {"a": "http://www.w3.org/2005/Atom"}
BASE = "http://testserver"
HYPOTHESIS = hsettings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

BODY = """\
## Links of every kind

See [the webinar](/events/non-academic-careers-with-impact), [last issue](../bulletin/september-2019),
[here](./notes?a=1&b=2#part), [a query](?page=2), [the cdn](//cdn.example.net/x.png),
[a section](#coming-up), [write to us](mailto:team@example.org), [call](tel:+15551234567),
[évènement](/événements/ünï?q=ü), [bad](javascript:alert(1)) and <https://example.com/abs>.

![A chart](images/chart.png) ![Logo](/static/logo.png "Our logo")
"""


class Links(HTMLParser):
    """Every href and src of an HTML document, in order."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str, str]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.found.append((tag, name, value))


def works_anywhere(url: str) -> bool:
    """A link a mail client or feed reader can follow with no page to resolve it against."""
    if url.startswith("#"):
        return True  # within the same message: kept as written
    parts = urlsplit(url)
    if parts.scheme in ("mailto", "tel"):
        return True
    return parts.scheme in ("http", "https") and bool(parts.netloc) and " " not in url


def text_links(text: str) -> list[str]:
    """The links of a plain-text part: written `<url>` (RFC 3986 appendix C) or bare http(s)."""
    return re.findall(r"<([^<>\s]+)>", text) + re.findall(r"(?<![<\w])(https?://\S+)", text)


def all_absolute(html: str) -> list[str]:
    links = [value for _, _, value in Links(html).found]
    bad = [value for value in links if not works_anywhere(value)]
    assert not bad, bad
    return links


async def released(body: str, slug: str = "october-2019", title: str = "October 2019") -> dict:
    made = await issues.create({"title": title, "slug": slug, "issue_date": "2019-10-15", "body": body})
    await issues.release(made["id"])
    return await issues.get(made["id"])


async def feed_entries(client) -> list[ET.Element]:
    answer = await client.get("/bulletin/feed.xml")
    assert answer.status_code == 200
    return ET.fromstring(answer.content).findall("a:entry", ATOM)


async def test_emailed_issue_and_feed_hold_only_absolute_links(tmp_path, client, smtp_server, worker):  # noqa: F811
    await subscribers(tmp_path, 1)
    await released(BODY)

    await run_until_settled(worker)

    [received] = [r.message for r in smtp_server.received]
    html = received.get_body(("html",)).get_content()
    links = all_absolute(html)
    for expected in (f"{BASE}/events/non-academic-careers-with-impact", f"{BASE}/bulletin/september-2019",
                     f"{BASE}/bulletin/notes?a=1&b=2#part", f"{BASE}/bulletin/october-2019?page=2",
                     "http://cdn.example.net/x.png", "#coming-up", "mailto:team@example.org", "tel:+15551234567",
                     f"{BASE}/%C3%A9v%C3%A9nements/%C3%BCn%C3%AF?q=%C3%BC", "https://example.com/abs",
                     f"{BASE}/bulletin/images/chart.png", f"{BASE}/static/logo.png"):
        assert expected in links, (expected, links)
    assert not any("javascript" in link for link in links)

    text = received.get_body(("plain",)).get_content()
    for link in text_links(text):
        assert works_anywhere(link), (link, text)
    assert f"the webinar <{BASE}/events/non-academic-careers-with-impact>" in " ".join(text.split())  # lines wrap
    assert f"<{BASE}/bulletin/images/chart.png>" in text and "(/events" not in text and "(images/" not in text

    [entry] = await feed_entries(client)
    content = entry.find("a:content", ATOM).text
    feed_links = all_absolute(content)
    assert f"{BASE}/events/non-academic-careers-with-impact" in feed_links
    assert f"{BASE}/bulletin/images/chart.png" in feed_links

    # The archive page may keep them relative: a browser resolves them against the page.
    page = await client.get("/bulletin/october-2019")
    assert 'href="/events/non-academic-careers-with-impact"' in page.text


async def test_an_announcement_carries_absolute_links_in_both_parts(tmp_path, client, auth, smtp_server, worker):  # noqa: F811
    await subscribers(tmp_path, 1, topic="events")
    event = await published_event(description="Read [the programme](programme) and [past talks](/events).\n\n"
                                              "![Speaker](img/speaker.jpg)")
    answer = await client.post(f"/api/v1/events/{event['id']}/announce", headers=auth)
    assert answer.status_code == 202

    await run_until_settled(worker)

    [received] = [r.message for r in smtp_server.received]
    links = all_absolute(received.get_body(("html",)).get_content())
    assert f"{BASE}/events/programme" in links and f"{BASE}/events" in links
    assert f"{BASE}/events/img/speaker.jpg" in links
    text = received.get_body(("plain",)).get_content()
    assert all(works_anywhere(link) for link in text_links(text)), text
    assert f"the programme <{BASE}/events/programme>" in " ".join(text.split()) and "](" not in text


# What people write between the brackets: relative paths of every kind, queries, fragments,
# protocol-relative and absolute addresses, mailto and tel, unicode, and unsafe schemes.
SEGMENT = st.text(alphabet=st.sampled_from("abzAZ09-._~ü日é%"), min_size=0, max_size=8)
PREFIX = st.sampled_from(["", "/", "./", "../", "../../../", "//cdn.example.net/", "https://example.com/",
                          "http://example.com:8080/", "mailto:", "tel:+1", "#", "?", "javascript:", "data:",
                          "vbscript:", "file:///", "ftp://example.com/"])
DEST = st.builds(
    lambda prefix, parts, query, fragment: prefix + "/".join(parts) + query + fragment,
    PREFIX, st.lists(SEGMENT, max_size=3),
    st.sampled_from(["", "?a=1", "?q=ü&x=%20", "?"]), st.sampled_from(["", "#x", "#ü", "#"]),
)
ITEM = st.builds(lambda image, dest: ("![alt]" if image else "[label]") + f"({dest})", st.booleans(), DEST)


@given(items=st.lists(ITEM, min_size=1, max_size=6))
@example(items=["[x](//host/x)", "[y](../../../../y)", "![z](?)", "[w](http:relative)", "[v](javascript:x)"])
@HYPOTHESIS
async def test_every_link_form_becomes_absolute_in_mail_and_feed(client, items):
    for table in ("issue_alias", "outbox", "mailing", "issue"):  # examples share the test's database
        await db.fetch(f"DELETE FROM {table}")
    body = "Links: " + " and ".join(items) + "."
    issue = await released(body)
    page_url = f"{BASE}/bulletin/{issue['slug']}"
    # The links of the archive page, each resolved the way a browser resolves it there.
    on_page = [value for _, _, value in Links(markdown.to_html(body)).found]
    resolved = [value if value.startswith("#") else urljoin(page_url, value) for value in on_page]
    expected = Counter(u for u in resolved if works_anywhere(u))

    shared = bulk.render_issue(issue, settings.get())
    html = shared.html.replace(bulk.MANAGE, f"{BASE}/s/t").replace(bulk.UNSUBSCRIBE, f"{BASE}/s/t/unsubscribe")
    mailed = all_absolute(html)
    assert not expected - Counter(mailed), (expected, mailed)
    for link in text_links(shared.text):
        assert works_anywhere(link), (link, shared.text)
    for url in expected:
        if not url.startswith("#"):
            assert f"<{url}>" in shared.text, (url, shared.text)

    [entry] = await feed_entries(client)
    in_feed = all_absolute(entry.find("a:content", ATOM).text)
    assert not expected - Counter(in_feed), (expected, in_feed)


async def test_renaming_keeps_the_feed_entry_and_old_addresses_redirect(client, auth):
    issue = await released("Hello [the events](/events).", slug="first")
    [before] = await feed_entries(client)
    uid = before.find("a:id", ATOM).text
    assert uid.startswith("urn:uuid:") and "first" not in uid

    for slug in ("second", "third"):
        answer = await client.patch(f"/api/v1/issues/{issue['id']}", json={"slug": slug}, headers=auth)
        assert answer.status_code == 200, answer.text

    [after] = await feed_entries(client)
    assert after.find("a:id", ATOM).text == uid
    assert after.find("a:link[@rel='alternate']", ATOM).get("href") == f"{BASE}/bulletin/third"
    for old in ("first", "second"):
        moved = await client.get(f"/bulletin/{old}", follow_redirects=False)
        assert moved.status_code == 301, (old, moved.status_code)
        assert moved.headers["location"] in ("/bulletin/third", f"{BASE}/bulletin/third")
    page = await client.get("/bulletin/first", follow_redirects=True)  # as a browser would
    assert page.status_code == 200 and '<link rel="canonical" href="http://testserver/bulletin/third">' in page.text

    # Back to an earlier name: that address is the issue's own again, the others redirect to it.
    await client.patch(f"/api/v1/issues/{issue['id']}", json={"slug": "first"}, headers=auth)
    assert (await client.get("/bulletin/first", follow_redirects=False)).status_code == 200
    for old in ("second", "third"):
        moved = await client.get(f"/bulletin/{old}", follow_redirects=False)
        assert moved.status_code == 301 and moved.headers["location"].endswith("/bulletin/first")
    [again] = await feed_entries(client)
    assert again.find("a:id", ATOM).text == uid


async def test_a_new_issue_taking_an_old_slug_wins_over_the_redirect(client, auth):
    """Decision: staff who choose a slug on purpose get it; the old address then shows the new
    issue. A slug made from a title never takes an old address."""
    old = await released("Old", slug="autumn")
    await client.patch(f"/api/v1/issues/{old['id']}", json={"slug": "autumn-2019"}, headers=auth)
    assert (await client.get("/bulletin/autumn", follow_redirects=False)).status_code == 301

    made = await client.post("/api/v1/issues", json={"title": "Autumn", "issue_date": "2020-10-01"}, headers=auth)
    assert made.json()["slug"] == "autumn-2"  # not the old address of another issue

    new = await client.post("/api/v1/issues", json={"title": "New", "slug": "autumn", "body": "New one"}, headers=auth)
    assert new.status_code == 201, new.text
    await issues.release(new.json()["id"])
    page = await client.get("/bulletin/autumn", follow_redirects=False)
    assert page.status_code == 200 and "New one" in page.text
    assert (await client.get("/bulletin/autumn-2019")).status_code == 200
    assert len(await feed_entries(client)) == 2


async def test_issue_uid_is_random_stored_and_given_once_to_old_rows(client):
    a = await issues.create({"title": "A"})
    b = await issues.create({"title": "B"})
    assert a["uid"] and b["uid"] and a["uid"] != b["uid"]
    # A row from before issue.uid existed: it gets one on first use, the same to racing callers.
    await db.fetch("UPDATE issue SET uid = '' WHERE id = {}", a["id"])
    got = await asyncio.gather(*(issues.uid_of(a["id"]) for _ in range(5)))
    assert len(set(got)) == 1 and got[0]
    assert (await issues.get(a["id"]))["uid"] == got[0]
    await issues.release(a["id"])
    [entry] = await feed_entries(client)
    assert entry.find("a:id", ATOM).text == f"urn:uuid:{got[0]}"


def rfc3339(value: str) -> datetime:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_the_feed_is_valid_atom_and_pages_name_their_canonical_address(client):
    await released("Body with [a link](/events).", slug="one", title="One")
    await released("Second", slug="two", title="Two")

    answer = await client.get("/bulletin/feed.xml")
    assert answer.headers["content-type"].startswith("application/atom+xml")
    root = ET.fromstring(answer.content)
    assert root.tag == "{http://www.w3.org/2005/Atom}feed"
    for required in ("id", "title", "updated"):
        assert (root.find(f"a:{required}", ATOM).text or "").strip(), required
    feed_updated = rfc3339(root.find("a:updated", ATOM).text)
    assert root.find("a:author/a:name", ATOM).text.strip()  # the organisation, once for the feed
    assert root.find("a:link[@rel='self']", ATOM).get("href") == f"{BASE}/bulletin/feed.xml"
    entries = root.findall("a:entry", ATOM)
    assert len(entries) == 2 and len({e.find("a:id", ATOM).text for e in entries}) == 2
    for entry in entries:
        assert entry.find("a:title", ATOM).text
        assert urlsplit(entry.find("a:id", ATOM).text).scheme == "urn"
        updated = rfc3339(entry.find("a:updated", ATOM).text)
        assert rfc3339(entry.find("a:published", ATOM).text) <= updated <= feed_updated
        alternate = entry.find("a:link[@rel='alternate']", ATOM).get("href")
        assert alternate.startswith(f"{BASE}/bulletin/")
        content = entry.find("a:content", ATOM)
        assert content.get("type") == "html"
        all_absolute(content.text)
        assert (await client.get(alternate.removeprefix(BASE))).status_code == 200
    # No xml:base anywhere: readers that ignore it must still get working links.
    assert b"xml:base" not in answer.content

    page = await client.get("/bulletin/one")
    assert '<link rel="canonical" href="http://testserver/bulletin/one">' in page.text


async def test_the_demo_issue_register_link_works_in_the_feed_and_a_test_email(client, auth):
    from events_app import demo

    await demo.load(lambda _: None)
    [entry] = await feed_entries(client)
    links = all_absolute(entry.find("a:content", ATOM).text)
    assert f"{BASE}/events/non-academic-careers-with-impact" in links
    [issue] = await issues.released()
    mail = (await client.get(f"/api/v1/issues/{issue['id']}/preview-email", headers=auth)).json()
    assert f"{BASE}/events/non-academic-careers-with-impact" in all_absolute(mail["html"].replace("#preview", BASE))
    assert f"Register here <{BASE}/events/non-academic-careers-with-impact>" in " ".join(mail["text"].split())
    # The event it names answers at that address.
    assert (await client.get("/events/non-academic-careers-with-impact")).status_code == 200
