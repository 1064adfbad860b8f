"""Issue 11, the subscription door: an opt-out stands until its owner confirms a new opt-in,
unsubscribing and erasure retire every link already sent, subscribing writes before it answers
(the same answer for every address, and safe when one address arrives twenty times at once), and
names are single line. Then a search (hypothesis) over every field of the public subscriber forms.

Everything runs through the HTTP app, a real worker and the loopback SMTP server, on SQLite and
PostgreSQL (tests/with_postgres.py).
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings as search, strategies as st

from conftest import IS_POSTGRES
from events_app import db
from events_app.domain import importer, subscriptions
from mail.sending import drain
from subscriber.subscriber_mail import confirmed, forget_throttle, one_link, path_of, snapshot

CONFIRM_PATH = r"/s/confirm/[0-9]+\.[A-Za-z0-9_-]{43}"
MANAGE_PATH = r"/s/[0-9]+\.[A-Za-z0-9_-]{43}"
ADDRESS = "ada@example.org"


async def _raw(address: str) -> dict:
    """The subscriber row for `address`, by its hash (an erased row has no address)."""
    rows = await db.fetch("SELECT * FROM subscriber WHERE email_hash = {}", subscriptions.email_hash(address))
    assert len(rows) == 1, rows
    return rows[0]


async def _topic_ids(slugs: list[str]) -> list[int]:
    return list((await subscriptions.topic_ids(slugs)).values())


async def _subscriptions_of(subscriber_id: int) -> list[int]:
    rows = await db.fetch("SELECT topic FROM subscription WHERE subscriber = {} ORDER BY topic", subscriber_id)
    return [r["topic"] for r in rows]


async def _ask(client: httpx.AsyncClient, door: str, address: str, topics: list[str], name: str = "Mallory") -> None:
    """An anonymous subscribe request through one of the three doors."""
    if door == "api":
        answer = await client.post("/api/v1/subscribers", json={"email": address, "name": name, "topics": topics})
        assert answer.status_code == 202, answer.text
    elif door == "form":
        answer = await client.post("/bulletin/subscribe", data={"email": address, "name": name, "topics": topics})
        assert answer.status_code == 200 and "Check your inbox" in answer.text, answer.text
    else:
        from factories import published_event

        assert topics == ["bulletin"]  # the registration form's box is the bulletin
        event = await published_event()
        answer = await client.post(f"/api/v1/events/{event['id']}/registrations",
                                   json={"name": name, "email": address, "subscribe": True})
        assert answer.status_code == 201, answer.text


def _confirmations(smtp_server, address: str) -> list:
    return [m for m in smtp_server.to(address) if str(m["Subject"]).startswith("Please confirm your subscription")]


# -- 1. The opt-out stands until its owner confirms ------------------------------------------------

@pytest.mark.parametrize("state", ["unsubscribed", "erased"])
@pytest.mark.parametrize("door", ["api", "form", "registration"])
async def test_a_strangers_request_leaves_the_opt_out_standing_until_the_owner_confirms(
        client, auth, smtp_server, worker, tmp_path, door, state):
    owner = await confirmed(ADDRESS, "Ada Lovelace", ["bulletin"])
    old_manage = path_of(f"http://testserver/s/{subscriptions.manage_token(owner)}")
    if state == "unsubscribed":
        await subscriptions.unsubscribe(subscriptions.manage_token(owner))
    else:
        await subscriptions.erase(subscriptions.manage_token(owner))
    await drain(worker)
    smtp_server.received.clear()
    before = await _raw(ADDRESS)
    kept_topics = await _subscriptions_of(owner["id"])
    wanted = ["bulletin"] if door == "registration" else ["events"]

    await _ask(client, door, ADDRESS, wanted)

    held = await _raw(ADDRESS)
    assert held["status"] == state, "an unconfirmed request undid the opt-out"
    assert json.loads(held["requested_topics"]) == await _topic_ids(wanted)
    assert await _subscriptions_of(owner["id"]) == kept_topics  # nothing applied yet
    # A stranger's name overwrites nothing; an erased address has no old name to keep.
    assert held["name"] == ("Ada Lovelace" if state == "unsubscribed" else "Mallory")
    assert before["name"] == ("Ada Lovelace" if state == "unsubscribed" else "")
    if state == "erased":
        # Stored again only as a request: not listed to staff, no preference page, no export,
        # no "email me my link".
        listed = (await client.get("/api/v1/subscribers", params={"q": "ada"}, headers=auth)).json()
        assert listed["subscribers"] == []
        assert (await client.get(old_manage)).status_code == 404
        await client.post("/s/link", data={"email": ADDRESS})

    # The next import skips it, saying why, on the right line.
    csv_file = tmp_path / "list.csv"
    csv_file.write_text(f"email,name\nbob@example.org,Bob\n{ADDRESS},Ada\n")
    report = await importer.import_csv(csv_file, ["bulletin", "events"])
    assert (await _raw(ADDRESS))["status"] == state
    reason = importer.ERASED if state == "erased" else importer.UNSUBSCRIBED
    assert report.problems == [(3, reason)] and report.imported == 1

    # One confirmation email, listing what was asked for; only its POST applies it.
    await drain(worker)
    confirmations = _confirmations(smtp_server, ADDRESS)
    assert len(confirmations) == 1
    assert [str(m["Subject"]) for m in smtp_server.to(ADDRESS) if "preferences" in str(m["Subject"])] == []
    link = path_of(one_link(confirmations[0], CONFIRM_PATH))
    page = await client.get(link)
    assert page.status_code == 200 and "<button" in page.text
    assert (await _raw(ADDRESS))["status"] == state, "opening the link (GET) changed something"
    done = await client.post(link)
    assert done.status_code == 200 and "You're subscribed" in done.text
    after = await _raw(ADDRESS)
    assert (after["status"], after["requested_topics"], after["email"]) == ("confirmed", "", ADDRESS)
    assert await _subscriptions_of(after["id"]) == await _topic_ids(wanted)
    # The unsubscribed owner keeps their own name; an erased address starts afresh.
    assert after["name"] == ("Ada Lovelace" if state == "unsubscribed" else "Mallory")


async def test_a_pending_request_is_still_confirmed_by_an_import(client, tmp_path):
    """The control: importing a consented list does confirm a mere pending request, which is why
    the opt-out above must not become pending."""
    await _ask(client, "api", ADDRESS, ["bulletin"])
    csv_file = tmp_path / "list.csv"
    csv_file.write_text(f"email\n{ADDRESS}\n")
    await importer.import_csv(csv_file, ["bulletin"])
    assert (await _raw(ADDRESS))["status"] == "confirmed"


# -- 2. Unsubscribing and erasure retire every link already sent -----------------------------------

async def test_erasure_retires_every_link_already_sent(client, smtp_server, worker):
    owner = await confirmed(ADDRESS, "Ada Lovelace", ["bulletin", "events"])
    old_confirm = f"/s/confirm/{subscriptions.confirm_token(owner)}"
    old_manage = f"/s/{subscriptions.manage_token(owner)}"
    gone = await client.post(old_manage, data={"action": "erase"})
    assert gone.status_code == 200 and "Your data is deleted" in gone.text

    await client.post("/api/v1/subscribers", json={"email": ADDRESS, "name": "Mallory"})
    for path in (old_manage, old_manage + "/unsubscribe"):
        assert (await client.get(path)).status_code == 404, path
    export = await client.post(old_manage, data={"action": "export"})
    assert export.status_code == 404 and "Lovelace" not in export.text and ADDRESS not in export.text
    assert (await client.post(old_confirm)).status_code == 404
    assert (await _raw(ADDRESS))["status"] == "erased"

    # The owner confirms the new opt-in from the new email: the old links stay dead.
    await drain(worker)
    confirmations = _confirmations(smtp_server, ADDRESS)
    assert len(confirmations) == 1
    assert (await client.post(path_of(one_link(confirmations[0], CONFIRM_PATH)))).status_code == 200
    assert (await _raw(ADDRESS))["status"] == "confirmed"
    assert (await client.get(old_manage)).status_code == 404
    assert (await client.post(old_manage, data={"action": "export"})).status_code == 404
    # An old email's one-click unsubscribe still answers 200 (RFC 8058) but touches nothing now.
    stale = await client.post(old_manage + "/unsubscribe")
    assert stale.status_code == 200 and "Lovelace" not in stale.text
    assert (await _raw(ADDRESS))["status"] == "confirmed"


async def test_erasure_blanks_everything_personal(client, smtp_server, worker):
    owner = await confirmed(ADDRESS, "Ada Lovelace", ["bulletin", "events"])
    manage = f"/s/{subscriptions.manage_token(owner)}"
    await client.post(manage, data={"action": "pause", "weeks": "4"})
    await client.post("/s/link", data={"email": ADDRESS})
    await drain(worker)
    assert (await client.post(manage, data={"action": "erase"})).status_code == 200
    row = await _raw(ADDRESS)
    assert row["status"] == "erased" and row["erased_at"] is not None
    personal = {k: row[k] for k in ("email", "name", "confirmed_at", "unsubscribed_at", "paused_until",
                                     "bounced_at", "bounce_reason", "link_sent_at", "confirm_sent_at",
                                     "requested_topics")}
    assert personal == {"email": None, "name": "", "confirmed_at": None, "unsubscribed_at": None,
                        "paused_until": None, "bounced_at": None, "bounce_reason": "", "link_sent_at": None,
                        "confirm_sent_at": None, "requested_topics": ""}
    assert row["token_salt"] != owner["token_salt"]
    assert await _subscriptions_of(row["id"]) == []
    assert await db.fetch("SELECT id FROM outbox WHERE recipient = {}", ADDRESS) == []


async def test_unsubscribing_retires_the_links_and_one_click_stays_repeatable(client, smtp_server, worker):
    owner = await confirmed(ADDRESS, "Ada Lovelace", ["bulletin"])
    manage = f"/s/{subscriptions.manage_token(owner)}"
    confirm = f"/s/confirm/{subscriptions.confirm_token(owner)}"

    first = await client.post(manage + "/unsubscribe")  # no cookie, no CSRF token
    assert first.status_code == 200 and "You are unsubscribed" in first.text
    assert (await _raw(ADDRESS))["status"] == "unsubscribed"
    second = await client.post(manage + "/unsubscribe")
    assert second.status_code == 200 and second.content == first.content
    # Every link already sent is retired: preferences, export, confirmation.
    assert (await client.get(manage)).status_code == 404
    export = await client.post(manage, data={"action": "export"})
    assert export.status_code == 404 and "Lovelace" not in export.text
    assert (await client.post(manage, data={"action": "save", "topics": ["bulletin"]})).status_code == 404
    assert (await client.post(confirm)).status_code == 404
    assert (await _raw(ADDRESS))["status"] == "unsubscribed"

    # A stale, a forged and an unknown token answer alike, revealing nothing; a malformed one 404.
    forged = await client.post(f"/s/{owner['id']}.{'A' * 43}/unsubscribe")
    unknown = await client.post(f"/s/99999.{'B' * 43}/unsubscribe")
    assert forged.content == unknown.content == first.content
    assert (await client.post("/s/not-a-token/unsubscribe")).status_code == 404

    # The owner gets a fresh link by email, sees the truth, and may choose topics again.
    await client.post("/s/link", data={"email": ADDRESS})
    await drain(worker)
    [message] = [m for m in smtp_server.to(ADDRESS) if "preferences" in str(m["Subject"])]
    fresh = path_of(one_link(message, MANAGE_PATH))
    assert fresh != manage
    page = await client.get(fresh)
    assert page.status_code == 200 and "unsubscribed" in page.text
    assert (await client.post(fresh, data={"action": "save", "topics": ["events"]})).status_code == 303
    # Choosing topics while unsubscribed asks for confirmation by email first (issue 14).
    back = await subscriptions.get((await _raw(ADDRESS))["id"])
    assert (back["status"], back["requested"]) == ("unsubscribed", ["events"])
    back = await subscriptions.confirm(subscriptions.confirm_token(back))
    assert (back["status"], back["topics"]) == ("confirmed", ["events"])


# -- 3. Written before the answer; the same answer for every address ------------------------------

STATES = {  # five states, five addresses of one length
    "confirmed": "known@example.org",
    "pending": "pendg@example.org",
    "unknown": "nobod@example.org",
    "unsubscribed": "unsub@example.org",
    "erased": "erasd@example.org",
}


async def _five_states(worker, smtp_server) -> None:
    await confirmed(STATES["confirmed"])
    await subscriptions.subscribe(STATES["pending"], "", await subscriptions.topic_ids(None))
    await subscriptions.unsubscribe(subscriptions.manage_token(await confirmed(STATES["unsubscribed"])))
    await subscriptions.erase(subscriptions.manage_token(await confirmed(STATES["erased"])))
    await drain(worker)
    for address in STATES.values():
        await forget_throttle(address)
    smtp_server.received.clear()


def _request(kind: str, address: str) -> tuple[str, bytes, str]:
    if kind == "api":
        body = {"email": address, "name": "Sam", "topics": ["bulletin"]}
        return "/api/v1/subscribers", json.dumps(body).encode(), "application/json"
    form = {"email": address, "name": "Sam", "topics": "bulletin"} if kind == "form" else {"email": address}
    path = "/bulletin/subscribe" if kind == "form" else "/s/link"
    return path, urlencode(form).encode(), "application/x-www-form-urlencoded"


async def _state() -> list:
    return [await db.fetch("SELECT * FROM outbox ORDER BY id"), await db.fetch("SELECT * FROM subscriber ORDER BY id")]


async def _call(app, path: str, body: bytes, content_type: str) -> dict:
    """POST through the ASGI interface; the database as it was when the last byte of the answer
    was sent, and once the app returned."""
    answer: dict = {"body": b""}

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = sorted((k.decode().lower(), v.decode()) for k, v in message.get("headers", [])
                                       if k.lower() != b"date")
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")
            if not message.get("more_body"):
                answer["at_end"] = await _state()

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", content_type.encode()),
                    (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 40000), "server": ("testserver", 80), "state": {},
    }
    answer["before"] = await _state()
    await app(scope, receive, send)
    answer["after"] = await _state()
    return answer


@pytest.mark.parametrize(("kind", "queued"), [
    ("api", {"confirmed": 1, "pending": 1, "unknown": 1, "unsubscribed": 1, "erased": 1}),
    ("form", {"confirmed": 1, "pending": 1, "unknown": 1, "unsubscribed": 1, "erased": 1}),
    ("link", {"confirmed": 1, "pending": 1, "unknown": 0, "unsubscribed": 1, "erased": 0}),
])
async def test_the_work_is_done_before_the_answer_and_the_answer_is_the_same_for_every_address(
        app, smtp_server, worker, kind, queued):
    await _five_states(worker, smtp_server)
    answers = {}
    for state, address in STATES.items():
        answer = await _call(app, *_request(kind, address))
        assert answer["status"] == (202 if kind == "api" else 200), answer["body"]
        assert answer["at_end"] == answer["after"], f"{state}: work was still being done after the answer"
        assert len(answer["after"][0]) - len(answer["before"][0]) == queued[state], state
        answers[state] = (answer["status"], answer["headers"], answer["body"].replace(address.encode(), b"ADDRESS"))
    for state, seen in answers.items():
        assert seen == answers["confirmed"], f"the answer for a {state} address differs from a confirmed one's"


async def _parallel(app, requests: list[tuple[str, dict]]) -> list:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
        return await asyncio.gather(
            *(http.post(path, **kwargs) for path, kwargs in requests), return_exceptions=True
        )


@pytest.mark.parametrize("state", ["unknown", "unsubscribed", "erased"])
async def test_twenty_identical_requests_at_once_make_one_row_and_one_email(app, smtp_server, worker, state):
    if state != "unknown":
        owner = await confirmed(ADDRESS)
        await (subscriptions.unsubscribe if state == "unsubscribed" else subscriptions.erase)(
            subscriptions.manage_token(owner))
        await forget_throttle(ADDRESS)
        await drain(worker)
        smtp_server.received.clear()
    requests = [("/api/v1/subscribers", {"json": {"email": ADDRESS, "topics": ["events"]}})] * 10
    requests += [("/bulletin/subscribe", {"data": {"email": ADDRESS, "topics": ["events"]}})] * 10
    answers = await _parallel(app, requests)
    errors = [a for a in answers if isinstance(a, BaseException)]
    assert errors == [], errors
    assert sorted({a.status_code for a in answers}) == [200, 202]
    rows = await db.fetch("SELECT status FROM subscriber")
    assert [r["status"] for r in rows] == [{"unknown": "pending"}.get(state, state)]
    await drain(worker)
    assert len(_confirmations(smtp_server, ADDRESS)) == 1


async def test_twenty_link_requests_at_once_send_one_link(app, smtp_server, worker):
    await confirmed(ADDRESS)
    await drain(worker)
    smtp_server.received.clear()
    answers = await _parallel(app, [("/s/link", {"data": {"email": ADDRESS}})] * 20)
    assert {getattr(a, "status_code", a) for a in answers} == {200}
    await drain(worker)
    assert len(smtp_server.to(ADDRESS)) == 1


@pytest.mark.skipif(not IS_POSTGRES, reason="SQLite serialises writers (BEGIN IMMEDIATE): no race to show")
async def test_control_read_then_insert_races_under_the_same_parallel_load():
    """The shape subscribing had (read the address, insert when absent) run twenty times at once
    on PostgreSQL: unique violations. The requests above really overlap."""

    async def naive() -> None:
        async with db.transaction():
            found = await db.fetch("SELECT id FROM subscriber WHERE email_hash = {}", subscriptions.email_hash(ADDRESS))
            await asyncio.sleep(0.01)
            if not found:
                await db.fetch(
                    "INSERT INTO subscriber (email, email_hash, name, status, token_salt, source, created_at) "
                    "VALUES ({}, {}, '', 'pending', 'x', 'form', {})",
                    ADDRESS, subscriptions.email_hash(ADDRESS), subscriptions.now(),
                )

    results = await asyncio.gather(*(naive() for _ in range(20)), return_exceptions=True)
    assert any(isinstance(r, Exception) and db.is_unique_violation(r) for r in results)


# -- 4. Names are single line --------------------------------------------------------------------

@pytest.mark.parametrize("name", ["Ada\r\nBcc: mallory@example.org", "Ada\nLovelace", "Ada\x00", "Ada\u2028x"])
async def test_a_name_with_a_line_break_or_control_character_is_refused_everywhere(client, name):
    answer = await client.post("/api/v1/subscribers", json={"email": ADDRESS, "name": name})
    assert answer.status_code == 400 and "name" in answer.json()["errors"]
    form = await client.post("/bulletin/subscribe", data={"email": ADDRESS, "name": name, "topics": ["bulletin"]})
    assert form.status_code == 400 and 'id="err-name"' in form.text
    assert await db.fetch("SELECT id FROM subscriber") == []

    owner = await confirmed("bob@example.org", "Bob")
    manage = f"/s/{subscriptions.manage_token(owner)}"
    before = await snapshot()
    saved = await client.post(manage, data={"action": "save", "name": name, "topics": ["bulletin"]})
    assert saved.status_code == 400 and "name" in saved.text
    assert await snapshot() == before


# -- A search over every field of the public subscriber doors -------------------------------------


SEARCH = search(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ODD = [
    "", " ", "\x00", "ada\x00@example.org", "a\nb", "a\r\nBcc: m@example.org", "\u2028", "\ud800", "x" * 70_000,
    "ada@example.org", "ADA@Example.ORG ", "bob@example.org", "not-an-address", "a@b", "@example.org",
    "bulletin", "events", "careers", "no-such-topic", "0", "-1", "52", "53", "9" * 30, "1e3",
]
text = st.one_of(
    st.sampled_from(ODD),
    st.text(st.characters(exclude_categories=()), max_size=40),  # lone surrogates and controls too
)
leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**80, max_value=2**80),
                 st.floats(allow_nan=False, allow_infinity=False), text)
value = st.recursive(leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                     max_leaves=8)
topics = st.lists(st.sampled_from(["bulletin", "events", "careers", "nope", "", "\x00"]), max_size=4)
subscribe_body = st.one_of(
    st.fixed_dictionaries({}, optional={"email": text | value, "name": text | value, "topics": topics | value,
                                        "other": value}),
    value,
)
raw_body = st.one_of(st.sampled_from([b"", b"{", b"\xff\xfe", b"null", b'{"email": "\\ud800@example.org"}']),
                     st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n),
                     st.integers(1, 5000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n))
form_text = st.one_of(text, st.lists(text, max_size=3))
FIELDS = {"email", "name", "topics", "topic", "weeks", "action", "body"}


def _form(fields: dict) -> bytes:
    """A urlencoded body, lone surrogates passed through as the (invalid) UTF-8 bytes they would be."""
    pairs = [(k, item) for k, v in fields.items() for item in (v if isinstance(v, list) else [v])]
    return urlencode(pairs, encoding="utf-8", errors="surrogatepass").encode()


def _surrogate(value) -> bool:
    """True when a form value holds a lone surrogate (multipart cannot carry one)."""
    items = value if isinstance(value, list) else [value]
    return any(0xD800 <= ord(c) <= 0xDFFF for item in items for c in item)


async def _check(answer: httpx.Response, before: dict) -> None:
    """2xx, 3xx or 4xx; a 400 names a field; a refusal changed nothing."""
    assert answer.status_code < 500, answer.text[:500]
    if answer.status_code == 400:
        if answer.headers.get("content-type", "").startswith("application/json"):
            # A body that is not JSON at all is refused by the framework's decoder before any
            # field is read: its answer names the body's fault in `detail` (web/errors.py).
            named = set(answer.json().get("errors") or ({"body"} if "JSON" in answer.json()["detail"]
                                                         or "Input data" in answer.json()["detail"] else ()))
        else:
            named = {f for f in FIELDS if f'id="err-{f}"' in answer.text or f"<strong>{f}</strong>" in answer.text}
        assert named and named <= FIELDS | {"file"}, answer.text[:500]
    if answer.status_code >= 400:
        assert await snapshot() == before, "a refused request changed the database"


@SEARCH
@given(body=st.one_of(subscribe_body.map(lambda b: json.dumps(b).encode()), raw_body))
async def test_search_the_subscribe_api(client, body):
    before = await snapshot()
    answer = await client.post("/api/v1/subscribers", content=body, headers={"Content-Type": "application/json"})
    await _check(answer, before)


@SEARCH
@given(fields=st.fixed_dictionaries({}, optional={"email": form_text, "name": form_text, "topics": form_text,
                                                  "other": form_text}),
       path=st.sampled_from(["/bulletin/subscribe", "/s/link"]))
async def test_search_the_subscribe_and_link_forms(client, fields, path):
    before = await snapshot()
    answer = await client.post(path, content=_form(fields),
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
    await _check(answer, before)


@SEARCH
@given(fields=st.fixed_dictionaries(
    {"action": st.sampled_from(["save", "leave", "pause", "resume", "export", "erase", "junk", ""]) | text},
    optional={"name": form_text, "topics": form_text, "topic": form_text, "weeks": form_text}),
    upload=st.sampled_from([None, "name", "topics", "topic", "weeks", "action"]))
async def test_search_the_preference_centre(client, fields, upload):
    for table in ("subscription", "outbox", "subscriber"):
        await db.fetch(f"DELETE FROM {table}")
    owner = await confirmed(ADDRESS, "Ada", ["bulletin"])
    path = f"/s/{subscriptions.manage_token(owner)}"
    before = await snapshot()
    if upload is None:
        answer = await client.post(path, content=_form(fields),
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    else:  # multipart, with a file where text is expected
        data = {k: v for k, v in fields.items() if k != upload and not _surrogate(v)}
        answer = await client.post(path, data=data, files={upload: ("x.txt", b"\x00binary", "text/plain")})
    await _check(answer, before)
