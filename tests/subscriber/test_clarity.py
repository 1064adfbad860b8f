"""Subscriber clarity (issue 14): an unsubscribed preference page says so and offers "Subscribe
again" (confirmed by email) instead of a Save that silently re-subscribes; "Delete me" behind a
confirmation page; the subscribe page shows recent issues and how often the bulletin comes; the
check-your-inbox page repeats the address and offers a resend and a correction."""

from __future__ import annotations

import re
from html import unescape

import pytest
from subscriber_mail import confirmed, manage_url, path_of, row, snapshot

from events_app import db
from events_app.domain import issues, subscriptions


async def _unsubscribed(client, email: str = "ada@example.org", topics: list[str] | None = None) -> str:
    """A confirmed subscriber who then unsubscribed (one click); the path of their current page."""
    subscriber = await confirmed(email, "Ada", topics or ["events"])
    assert (await client.post(path_of(manage_url(subscriber)) + "/unsubscribe")).status_code == 200
    return path_of(manage_url(await row(email)))


async def _confirmations(email: str) -> int:
    found = await db.fetch("SELECT id FROM outbox WHERE kind = 'subscription_confirm' AND recipient = {}", email)
    return len(found)


async def test_the_unsubscribed_page_says_so_and_offers_subscribe_again_not_save(client):
    manage = await _unsubscribed(client)
    page = (await client.get(manage)).text
    assert "You are unsubscribed" in page and "we send you nothing" in page
    assert '<button type="submit">Subscribe again</button>' in page
    assert 'value="save"' not in page and "Unsubscribe from everything" not in page


async def test_save_while_unsubscribed_does_not_resubscribe(client):
    """Before: a Save with a ticked box on an unsubscribed page made the address confirmed again,
    with no email to its owner. Now the opt-out stands until the owner confirms by email."""
    manage = await _unsubscribed(client)
    sent = await _confirmations("ada@example.org")
    answer = await client.post(manage, data={"action": "save", "topics": ["bulletin"], "name": "Ada K"})
    assert answer.status_code == 303 and answer.headers["location"] == f"{manage}?saved=resubscribe"
    after = await row("ada@example.org")
    assert (after["status"], after["requested"], after["name"]) == ("unsubscribed", ["bulletin"], "Ada K")
    assert await _confirmations("ada@example.org") == sent + 1
    page = (await client.get(answer.headers["location"])).text
    assert "emailed you a link to confirm" in page and "You are unsubscribed" in page
    # The owner's confirmation applies exactly what was asked for.
    confirmed_row = await subscriptions.confirm(subscriptions.confirm_token(after))
    assert (confirmed_row["status"], confirmed_row["topics"]) == ("confirmed", ["bulletin"])


async def test_subscribe_again_sends_one_confirmation_and_changes_nothing_else(client):
    manage = await _unsubscribed(client)
    sent = await _confirmations("ada@example.org")
    before_topics = (await row("ada@example.org"))["topics"]
    answer = await client.post(manage, data={"action": "resubscribe", "topics": ["bulletin", "careers"]})
    assert answer.status_code == 303
    after = await row("ada@example.org")
    assert after["status"] == "unsubscribed" and after["topics"] == before_topics
    assert after["requested"] == ["bulletin", "careers"] and after["awaits_confirmation"]
    assert await _confirmations("ada@example.org") == sent + 1
    # A second press at once records the choice but sends nothing more (one per window).
    await client.post(manage, data={"action": "resubscribe", "topics": ["events"]})
    assert await _confirmations("ada@example.org") == sent + 1
    assert (await row("ada@example.org"))["requested"] == ["events"]
    page = (await client.get(manage)).text
    assert "You asked to subscribe again" in page


async def test_subscribe_again_needs_a_topic_named_next_to_the_boxes(client):
    manage = await _unsubscribed(client)
    before = await snapshot()
    answer = await client.post(manage, data={"action": "resubscribe"})
    assert answer.status_code == 400 and 'id="err-topics"' in answer.text and "choose at least one" in answer.text
    assert await snapshot() == before


async def test_subscribe_again_on_a_confirmed_address_changes_nothing(client):
    subscriber = await confirmed("ada@example.org", "Ada", ["bulletin"])
    manage = path_of(manage_url(subscriber))
    before = await snapshot()
    assert (await client.post(manage, data={"action": "resubscribe", "topics": ["events"]})).status_code == 303
    assert await snapshot() == before


async def test_delete_me_goes_through_a_confirmation_page(client):
    subscriber = await confirmed("ada@example.org", "Ada", ["bulletin"])
    manage = path_of(manage_url(subscriber))
    page = (await client.get(manage)).text
    assert f'<form method="get" action="{manage}/delete">' in page
    assert 'value="erase"' not in page  # the page itself holds no erase button
    before = await snapshot()
    ask = await client.get(f"{manage}/delete")
    assert ask.status_code == 200 and "Delete your data?" in ask.text and "ada@example.org" in ask.text
    assert 'name="action" value="erase"' in ask.text and "Yes, delete my data" in ask.text
    assert await snapshot() == before
    done = await client.post(manage, data={"action": "erase"})
    assert done.status_code == 200 and "Your data is deleted" in done.text
    assert (await client.get(f"{manage}/delete")).status_code == 404


async def test_the_subscribe_page_shows_recent_issues_and_how_often(client):
    page = (await client.get("/bulletin/subscribe")).text
    assert "no fixed schedule yet" in page and "Recent issues" not in page
    for title, day in [
        ("October 2019", "2019-10-15"),
        ("December 2019", "2019-12-16"),
        ("February 2020", "2020-02-14"),
    ]:
        created = await issues.create({"title": title, "issue_date": day, "body": "Hi"})
        await issues.release(created["id"])
    unreleased = await issues.create({"title": "Draft", "issue_date": "2020-04-14", "body": "Hi"})
    page = (await client.get("/bulletin/subscribe")).text
    assert "the bulletin comes about every 2 months" in page
    listed = re.findall(r'<li><a href="/bulletin/([^"]+)">([^<]+)</a>', page)
    assert [t for _, t in listed] == ["February 2020", "December 2019", "October 2019"]
    assert unreleased["title"] not in page


@pytest.mark.parametrize(
    ("dates", "words"),
    [
        ([], None),
        (["2019-10-15"], None),
        (["2019-10-15", "2019-10-15"], None),
        (["2020-01-01", "2020-01-08", "2020-01-15"], "about every week"),
        (["2020-01-01", "2020-01-15"], "about every two weeks"),
        (["2020-01-01", "2020-02-01", "2020-03-01"], "about once a month"),
        (["2019-01-15", "2019-04-15", "2019-07-15", "2019-10-15"], "about every 3 months"),
        (["2018-10-15", "2019-10-15"], "about once a year"),
        (["2015-10-15", "2019-10-15"], "about every 4 years"),
        (["2019-10-15", "not a date", None], None),
    ],
)
def test_how_often_in_words(dates, words):
    assert subscriptions.cadence_of(dates) == words


async def test_check_your_inbox_repeats_the_address_and_offers_resend_and_correction(client):
    answer = await client.post(
        "/bulletin/subscribe", data={"email": "Grace@Example.org", "name": "Grace", "topics": ["bulletin", "careers"]}
    )
    page = answer.text
    assert answer.status_code == 200 and "Check your inbox" in page
    assert "We wrote to <strong>grace@example.org</strong>" in page
    # A resend posts the same request again (rate-limited as a subscribe, answered alike).
    form = page[page.index('<form method="post" action="/bulletin/subscribe">') :]
    form = form[: form.index("</form>")]
    for hidden in (
        'name="email" value="grace@example.org"',
        'name="name" value="Grace"',
        'name="topics" value="bulletin"',
        'name="topics" value="careers"',
    ):
        assert hidden in form
    assert "Send the email again" in form
    again = await client.post(
        "/bulletin/subscribe",
        data={"email": "grace@example.org", "name": "Grace", "topics": ["bulletin", "careers"], "again": "1"},
    )
    assert again.status_code == 200 and "Asked again." in again.text
    # "Wrong address? Correct it" leads back to the form, filled in.
    correct = unescape(re.search(r'<a href="([^"]+)">Correct it</a>', page).group(1))
    assert correct.startswith("/bulletin/subscribe?")
    refill = (await client.get(correct)).text
    assert 'value="grace@example.org"' in refill and 'value="Grace"' in refill
    assert 'value="careers" checked' in refill and 'value="events">' in refill


async def test_the_inline_form_on_the_archive_has_its_own_labelled_field(client):
    created = await issues.create({"title": "October 2019", "issue_date": "2019-10-15", "body": "Hi"})
    await issues.release(created["id"])
    for path in ("/bulletin", "/bulletin/" + (await issues.get(created["id"]))["slug"]):
        page = (await client.get(path)).text
        if 'id="inline-subscribe-email"' not in page:  # the issue page includes it once helper E's change is in
            assert path != "/bulletin"
            continue
        assert page.count('id="inline-subscribe-email"') == 1
        assert '<label for="inline-subscribe-email">' in page
        assert '<form method="post" action="/bulletin/subscribe">' in page
