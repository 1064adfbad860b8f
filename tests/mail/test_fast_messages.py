"""Messages about a registration assembled from shared parts (mail/transactional.py) against
today's builder (messages.build_reference), part by part.

For the same outbox row, registration and frozen clock, both messages are parsed with the standard
library's strict parser and must have the same MIME tree, the same headers in the same order (the
Content-Type parameters but the boundary included), the same decoded text and HTML, and the same
calendar (the decoded bytes, and the parsed icalendar objects). Hypothesis picks the person's
name and address (any script, quotes, specials, long), the event (title, zone, summary, join
link, capacity) and the kind of message with its payload, and also checks that a row the
reference refuses is refused the same way. Further tests: the shared parts are rendered once for
many registrations, a change of the event, the identity or a template gives new parts, the cache
is bounded, and a batch is built without a query per row.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser

import icalendar
import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from events_app import clock, db, settings
from events_app.domain import events, identity
from events_app.mail import delivery, headers, messages, render, transactional
from events_app.mail.transport import MemoryTransport
from events_app.mail.worker import Worker
from mail.helpers import published_webinar, register

HYPOTHESIS = hsettings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
COUNTER = itertools.count(1)
STRICT = BytesParser(policy=policy.strict)
CALENDAR_TYPES = {"text/calendar", "application/ics"}

NAMES = st.one_of(
    # Any character PostgreSQL can store (not NUL): control characters, separators, quotes...
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40),
    st.sampled_from(
        [
            "Ada Lovelace",
            "O'Brien",
            'Jo "the boss" Smith',
            "Smith, evil@attacker.example, x",
            "J. R. R. Tolkien",
            "=?utf-8?b?QWRh?=",
            "a & b <c> \xa0 d",
            "Zoë Événements 👩‍👩‍👧",
            "中文标题",
            "مرحبا",
            "x" * 150,
            "",
            "  ",
            "back\\slash ^caret; semi, comma: colon",
            "line\nbreak\r\ttab\u2028sep",
        ]
    ),
)
LOCALS = st.sampled_from(
    ["ada", "Ada.Lovelace", "o'brien", "first+tag", "x_y-z", "a" * 60, "with space", "ünï", "cr\rlf"]
)
DOMAINS = st.sampled_from(["example.org", "bücher.example", "EXAMPLE.COM", "sub.domain.example.net"])
TITLES = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=120),
    st.sampled_from(["Careers <script> & \"more\" 'too'", "Café — Über " * 8, "Q&A: 10:00, ok; fine"]),
)
ZONES = st.sampled_from(["America/Toronto", "Europe/Dublin", "UTC", "Asia/Kolkata", "Australia/Lord_Howe"])
KINDS = st.sampled_from(
    [
        "confirmed",
        "resend",
        "waitlisted",
        "promoted",
        "cancelled",
        "left_waitlist",
        "cancelled_old_uid",
        "changed",
        "changed_waitlisted",
        "event_cancelled",
        "event_cancelled_waitlisted",
        "reminder",
        "follow_up_attended",
        "follow_up_missed",
        "overtaken",
    ]
)


@dataclasses.dataclass
class Case:
    kind: str
    name: str
    address: str
    title: str
    zone: str
    summary: bool
    join: bool
    capacity: int | None


def _row(kind: str, payload: dict, recipient: str | None) -> dict:
    return {
        "id": next(COUNTER),
        "kind": kind,
        "recipient": recipient,
        "payload": json.dumps(payload),
        "attempts": 1,
        "created_at": clock.now(),
    }


async def scenario(case: Case) -> dict:
    """An event and a registration in the state the case's kind needs, and the outbox row."""
    event = await published_webinar(
        capacity=case.capacity,
        timezone=case.zone,
        summary="Meet people who turned research into careers." if case.summary else "",
        join_url="https://meet.example.com/room" if case.join else None,
        reminders=[60],
        recording_url="https://example.org/recordings/a-long-name-for-the-recording-of-this-event",
    )
    n = next(COUNTER)
    reg = await register(event, "Placeholder", f"placeholder{n}@example.org")
    await db.fetch("UPDATE event SET title = {} WHERE id = {}", case.title, event["id"])
    await db.fetch("UPDATE registration SET name = {}, email = {} WHERE id = {}", case.name, case.address, reg["id"])
    events.forget()
    event = await events.get(event["id"])
    kind, payload, status = "registration_confirmed", {"registration_id": reg["id"]}, "registered"
    if case.kind == "resend":
        payload["resend"] = True
    elif case.kind == "waitlisted":
        status = "waitlisted"
    elif case.kind == "promoted":
        kind = "registration_promoted"
    elif case.kind in ("cancelled", "left_waitlist", "cancelled_old_uid"):
        kind, status = "registration_cancelled", "cancelled"
        payload["was"] = "waitlisted" if case.kind == "left_waitlist" else "registered"
        if case.kind == "cancelled_old_uid":
            payload["uid"] = f"old-{n}@example.org"
    elif case.kind.startswith("changed"):
        kind = "event_changed"
        status = "waitlisted" if case.kind == "changed_waitlisted" else "registered"
        payload.update(changes=["starts_at", "title", "join_url"], before={"when": "Some time before", "title": "Old"})
    elif case.kind.startswith("event_cancelled"):
        kind = "event_cancelled"
        status = "waitlisted" if case.kind.endswith("waitlisted") else "registered"
        payload["status"] = status
        await db.fetch("UPDATE event SET status = 'cancelled', version = version + 1 WHERE id = {}", event["id"])
    elif case.kind == "reminder":
        kind = "reminder"
        payload.update(starts_at=event["starts_at"].isoformat(), offset=60)
    elif case.kind.startswith("follow_up"):
        kind = case.kind
        if case.kind == "follow_up_attended":
            await db.fetch("UPDATE registration SET attended_at = {} WHERE id = {}", clock.now(), reg["id"])
    elif case.kind == "overtaken":  # a confirmation for a registration since cancelled
        status = "cancelled"
    await db.fetch("UPDATE registration SET status = {} WHERE id = {}", status, reg["id"])
    # The row's recipient is the address as stored; an older row may have none.
    return _row(kind, payload, None if n % 3 == 0 else case.address)


async def both(row: dict, config=None) -> tuple[bytes | Exception, bytes | Exception]:
    """(today's message, the assembled one) as wire bytes, or the exception each raised."""
    config = config or settings.get()
    out: list = []
    for build in (_reference, _fast):
        try:
            out.append(await build(dict(row), config))
        except Exception as exc:
            out.append(exc)
    return out[0], out[1]


async def _reference(row: dict, config) -> bytes:
    message = await messages.build_reference(row, config)
    delivery._requote(message)
    return message.as_bytes(policy=headers.MAIL_POLICY)


async def _fast(row: dict, config) -> bytes:
    built = await transactional.build(row, config)
    assert isinstance(built, transactional.RawMessage)
    return built.data


def shape(data: bytes) -> list:
    """Every part: its headers (Content-Type as type and parameters, boundary aside) and its
    decoded content; a calendar as its bytes. No defects anywhere."""
    message = STRICT.parsebytes(data)
    out = []
    for part in message.walk():
        assert not part.defects, part.defects
        fields = []
        for key, value in part.items():
            if key.lower() == "content-type":
                params = sorted((k, v) for k, v in part.get_params()[1:] if k != "boundary")
                fields.append((key, part.get_content_type(), params))
            else:
                fields.append((key, str(value)))
        if part.is_multipart():
            content = None
        elif part.get_content_type() in CALENDAR_TYPES:
            content = part.get_payload(decode=True)
        else:
            content = part.get_content()
        out.append((fields, content))
    return out


def calendars(data: bytes) -> list[icalendar.Calendar]:
    message = STRICT.parsebytes(data)
    return [
        icalendar.Calendar.from_ical(p.get_payload(decode=True))
        for p in message.walk()
        if p.get_content_type() in CALENDAR_TYPES
    ]


def assert_same(reference: bytes | Exception, fast: bytes | Exception) -> None:
    if isinstance(reference, Exception):
        assert type(fast) is type(reference) and str(fast) == str(reference), (reference, fast)
        return
    assert not isinstance(fast, Exception), fast
    assert shape(fast) == shape(reference)
    assert calendars(fast) == calendars(reference)
    # The top-level header block is the same bytes (boundaries aside).
    head = [re.sub(rb'boundary="[^"]*"', b"", d.split(b"\r\n\r\n", 1)[0]) for d in (reference, fast)]
    assert head[0] == head[1]


@pytest.fixture(autouse=True)
def fresh_parts():
    transactional.forget()
    yield
    transactional.forget()


@given(
    kind=KINDS,
    name=NAMES,
    local=LOCALS,
    domain=DOMAINS,
    title=TITLES,
    zone=ZONES,
    summary=st.booleans(),
    join=st.booleans(),
    capacity=st.sampled_from([None, 1, 1000]),
)
@example(
    kind="confirmed",
    name="Ada Lovelace",
    local="ada",
    domain="example.org",
    title="Careers",
    zone="America/Toronto",
    summary=True,
    join=True,
    capacity=None,
)
@example(
    kind="waitlisted",
    name='Jo "x" <b>',
    local="o'brien",
    domain="bücher.example",
    title="Q&A: 10:00",
    zone="Europe/Dublin",
    summary=False,
    join=False,
    capacity=1,
)
@example(
    kind="promoted",
    name="O'Brien",
    local="first+tag",
    domain="EXAMPLE.COM",
    title="x" * 120,
    zone="Australia/Lord_Howe",
    summary=True,
    join=True,
    capacity=1000,
)
@example(
    kind="reminder",
    name="中文标题" * 10,
    local="ada",
    domain="example.org",
    title="日本語の題名" * 20,
    zone="Asia/Kolkata",
    summary=False,
    join=True,
    capacity=None,
)  # base64 text, as the email package picks
@HYPOTHESIS
async def test_the_assembled_message_parses_as_todays(kind, name, local, domain, title, zone, summary, join, capacity):
    case = Case(kind, name, f"{local}{next(COUNTER)}@{domain}", title, zone, summary, join, capacity)
    row = await scenario(case)
    before = transactional.stats["fast"]
    with clock.frozen(clock.now().replace(microsecond=123456)):
        reference, fast = await both(row)
    assert_same(reference, fast)
    if not isinstance(reference, Exception):
        assert transactional.stats["fast"] == before + 1  # not the reference under another name


@given(name=NAMES, title=TITLES)
@HYPOTHESIS
async def test_an_organisation_with_reply_to_and_odd_names(name, title):
    await identity.update({"organisation_name": f"Centre {title[:40]}", "reply_to": "answers@example.org"})
    row = await scenario(Case("confirmed", name, f"p{next(COUNTER)}@example.org", title, "UTC", True, True, None))
    with clock.frozen(clock.now()):
        assert_same(*await both(row))


async def test_many_registrations_render_the_templates_once(monkeypatch):
    calls = []
    real = render.render
    monkeypatch.setattr(render, "render", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    event = await published_webinar()
    rows = []
    for n in range(12):
        reg = await register(event, f"Person {n}", f"person{n}@example.org")
        rows.append(_row("registration_confirmed", {"registration_id": reg["id"]}, f"person{n}@example.org"))
    built = await messages.build_many(rows, settings.get())
    assert all(isinstance(m, transactional.RawMessage) for m in built)
    assert calls == ["registration_confirmed"]
    texts = [STRICT.parsebytes(m.data).get_body(("plain",)).get_content() for m in built]
    assert all(f"Hello Person {n}," in texts[n] for n in range(12))
    assert len({m.data for m in built}) == 12


async def test_a_batch_is_built_without_a_query_per_row(monkeypatch):
    event = await published_webinar(capacity=2)
    rows = []
    for n in range(6):  # two registered, four waitlisted (places 1 to 4)
        reg = await register(event, f"Person {n}", f"person{n}@example.org")
        rows.append(_row("registration_confirmed", {"registration_id": reg["id"]}, f"person{n}@example.org"))
    batch = await transactional.Batch.load(rows)
    queries = []
    real = db.fetch
    monkeypatch.setattr(db, "fetch", lambda *a, **k: queries.append(a[0]) or real(*a, **k))
    with clock.frozen(clock.now()):
        fast = [(await transactional.build(dict(r), settings.get(), batch)).data for r in rows]
        monkeypatch.setattr(db, "fetch", real)
        for row, data in zip(rows, fast, strict=True):
            assert_same(await _reference(dict(row), settings.get()), data)
    assert queries == []
    subjects = [str(STRICT.parsebytes(d)["Subject"]) for d in fast]
    assert [s.split(")")[0][-1] for s in subjects[2:]] == ["1", "2", "3", "4"]


async def test_a_change_of_the_event_the_identity_or_a_template_gives_new_parts(tmp_path, monkeypatch):
    event = await published_webinar()
    reg = await register(event, "Ada", "ada@example.org")
    row = _row("registration_confirmed", {"registration_id": reg["id"]}, "ada@example.org")

    async def subject_and_from() -> tuple[str, str]:
        parsed = STRICT.parsebytes(await _fast(dict(row), settings.get()))
        return str(parsed["Subject"]), parsed["From"].addresses[0].display_name

    rendered = transactional.stats["parts"]
    first = await subject_and_from()
    assert (await subject_and_from()) == first and transactional.stats["parts"] == rendered + 1
    await events.update(event["id"], {"title": "A new title"})
    assert (await subject_and_from())[0] == "You're registered: A new title"
    await identity.update({"organisation_name": "Another Centre"})
    assert (await subject_and_from())[1] == "Another Centre"
    assert transactional.stats["parts"] == rendered + 3

    # A template edited on disk (a copy of the templates, the environment reading it).
    import shutil

    copy = tmp_path / "emails"
    shutil.copytree(render.emails_dir(), copy)
    monkeypatch.setattr(render, "emails_dir", lambda: copy)
    render.environment.cache_clear()
    try:
        transactional.forget()
        assert (await subject_and_from())[0] == "You're registered: A new title"
        subject = copy / "registration_confirmed" / "subject.txt"
        subject.write_text("Registered for {{ event.title }}")
        import os

        os.utime(subject, ns=(subject.stat().st_mtime_ns + 10**9,) * 2)
        transactional._templates[0] = float("-inf")  # the once-a-second look is due
        assert (await subject_and_from())[0] == "Registered for A new title"
    finally:
        render.environment.cache_clear()


async def test_the_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(transactional, "CACHE_SIZE", 3)
    rendered = transactional.stats["parts"]
    for n in range(6):
        event = await published_webinar()
        reg = await register(event, "Ada", f"ada{n}@example.org")
        await _fast(
            _row("registration_confirmed", {"registration_id": reg["id"]}, f"ada{n}@example.org"), settings.get()
        )
    assert len(transactional._parts) == 3 and transactional.stats["parts"] == rendered + 6


async def test_the_worker_sends_the_assembled_message():
    transport = MemoryTransport()
    worker = Worker(settings.get(), transport)
    event = await published_webinar()
    await register(event, "Ada Lovelace", "ada@example.org")
    before = transactional.stats["fast"]
    assert await worker.run_once() == 1
    [message] = transport.messages
    assert transactional.stats["fast"] == before + 1
    assert message.get_body(("plain",)).get_content().startswith("Hello Ada Lovelace,")
    assert {p.get_content_type() for p in message.walk()} >= {"text/calendar", "application/ics"}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_ascii_fold_is_icalendars():
    from events_app import ics

    for line in ["x" * n + tail for n in (60, 73, 74, 75, 150) for tail in ("", "\\n", "^^", "é" * 5, "\\,abc" * 20)]:
        assert ics.fold(line) == icalendar.parser.foldline(line), line


async def test_a_dtstamp_moves_with_the_clock_and_nothing_else_does():
    event = await published_webinar()
    reg = await register(event, "Ada", "ada@example.org")
    row = _row("registration_confirmed", {"registration_id": reg["id"]}, "ada@example.org")
    moment = datetime(2026, 1, 1, 9, 0, 0, tzinfo=UTC)
    with clock.frozen(moment):
        one = await _fast(dict(row), settings.get())
    with clock.frozen(moment + timedelta(seconds=5)):
        two = await _fast(dict(row), settings.get())
    assert calendars(one)[0].walk("VEVENT")[0]["DTSTAMP"].dt == moment
    assert calendars(two)[0].walk("VEVENT")[0]["DTSTAMP"].dt == moment + timedelta(seconds=5)


async def test_a_delivery_prepared_for_the_batch_reads_no_registration_per_row(monkeypatch):
    from events_app.mail.delivery import Delivery
    from events_app.mail.pause import PausePolicy

    config = settings.get()
    event = await published_webinar(capacity=1)
    for n in range(4):
        await register(event, f"Person {n}", f"person{n}@example.org")
    rows = await db.fetch("SELECT * FROM outbox ORDER BY id")
    sender = Delivery(config, PausePolicy(config))
    await sender.prepare(rows[:2])
    await sender.prepare(rows[2:])  # a refill adds to what the run read
    queries = []
    real = db.fetch
    monkeypatch.setattr(db, "fetch", lambda *a, **k: queries.append(a[0]) or real(*a, **k))
    transport = MemoryTransport()
    for row in rows:
        await sender.send(row, transport)
    assert not [q for q in queries if "FROM registration" in q or "FROM event" in q]
    assert [m.get_body(("plain",)).get_content().split(",")[0] for m in transport.messages] == [
        f"Hello Person {n}" for n in range(4)
    ]
    assert "number 3" in str(transport.messages[3]["Subject"])
    sender.forget()
    assert sender.batch is None
