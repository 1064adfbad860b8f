"""Mail every provider accepts (issue 12): names and subjects in any script, lines within the
limits of RFC 5322 and RFC 2045, CRLF everywhere, and the envelope sender that names the row.

Bulk messages are built by mail/bulk.py, transactional ones by mail/messages.py; both go through
the real worker to a real `.eml` file (FileTransport) or the loopback SMTP server, and the bytes
are read back with the standard library's strict parser. Hypothesis picks the names and titles
from several scripts (Latin with accents, Cyrillic, Greek, CJK, Arabic, emoji with joiners) and
lengths that force folding.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from email import policy
from email.header import decode_header, make_header
from email.parser import BytesParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings as hsettings, strategies as st

from events_app import db, settings
from events_app.domain import events, issues
from events_app.mail import bulk, headers, verp
from events_app.mail.transport import FileTransport
from events_app.mail.worker import Worker
from mail.helpers import outbox_rows, published_webinar, register

HYPOTHESIS = hsettings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
WORDS = st.sampled_from([
    "Café", "crème", "brûlée", "Łódź", "Ærøskøbing", "Добро", "пожаловать", "Конференция", "Καλημέρα",
    "κόσμε", "日本語の題名", "中文标题", "한국어", "مرحبا", "بالعالم", "😀", "🎉", "👩‍👩‍👧", "🇨🇦",
    "Implementation", "in", "Action", "a", "Q&A", "10:00", "x" * 30, "née", "Ωmega",
])
UNICODE = st.text(
    st.characters(whitelist_categories=("Lu", "Ll", "Lo", "Nd", "So", "Pd"), max_codepoint=0x1FAFF), min_size=1, max_size=25
)
# Several words (so spaces sit between encoded and plain text), some long enough to fold.
TEXT = st.lists(st.one_of(WORDS, UNICODE), min_size=1, max_size=14).map(" ".join)
NAME = st.lists(st.one_of(WORDS, UNICODE), min_size=1, max_size=6).map(" ".join)
ADDRESSES = itertools.count(1)
URL_LINE = re.compile(rb"^\s<[^ ]+>,?$")
compat32_parser = BytesParser(policy=policy.compat32)


def header_block(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


def check_lines(data: bytes) -> None:
    """CRLF only; every header line within 78 characters (a line holding one URL that is longer
    by itself excepted); every quoted-printable line within 76."""
    assert b"\n" not in data.replace(b"\r\n", b""), "a bare LF"
    assert b"\r" not in data.replace(b"\r\n", b""), "a bare CR"
    for line in header_block(data).split(b"\r\n"):
        assert len(line) <= 78 or URL_LINE.match(line), line
    parsed = BytesParser(policy=policy.strict).parsebytes(data)
    for part in parsed.walk():
        if part.get("Content-Transfer-Encoding", "").lower() == "quoted-printable":
            raw = _raw_body(data, part)
            for line in raw.split(b"\r\n"):
                assert len(line) <= 76, line


def _raw_body(data: bytes, part) -> bytes:
    """The encoded body of `part` as it stands in `data` (between its blank line and the next
    boundary)."""
    boundary = None
    parsed = BytesParser(policy=policy.strict).parsebytes(data)
    for p in parsed.walk():
        if p.is_multipart():
            boundary = p.get_boundary()
    chunks = data.split(b"--" + boundary.encode())
    for chunk in chunks:
        head, _, body = chunk.partition(b"\r\n\r\n")
        if part.get_content_type().encode() in head and b"quoted-printable" in head:
            return body.rstrip(b"\r\n")
    raise AssertionError("part not found")


def strict(data: bytes):
    return BytesParser(policy=policy.strict).parsebytes(data)


def shown_name(data: bytes, field: str) -> str:
    """The display name of `field` as an RFC 2047 reader shows it: white space between adjacent
    encoded words is not text (RFC 2047 6.2). Python 3.11's header registry keeps it inside a
    phrase (it inserts a space where a long name was split into encoded words), so the name is
    decoded here with the legacy decoder, which follows the RFC; the address itself is read by
    the strict parser."""
    raw = compat32_parser.parsebytes(data)[field]
    unfolded = re.sub(r"\r?\n[ \t]", " ", str(raw))
    phrase = unfolded.rpartition("<")[0].strip()
    return str(make_header(decode_header(phrase))) if phrase else ""


@pytest.fixture
async def issue():
    created = await issues.create({"title": "October 2019", "issue_date": "2019-10-15", "body": "Hi"})
    return await issues.get(created["id"])


# -- bulk mail ----------------------------------------------------------------------------------


@given(sender=NAME, title=TEXT, reader=NAME)
@example(sender="Zoë Événements", title="Café — Über die Grenzen des Wissens " * 3, reader="Ada")
@example(sender="Конференция", title="日本語 のタイトル  and 😀 words", reader="Σωκράτης")
@HYPOTHESIS
async def test_bulk_mail_keeps_from_subject_and_limits_in_every_script(issue, sender, title, reader):
    config = dataclasses.replace(settings.get(), mail_from=f'"{sender}" <events@example.org>')
    shared = bulk.render_issue({**issue, "title": title}, config)
    address = f"reader{next(ADDRESSES)}@example.org"
    subscriber = {"id": 7, "email": address, "name": reader, "token_salt": "salt"}

    message = bulk.compose(shared, {"id": 41, "created_at": None}, subscriber, address, config)

    check_lines(message.data)
    parsed = strict(message.data)
    assert [a.addr_spec for a in parsed["From"].addresses] == ["events@example.org"]
    assert shown_name(message.data, "From") == headers.safe_phrase(sender)
    assert [a.addr_spec for a in parsed["To"].addresses] == [address]
    assert shown_name(message.data, "To") == headers.safe_phrase(reader)
    expected = headers.subject(f"Implementation in Action: {title}")
    assert str(parsed["Subject"]) == expected  # spaces included
    assert message.sender == verp.bounce_address(41)


async def test_a_long_quoted_printable_line_never_reaches_77(issue):
    """Before: pieces joined with soft breaks made lines of 77 and 78 characters."""
    body = "\n\n".join(("word " * n).strip() + " é" * k for n in range(10, 20) for k in range(3))
    created = await issues.create({"title": "Lines", "issue_date": "2019-10-15", "body": body})
    shared = bulk.render_issue(await issues.get(created["id"]), settings.get())
    for name in ("A", "Ada Lovelace " * 5, "x" * 70):
        subscriber = {"id": 7, "email": "r@example.org", "name": name, "token_salt": "salt"}
        message = bulk.compose(shared, {"id": 1, "created_at": None}, subscriber, "r@example.org", settings.get())
        check_lines(message.data)
        parsed = strict(message.data)
        assert parsed.get_body(("plain",)).get_content().startswith(f"Hello {headers.single_line(name)},")


async def test_a_bulk_eml_file_has_crlf_line_ends(tmp_path, issue):
    shared = bulk.render_issue(issue, settings.get())
    subscriber = {"id": 7, "email": "r@example.org", "name": "Ada", "token_salt": "salt"}
    message = bulk.compose(shared, {"id": 1, "created_at": None}, subscriber, "r@example.org", settings.get())
    transport = FileTransport(tmp_path)

    await transport.send_raw(message.sender, message.recipient, message.data, outbox_id=1)

    [written] = list(Path(tmp_path).glob("*.eml"))
    data = written.read_bytes()
    assert data.count(b"\r\n") > 20 and b"\n" not in data.replace(b"\r\n", b"")
    check_lines(data)


# -- transactional mail -------------------------------------------------------------------------


@given(sender=NAME, title=TEXT, person=NAME)
@example(sender="Zoë Événements", title="Café — Über die Grenzen des Wissens " * 3, person="Ada")
@example(sender="مرحبا بالعالم", title="👩‍👩‍👧 family  day", person="中文标题")
@HYPOTHESIS
async def test_transactional_mail_through_the_worker_to_an_eml_file(tmp_path_factory, sender, title, person):
    folder = tmp_path_factory.mktemp("eml")
    config = dataclasses.replace(settings.get(), mail_from=f'"{sender}" <events@example.org>')
    event = await published_webinar()
    await db.fetch("UPDATE event SET title = {} WHERE id = {}", title, event["id"])
    events.forget()
    address = f"person{next(ADDRESSES)}@example.com"
    reg = await register(event, "Placeholder", address)
    await db.fetch("UPDATE registration SET name = {} WHERE id = {}", person, reg["id"])
    worker = Worker(config, FileTransport(folder))

    await worker.run_once(50)

    [row] = [r for r in await outbox_rows("registration_confirmed") if r["recipient"] == address]
    assert row["status"] == "sent", row["last_error"]
    [written] = list(folder.glob(f"*-{row['id']}.eml"))
    data = written.read_bytes()
    check_lines(data)
    parsed = strict(data)
    assert [a.addr_spec for a in parsed["From"].addresses] == ["events@example.org"]
    assert shown_name(data, "From") == headers.safe_phrase(sender)
    assert [a.addr_spec for a in parsed["To"].addresses] == [address]
    assert shown_name(data, "To") == headers.safe_phrase(person)
    assert str(parsed["Subject"]) == headers.subject(f"You're registered: {title}")


# -- the envelope ---------------------------------------------------------------------------------


async def test_every_message_has_the_rows_bounce_address_as_envelope_sender(smtp_server, worker, tmp_path):
    from bulletin.helpers import new_issue, run_until_settled, subscribers

    await subscribers(tmp_path, 3)
    issue = await new_issue()
    await issues.release(issue["id"])
    event = await published_webinar()
    await register(event, "Ada Lovelace", "ada@example.com")

    await run_until_settled(worker)

    rows = {r["recipient"]: r["id"] for r in await outbox_rows()}
    assert len(smtp_server.received) == 4
    for received in smtp_server.received:
        row_id = rows[received.rcpt_tos[0]]
        assert received.mail_from == verp.bounce_address(row_id)
        assert verp.parse(received.mail_from) == ("b", str(row_id))
