"""Every calendar object the service emits names exactly the instants staff entered, in every
reader: icalendar, vobject, and an Outlook-like reader of one STANDARD and one DAYLIGHT block
(tests/calendars/readers.py). Zones with fall-back and spring-forward edges, negative DST
(Europe/Dublin), half-hour and 45-minute offsets, no DST; titles long and in several scripts.

Pure builders (events_app/ics.py) are searched with hypothesis; the app's own answers (invites
rendered from the outbox, the personal and public .ics, the feed) are checked for a fixed matrix."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import icalendar
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from events_app import db, ics, settings
from events_app.mail import messages

from .readers import check_vtimezones, every_reader

UTC = timezone.utc
ZONES = [
    "America/Toronto", "Europe/Dublin", "Asia/Kolkata", "Australia/Adelaide", "Asia/Kathmandu",
    "Australia/Eucla", "Pacific/Chatham", "Europe/London", "America/Sao_Paulo", "UTC",
    "Australia/Lord_Howe", "America/St_Johns", "Africa/Casablanca", "Asia/Jerusalem",
]
TITLES = [
    "Careers",
    "実装科学のキャリア：あなたが知らなかった実装のポジションについての長い長いウェビナーのタイトル",
    "مهن غير أكاديمية ذات أثر: وظائف التنفيذ التي لم تكن تعرف بوجودها من قبل",
    "🎓🚀 Non-Academic Careers 🌍 with Impact 🧪 – Implementation 职位 وظائف 👩‍🔬👨‍💻 " * 2,
]


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def event_dict(zone: str, starts: datetime, ends: datetime, title: str = "Careers", **extra) -> dict:
    return {"id": 1, "slug": "careers", "title": title, "summary": "", "timezone": zone,
            "starts_at": starts, "ends_at": ends, "status": "published", "version": 1,
            "updated_at": utc(2026, 1, 1), "calendar_uid": "e1@example.org", **extra}


def emitted(event: dict) -> dict[str, bytes]:
    """Every calendar ics.py builds for one event."""
    registration = {"id": 3, "name": "Ada", "email": "ada@example.org", "sequence": 1,
                    "calendar_uid": "r1@example.org"}
    common = dict(organizer_name="Centre", organizer_email="events@example.org",
                  manage_url="https://x.example/r/T", join_url_personal="https://x.example/j/J",
                  event_url="https://x.example/events/careers")
    out = {m: ics.invite(event, registration, method=m, **common) for m in ("REQUEST", "CANCEL")}
    out["public"] = ics.event_feed([event], base_url="https://x.example", organizer_email="events@example.org",
                                   organizer_name="Centre")
    out["feed"] = ics.event_feed([event, {**event, "id": 2, "calendar_uid": "e2@example.org"}],
                                 base_url="https://x.example", organizer_email="events@example.org",
                                 organizer_name="Centre", name="Centre events")
    return out


def assert_instants(data: bytes, starts: datetime, ends: datetime) -> None:
    check_vtimezones(data)
    for reader, seen in zip(("icalendar", "vobject", "outlook"), every_reader(data)):
        assert seen, reader
        for uid, start, end in seen:
            assert (start, end) == (starts, ends), (reader, uid, start, end, data.decode())


# The edges, each as an instant: fall-back's repeated hour (first and second), spring-forward's
# gap crossed, negative DST's change, southern-hemisphere changes, odd offsets.
EDGES = [
    ("America/Toronto", utc(2026, 11, 1, 6, 30), utc(2026, 11, 1, 7, 30)),   # second 1:30 AM (-05:00)
    ("America/Toronto", utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 15)),   # first 1:30 AM (-04:00)
    ("America/Toronto", utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 7, 30)),     # 1:30 EST to 3:30 EDT
    ("America/Toronto", utc(2022, 11, 29, 17), utc(2022, 11, 29, 18)),       # the demo webinar
    ("Europe/Dublin", utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 2, 30)),   # second 1:30 (GMT)
    ("Europe/Dublin", utc(2026, 1, 15, 12), utc(2026, 1, 15, 13)),
    ("Europe/Dublin", utc(2026, 7, 1, 12), utc(2026, 7, 1, 13)),
    ("Europe/Dublin", utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 30)),     # across the spring gap
    ("Australia/Adelaide", utc(2026, 4, 4, 16, 15), utc(2026, 4, 4, 17, 15)),  # 2:45 second (ACST)
    ("Australia/Adelaide", utc(2026, 10, 3, 16), utc(2026, 10, 3, 17)),
    ("Asia/Kolkata", utc(2026, 6, 1, 6, 30), utc(2026, 6, 1, 8)),
    ("Asia/Kathmandu", utc(2026, 6, 1, 6, 15), utc(2026, 6, 1, 7)),
    ("Australia/Eucla", utc(2026, 6, 1, 3, 15), utc(2026, 6, 1, 4)),
    ("Pacific/Chatham", utc(2026, 4, 4, 14, 0), utc(2026, 4, 4, 15, 0)),
    ("Australia/Lord_Howe", utc(2026, 4, 4, 14, 45), utc(2026, 4, 4, 15, 45)),  # 30-minute DST
]


def test_the_edges_in_every_object_and_every_reader():
    for zone, starts, ends in EDGES:
        for title in TITLES:
            for kind, data in emitted(event_dict(zone, starts, ends, title)).items():
                assert_instants(data, starts, ends)
                summaries = [str(v["SUMMARY"]) for v in icalendar.Calendar.from_ical(data).walk("VEVENT")]
                assert all(s.endswith(" ".join(title.split())) for s in summaries), (kind, summaries)
                assert all(len(line) <= 75 for line in data.split(b"\r\n")), kind


def test_an_instant_in_the_repeated_hour_is_written_in_utc():
    data = emitted(event_dict(*EDGES[0]))["REQUEST"]
    assert b"DTSTART:20261101T063000Z\r\n" in data
    # an ordinary time keeps the event's zone
    data = emitted(event_dict(*EDGES[3]))["REQUEST"]
    assert b"DTSTART;TZID=America/Toronto:20221129T120000\r\n" in data


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    zone=st.sampled_from(ZONES),
    minutes=st.integers(min_value=0, max_value=8 * 366 * 24 * 4).map(lambda q: q * 15),
    length=st.integers(min_value=1, max_value=40).map(lambda q: q * 15),
)
def test_any_time_in_any_zone(zone, minutes, length):
    starts = utc(2024, 1, 1) + timedelta(minutes=minutes)
    ends = starts + timedelta(minutes=length)
    for data in emitted(event_dict(zone, starts, ends)).values():
        assert_instants(data, starts, ends)


@hsettings(max_examples=150, deadline=None)
@given(zone=st.sampled_from(ZONES), year=st.integers(2024, 2032), pick=st.integers(0, 10 ** 6),
       shift=st.sampled_from([-90, -60, -45, -30, -15, 0, 15, 30, 45, 60, 90]))
def test_times_right_at_each_change(zone, year, pick, shift):
    """Near a real transition (where readers go wrong), found from zoneinfo."""
    tz = ZoneInfo(zone)
    moment, changes = utc(year, 1, 1), []
    while moment.year == year:
        if tz.utcoffset(moment) != tz.utcoffset(moment + timedelta(hours=1)):
            changes.append(moment + timedelta(hours=1))
        moment += timedelta(hours=1)
    if not changes:
        return
    starts = changes[pick % len(changes)] + timedelta(minutes=shift)
    for data in emitted(event_dict(zone, starts, starts + timedelta(minutes=45))).values():
        assert_instants(data, starts, starts + timedelta(minutes=45))


# --- the app's own answers, through HTTP and the outbox ------------------------------------------

APP_MATRIX = [
    # (zone, starts_at as staff type it, ends_at, the instants)
    ("America/Toronto", "2027-11-07T01:30:00-05:00", "2027-11-07T02:30:00-05:00",
     utc(2027, 11, 7, 6, 30), utc(2027, 11, 7, 7, 30)),
    ("America/Toronto", "2027-11-07T01:30:00-04:00", "2027-11-07T01:45:00-05:00",
     utc(2027, 11, 7, 5, 30), utc(2027, 11, 7, 6, 45)),
    ("America/Toronto", "2027-03-14T01:30:00", "2027-03-14T03:30:00",
     utc(2027, 3, 14, 6, 30), utc(2027, 3, 14, 7, 30)),
    ("Europe/Dublin", "2027-10-31T01:30:00+00:00", "2027-10-31T03:00:00",
     utc(2027, 10, 31, 1, 30), utc(2027, 10, 31, 3)),
    ("Europe/Dublin", "2027-01-12T18:00:00", "2027-01-12T19:00:00", utc(2027, 1, 12, 18), utc(2027, 1, 12, 19)),
    ("Asia/Kolkata", "2027-02-01T10:00:00", "2027-02-01T11:30:00", utc(2027, 2, 1, 4, 30), utc(2027, 2, 1, 6)),
    ("Australia/Adelaide", "2027-04-04T02:30:00+09:30", "2027-04-04T04:00:00",
     utc(2027, 4, 3, 17), utc(2027, 4, 3, 18, 30)),
    ("Asia/Kathmandu", "2027-02-01T10:00:00", "2027-02-01T11:00:00", utc(2027, 2, 1, 4, 15), utc(2027, 2, 1, 5, 15)),
    ("Australia/Eucla", "2027-02-01T10:00:00", "2027-02-01T11:00:00", utc(2027, 2, 1, 1, 15), utc(2027, 2, 1, 2, 15)),
]


async def _render(kind: str) -> list[bytes]:
    """The calendar parts of every `kind` message in the outbox, as the worker would send them."""
    out = []
    for row in await db.fetch("SELECT * FROM outbox WHERE kind = {} ORDER BY id", kind):
        message = await messages.build(row, settings.get())
        for part in message.walk():
            if part.get_content_type() == "text/calendar":
                out.append(part.get_payload(decode=True))
    return out


async def test_the_app_emits_the_instants_staff_entered(client, auth):
    from events_app.domain import events, registrations

    for i, (zone, starts_at, ends_at, starts, ends) in enumerate(APP_MATRIX):
        title = TITLES[i % len(TITLES)]
        answer = await client.post("/api/v1/events", headers=auth, json={
            "title": title, "starts_at": starts_at, "ends_at": ends_at, "timezone": zone,
            "status": "published", "slug": f"e{i}", "join_url": "https://meet.example.org/x"})
        assert answer.status_code == 201, answer.text
        event_id = answer.json()["id"]
        reg = await registrations.register(await events.get(event_id), {"name": "Ada", "email": f"ada{i}@example.org"})
        row = (await db.fetch("SELECT * FROM registration WHERE id = {}", reg["id"]))[0]
        token = registrations.personal_token(row)
        personal = await client.get(f"/r/{token}.ics")
        assert personal.headers["content-type"].count("charset") == 1, personal.headers["content-type"]
        public = await client.get(f"/events/e{i}.ics")
        for data in (personal.content, public.content):
            assert_instants(data, starts, ends)
    [*invites] = await _render("registration_confirmed")
    assert len(invites) == len(APP_MATRIX)
    for data, (*_, starts, ends) in zip(invites, APP_MATRIX):
        assert_instants(data, starts, ends)
    feed = (await client.get("/calendar.ics")).content
    check_vtimezones(feed)
    for reader in every_reader(feed):
        assert sorted((s, e) for _, s, e in reader) == sorted((s, e) for *_, s, e in APP_MATRIX)

    # A move (update) and the cancellation: same instants rule, in the outbox's own messages.
    first = (await db.fetch("SELECT id FROM event ORDER BY id"))[0]["id"]
    moved = await client.patch(f"/api/v1/events/{first}", headers=auth,
                               json={"starts_at": "2027-11-07T01:15:00-05:00", "ends_at": "2027-11-07T01:50:00-05:00"})
    assert moved.status_code == 200, moved.text
    [update] = await _render("event_changed")
    assert_instants(update, utc(2027, 11, 7, 6, 15), utc(2027, 11, 7, 6, 50))
    assert (await client.post(f"/api/v1/events/{first}/cancel", headers=auth)).status_code in (200, 202)
    [cancel] = await _render("event_cancelled")
    assert b"METHOD:CANCEL" in cancel
    assert_instants(cancel, utc(2027, 11, 7, 6, 15), utc(2027, 11, 7, 6, 50))


async def test_a_time_without_offset_in_a_repeated_or_skipped_hour_is_refused(client, auth):
    base = {"title": "Careers", "timezone": "America/Toronto", "status": "published"}
    twice = await client.post("/api/v1/events", headers=auth, json={
        **base, "starts_at": "2026-11-01T01:30", "ends_at": "2026-11-01T03:00"})
    assert twice.status_code == 400
    assert json.dumps(twice.json()).count("starts_at")
    message = json.dumps(twice.json(), ensure_ascii=False)
    assert "2026-11-01T01:30 happens twice in America/Toronto" in message, message
    assert "-04:00 (the first) or -05:00 (the second)" in message, message
    gap = await client.post("/api/v1/events", headers=auth, json={
        **base, "starts_at": "2027-01-01T10:00", "ends_at": "2027-03-14T02:30"})
    assert gap.status_code == 400
    message = json.dumps(gap.json(), ensure_ascii=False)
    assert "ends_at" in message and "2027-03-14T02:30 doesn't exist in America/Toronto" in message, message
    assert "the clocks jump from 2:00 to 3:00" in message, message
    dublin = await client.post("/api/v1/events", headers=auth, json={
        **base, "timezone": "Europe/Dublin", "starts_at": "2026-10-25T01:30", "ends_at": "2026-10-25T04:00"})
    assert "+01:00 (the first) or +00:00 (the second)" in json.dumps(dublin.json()), dublin.text
    assert not await db.fetch("SELECT id FROM event")
    given_offset = await client.post("/api/v1/events", headers=auth, json={
        **base, "starts_at": "2026-11-01T01:30-05:00", "ends_at": "2026-11-01T03:00"})
    assert given_offset.status_code == 201, given_offset.text
