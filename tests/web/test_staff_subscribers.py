"""Staff API for the mailing list: topic counts, subscriber search and keyset paging, CSV export."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone

import pytest

from events_app import db
from events_app.domain import subscriptions

ENDPOINTS = ("/api/v1/topics", "/api/v1/subscribers", "/api/v1/subscribers.csv")


async def subscriber(email: str, name: str = "", topics=("bulletin",), state: str = "confirmed") -> dict:
    await subscriptions.subscribe(email, name, await subscriptions.topic_ids(list(topics)))
    row = (await db.fetch("SELECT * FROM subscriber WHERE email = {}", email))[0]
    if state == "pending":
        return row
    row = await subscriptions.confirm(subscriptions.confirm_token(row))
    if state == "paused":
        await subscriptions.pause(subscriptions.manage_token(row), 2)
    elif state == "resumed":  # paused once, but the pause ran out
        await db.fetch("UPDATE subscriber SET paused_until = {} WHERE id = {}",
                       datetime.now(timezone.utc) - timedelta(days=1), row["id"])
    elif state == "unsubscribed":
        await subscriptions.unsubscribe(subscriptions.manage_token(row))
    elif state == "erased":
        await subscriptions.erase(subscriptions.manage_token(row))
    return row


@pytest.fixture
async def mailing_list():
    """One of each state, across topics; returns email -> id."""
    made = [
        await subscriber("ada@example.org", "Ada Lovelace", ("bulletin", "events")),
        await subscriber("grace@example.org", "Grace Hopper", ("bulletin",), "paused"),
        await subscriber("alan@example.org", "Alan Turing", ("bulletin", "careers"), "pending"),
        await subscriber("edsger@example.org", "Edsger Dijkstra", ("events",), "unsubscribed"),
        await subscriber("secret@example.org", "Erased Person", ("bulletin", "events"), "erased"),
        await subscriber("barbara@example.org", "Barbara LISKOV", ("bulletin",), "resumed"),
        await subscriber("=cmd@example.org", "=HYPERLINK(\"http://evil\")", ("careers",)),
    ]
    return {row["email"]: row["id"] for row in made}


async def test_topics_with_counts_by_status(client, auth, mailing_list):
    answer = await client.get("/api/v1/topics", headers=auth)
    assert answer.status_code == 200
    topics = {t["slug"]: t for t in answer.json()["topics"]}
    assert list(topics) == ["bulletin", "events", "careers"]
    assert topics["bulletin"]["name"] == "Implementation in Action"
    assert topics["bulletin"]["counts"] == {"confirmed": 2, "paused": 1, "pending": 1, "unsubscribed": 0}
    assert topics["events"]["counts"] == {"confirmed": 1, "paused": 0, "pending": 0, "unsubscribed": 1}
    assert topics["careers"]["counts"] == {"confirmed": 1, "paused": 0, "pending": 1, "unsubscribed": 0}


async def test_list_filters_and_searches_without_tokens_or_erased_data(client, auth, mailing_list):
    async def emails(**params) -> list[str]:
        answer = await client.get("/api/v1/subscribers", params=params, headers=auth)
        assert answer.status_code == 200, answer.text
        return [s["email"] for s in answer.json()["subscribers"]]

    everyone = (await client.get("/api/v1/subscribers", headers=auth)).json()
    assert everyone["next_after"] is None
    assert [s["email"] for s in everyone["subscribers"]] == [
        "ada@example.org", "grace@example.org", "alan@example.org", "edsger@example.org",
        "barbara@example.org", "=cmd@example.org",
    ], "in id order, the erased subscriber nowhere"
    ada = everyone["subscribers"][0]
    assert set(ada) == {"id", "email", "name", "status", "topics", "source", "created_at", "confirmed_at",
                        "paused_until", "unsubscribed_at"}
    assert ada["topics"] == ["bulletin", "events"] and ada["source"] == "form"
    assert datetime.fromisoformat(ada["created_at"]).utcoffset() == timedelta(0)
    assert datetime.fromisoformat(ada["confirmed_at"]).tzinfo is not None
    grace = everyone["subscribers"][1]
    assert grace["status"] == "paused" and datetime.fromisoformat(grace["paused_until"]) > datetime.now(timezone.utc)
    barbara = everyone["subscribers"][4]
    assert barbara["status"] == "confirmed" and barbara["paused_until"] is None
    body = (await client.get("/api/v1/subscribers", headers=auth)).text
    assert "salt" not in body and "token" not in body and "secret@" not in body and "Erased" not in body

    assert await emails(status="confirmed") == ["ada@example.org", "barbara@example.org", "=cmd@example.org"]
    assert await emails(status="paused") == ["grace@example.org"]
    assert await emails(status="pending") == ["alan@example.org"]
    assert await emails(status="unsubscribed") == ["edsger@example.org"]
    assert await emails(topic="events") == ["ada@example.org", "edsger@example.org"]
    assert await emails(topic="bulletin", status="confirmed") == ["ada@example.org", "barbara@example.org"]
    # q: part of the email or of the name, any case; % and _ are literal.
    assert await emails(q="LISKOV") == ["barbara@example.org"]
    assert await emails(q="liskov") == ["barbara@example.org"]
    assert await emails(q="ADA@") == ["ada@example.org"]
    assert await emails(q="hopper", status="paused") == ["grace@example.org"]
    assert await emails(q="erased") == []
    assert await emails(q="secret") == []
    assert await emails(q="%") == []
    assert await emails(q="_") == []
    assert await emails(q="  ") == await emails()


async def test_keyset_pagination_by_id(client, auth):
    for i in range(7):
        await subscriber(f"reader{i}@example.org", f"Reader {i}")
    seen, after, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"after": after} if after is not None else {})}
        page = (await client.get("/api/v1/subscribers", params=params, headers=auth)).json()
        pages += 1
        seen += [s["id"] for s in page["subscribers"]]
        after = page["next_after"]
        if after is None:
            break
        assert after == page["subscribers"][-1]["id"]
    assert pages == 3 and len(seen) == 7 and seen == sorted(seen)
    # A page that ends exactly at the last row says there is no next page.
    exact = (await client.get("/api/v1/subscribers", params={"limit": 7}, headers=auth)).json()
    assert len(exact["subscribers"]) == 7 and exact["next_after"] is None
    assert (await client.get("/api/v1/subscribers", params={"after": seen[-1]}, headers=auth)).json() == {
        "subscribers": [], "next_after": None,
    }


async def test_csv_export_is_streamed_filtered_and_injection_safe(client, auth, mailing_list):
    answer = await client.get("/api/v1/subscribers.csv", headers=auth)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="subscribers.csv"' in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert list(rows[0]) == ["email", "name", "status", "topics", "created_at", "confirmed_at"]
    assert [r["email"] for r in rows] == [
        "ada@example.org", "grace@example.org", "alan@example.org", "edsger@example.org",
        "barbara@example.org", "'=cmd@example.org",
    ]
    by_email = {r["email"]: r for r in rows}
    assert by_email["ada@example.org"]["topics"] == "bulletin; events"
    assert by_email["grace@example.org"]["status"] == "paused"
    assert by_email["alan@example.org"]["confirmed_at"] == ""
    assert datetime.fromisoformat(by_email["ada@example.org"]["confirmed_at"]).tzinfo is not None
    assert by_email["'=cmd@example.org"]["name"] == "'=HYPERLINK(\"http://evil\")"
    assert "secret@" not in answer.text and "Erased" not in answer.text

    events = await client.get("/api/v1/subscribers.csv", params={"topic": "events", "q": "ADA"}, headers=auth)
    assert 'filename="subscribers-events.csv"' in events.headers["content-disposition"]
    assert [r["email"] for r in csv.DictReader(io.StringIO(events.text))] == ["ada@example.org"]


async def test_csv_export_pages_through_more_rows_than_one_page(client, auth, monkeypatch):
    from events_app.domain import exports

    monkeypatch.setattr(exports, "CSV_PAGE", 2)
    for i in range(5):
        await subscriber(f"reader{i}@example.org", f"Reader {i}")
    answer = await client.get("/api/v1/subscribers.csv", headers=auth)
    assert [r["email"] for r in csv.DictReader(io.StringIO(answer.text))] == [f"reader{i}@example.org" for i in range(5)]


async def test_bad_parameters_answer_400_naming_the_field(client, auth):
    cases = [
        ("/api/v1/subscribers", {"limit": "0"}, "limit"),
        ("/api/v1/subscribers", {"limit": "501"}, "limit"),
        ("/api/v1/subscribers", {"limit": "ten"}, "limit"),
        ("/api/v1/subscribers", {"after": "-1"}, "after"),
        ("/api/v1/subscribers", {"after": "99999999999999999999"}, "after"),
        ("/api/v1/subscribers", {"status": "erased"}, "status"),
        ("/api/v1/subscribers", {"topic": "nope"}, "topic"),
        ("/api/v1/subscribers", {"q": "x" * 201}, "q"),
        ("/api/v1/subscribers.csv", {"status": "gone"}, "status"),
        ("/api/v1/subscribers.csv", {"topic": "nope"}, "topic"),
    ]
    for path, params, field in cases:
        answer = await client.get(path, params=params, headers=auth)
        assert answer.status_code == 400, (path, params, answer.text)
        assert field in answer.json()["errors"], (path, params, answer.json())
    both = await client.get("/api/v1/subscribers", params={"limit": "x", "status": "y"}, headers=auth)
    assert set(both.json()["errors"]) == {"limit", "status"}


async def test_every_endpoint_answers_401_without_a_valid_token(client, auth, mailing_list):
    for path in ENDPOINTS:
        for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic abc"}):
            answer = await client.get(path, headers=headers)
            assert answer.status_code == 401, (path, headers)
            assert answer.headers["www-authenticate"] == "Bearer"
            assert "example.org" not in answer.text


async def test_the_public_subscribe_post_shares_the_path(client, auth):
    """GET /api/v1/subscribers (staff) and POST /api/v1/subscribers (anyone) live on one route."""
    posted = await client.post("/api/v1/subscribers", json={"email": "new@example.org"})
    assert posted.status_code == 202
    assert (await client.get("/api/v1/subscribers")).status_code == 401
    assert (await client.get("/api/v1/subscribers", headers=auth)).status_code == 200
    schema = (await client.get("/schema/openapi.json")).json()
    assert {"get", "post"} <= set(schema["paths"]["/api/v1/subscribers"])
    assert "get" in schema["paths"]["/api/v1/subscribers.csv"] and "get" in schema["paths"]["/api/v1/topics"]
