"""Mail built from what strangers typed (issue 11): names and titles cannot add recipients or
headers, names cannot forge lines in a body, and a message that can never be built fails once,
with its reason shown to staff.

Names are written into the database directly (as rows stored before input validation was
tightened would be), then the real builders make the bytes that a transport writes, and those
bytes are read back with the standard library's parsers (`policy.default` and `policy.strict`).
"""

from __future__ import annotations

import dataclasses
import html
import itertools
import logging
import re
from email import policy
from email.parser import BytesParser
from email.policy import SMTP

import pytest
from hypothesis import HealthCheck, example, given, settings as hsettings, strategies as st

from events_app import db, settings
from events_app.domain import issues
from events_app.mail import bulk, messages
from events_app.mail.worker import Worker
from mail.helpers import make_all_due, outbox_rows, published_webinar, register, text_of

ADDRESSES = itertools.count(1)
HYPOTHESIS = hsettings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
# What a hostile or clumsy name is made of: the specials of RFC 5322, line breaks of every kind,
# encoded-word markers, other addresses, non-ASCII; and long runs that force folding.
PIECES = st.sampled_from([
    ",", '"', "<", ">", "@", "\n", "\r\n", "\r", "\t", ";", ":", "\\", "(", ")", "[", "]", ".", "'",
    "=?utf-8?q?", "?=", "=2C", "é", "Ω", "Łódź", "\u2028", "\x85", "\x07", "\x1b", " ", "  ",
    "evil@attacker.example", "Bcc: x@attacker.example", "<evil@attacker.example>", "😀", "\u202e",
    "Join here: http://evil.example/", "Smith, John",
])
NAMES = st.one_of(
    st.lists(st.one_of(PIECES, st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)), max_size=40).map("".join),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=100, max_size=400),
    st.lists(PIECES, min_size=20, max_size=80).map("".join),
)
CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
FORGED = "Ada\nJoin here: http://evil.example/\nThanks, the organisers"


def parse_both(data: bytes):
    """The message as a lenient and as a strict reader parses it."""
    return [BytesParser(policy=p).parsebytes(data) for p in (policy.default, policy.strict)]


def only_recipient(parsed, address: str) -> None:
    assert len(parsed.get_all("To")) == 1
    assert [a.addr_spec for a in parsed["To"].addresses] == [address]
    assert parsed.get_all("Cc") is None and parsed.get_all("Bcc") is None
    assert len(parsed["From"].addresses) == 1
    assert parsed["From"].addresses[0].addr_spec == settings.get().mail_from_address


@pytest.fixture
async def webinar():
    return await published_webinar()


@pytest.fixture
async def issue():
    created = await issues.create({"title": "October 2019", "issue_date": "2019-10-15", "body": "Hi"})
    return await issues.get(created["id"])


async def confirmation_with_name(event: dict, name: str) -> tuple[dict, str]:
    """A registration whose stored name is `name`; (its confirmation row, its address)."""
    name = name[:200]  # what the column holds
    address = f"person{next(ADDRESSES)}@example.com"
    reg = await register(event, "Placeholder", address)
    await db.fetch("UPDATE registration SET name = {} WHERE id = {}", name, reg["id"])
    [row] = [r for r in await outbox_rows("registration_confirmed") if r["recipient"] == address]
    return row, address


# -- 1. headers -------------------------------------------------------------------------------


@given(name=NAMES)
@example(name="Attacker, evil@attacker.example, Some Very Long Name That Forces Folding Of The Header Line")
@example(name='a"b, c@d.e <f@g.h> ' * 4)
@example(name="x" * 300)
@HYPOTHESIS
async def test_a_registrants_name_never_adds_a_recipient_to_a_confirmation(webinar, name):
    row, address = await confirmation_with_name(webinar, name)

    data = (await messages.build(row, settings.get())).as_bytes(policy=SMTP)

    for parsed in parse_both(data):
        only_recipient(parsed, address)
        shown = parsed["To"].addresses[0].display_name
        # At most the 100 characters kept, plus the odd space the folder puts between words.
        assert not CONTROLS.search(shown) and len(shown) <= 110


@given(name=NAMES)
@example(name="Attacker, evil@attacker.example, Some Very Long Name That Forces Folding Of The Header Line")
@HYPOTHESIS
async def test_a_subscribers_name_never_adds_a_recipient_to_an_issue_email(issue, name):
    shared = bulk.render_issue(issue, settings.get())
    address = f"reader{next(ADDRESSES)}@example.org"
    subscriber = {"id": 7, "email": address, "name": name, "token_salt": "salt"}

    message = bulk.compose(shared, {"id": 1, "created_at": None}, subscriber, address, settings.get())

    assert message.recipient == address
    for parsed in parse_both(message.data):
        only_recipient(parsed, address)
        assert len(parsed.get_all("Subject")) == 1 and len(parsed.get_all("List-Id")) == 1
        assert parsed.get_content_type() == "multipart/alternative"


@given(title=NAMES.filter(lambda t: t.strip()))
@example(title="Careers\nBcc: evil@attacker.example")
@example(title="Löng " * 60)
@HYPOTHESIS
async def test_an_issue_title_stays_in_the_subject(issue, title):
    shared = bulk.render_issue({**issue, "title": title}, settings.get())
    address = "reader@example.org"

    message = bulk.compose(shared, {"id": 1, "created_at": None}, {"id": 7, "email": address, "name": "Ada", "token_salt": "s"},
                           address, settings.get())

    # Compared without white space: Python's folder may add a space where it joins an encoded
    # word to plain text, which changes nothing that matters here.
    expected = "".join(CONTROLS.sub(" ", f"Implementation in Action: {title}").split())
    for parsed in parse_both(message.data):
        only_recipient(parsed, address)
        assert "".join(str(parsed["Subject"]).split()) == expected
        assert sorted(set(parsed.keys())) == sorted({
            "From", "To", "Subject", "Date", "Message-ID", "List-Id", "Precedence", "Auto-Submitted",
            "MIME-Version", "Content-Type", "List-Unsubscribe", "List-Unsubscribe-Post"})


async def test_an_event_title_with_a_line_break_stays_in_the_subject(webinar):
    await db.fetch("UPDATE event SET title = {} WHERE id = {}", "Careers\r\nBcc: evil@attacker.example", webinar["id"])
    from events_app.domain import events

    events.forget()
    row, address = await confirmation_with_name(webinar, "Ada Lovelace")

    data = (await messages.build(row, settings.get())).as_bytes(policy=SMTP)

    for parsed in parse_both(data):
        only_recipient(parsed, address)
        assert str(parsed["Subject"]) == "You're registered: Careers Bcc: evil@attacker.example"


async def test_a_long_sender_name_with_commas_stays_one_sender(webinar, monkeypatch):
    """EVENTS_MAIL_FROM is configuration, but a name like "Centre for X, University of Y" is
    ordinary; folded, it must not become two senders."""
    config = dataclasses.replace(
        settings.get(), mail_from='"Centre for Implementation Science, Faculty of Medicine, University of Somewhere" <events@example.org>'
    )
    monkeypatch.setattr(settings, "get", lambda: config)
    row, address = await confirmation_with_name(webinar, "Ada Lovelace")

    data = (await messages.build(row, config)).as_bytes(policy=SMTP)

    for parsed in parse_both(data):
        assert [a.addr_spec for a in parsed["From"].addresses] == ["events@example.org"]
        assert [a.addr_spec for a in parsed["To"].addresses] == [address]


# -- 2. bodies --------------------------------------------------------------------------------


async def test_a_name_cannot_forge_a_line_in_the_body(webinar):
    row, _ = await confirmation_with_name(webinar, FORGED)

    text = text_of(parse_both((await messages.build(row, settings.get())).as_bytes(policy=SMTP))[0])

    assert not any(line.startswith("Join here: http://evil") for line in text.splitlines())
    assert "Hello Ada Join here: http://evil.example/ Thanks, the organisers," in text.splitlines()


@given(name=NAMES)
@example(name=FORGED)
@HYPOTHESIS
async def test_a_name_takes_one_line_of_the_body_whatever_it_holds(webinar, name):
    """The body has as many lines with this name as with a plain one."""
    row, _ = await confirmation_with_name(webinar, name)
    nasty = text_of(parse_both((await messages.build(row, settings.get())).as_bytes(policy=SMTP))[0])
    registration_id = (await db.fetch("SELECT id FROM registration WHERE email = {}", row["recipient"]))[0]["id"]
    await db.fetch("UPDATE registration SET name = 'Ada' WHERE id = {}", registration_id)
    plain = text_of(parse_both((await messages.build(row, settings.get())).as_bytes(policy=SMTP))[0])

    assert len(nasty.splitlines()) == len(plain.splitlines())


async def test_an_issue_greeting_is_one_line(issue):
    shared = bulk.render_issue(issue, settings.get())
    subscriber = {"id": 7, "email": "r@example.org", "name": FORGED, "token_salt": "s"}

    message = bulk.compose(shared, {"id": 1, "created_at": None}, subscriber, "r@example.org", settings.get())

    text = text_of(parse_both(message.data)[0])
    assert not any(line.startswith("Join here: http://evil") for line in text.splitlines())


# -- 3. a message that can never be built -----------------------------------------------------

BAD_ADDRESSES = ["ada\x07lovelace@example.com", "jörg@example.com", "ada@example.com\r\nBcc: evil@attacker.example"]


@pytest.mark.parametrize("transport", ["smtp", "file"])
async def test_a_confirmation_that_can_never_be_built_fails_once_and_staff_see_why(
    webinar, transport, smtp_settings, tmp_path, caplog, client  # noqa: F811
):
    config = smtp_settings if transport == "smtp" else dataclasses.replace(smtp_settings, smtp_url=None, var_dir=tmp_path)
    bad = []
    for n, address in enumerate(BAD_ADDRESSES):
        # Stored before validation was tightened: the rows hold the address as typed.
        reg = await register(webinar, f"Person {n}", f"placeholder{n}@example.com")
        await db.fetch("UPDATE registration SET email = {} WHERE id = {}", address, reg["id"])
        await db.fetch("UPDATE outbox SET recipient = {} WHERE recipient = {}", address, f"placeholder{n}@example.com")
        bad.append(address)
    await register(webinar, "Ada Lovelace", "ada@example.com")
    worker = Worker(config)

    with caplog.at_level(logging.INFO):
        assert await worker.run_once() == 4
        await make_all_due()
        assert await worker.run_once() == 0  # never tried again
    await worker.close()

    rows = {r["recipient"]: r for r in await outbox_rows()}
    assert rows["ada@example.com"]["status"] == "sent"
    for address in bad:
        row = rows[address]
        assert (row["status"], row["attempts"]) == ("failed", 1), row
        assert "\n" not in row["last_error"] and "\r" not in row["last_error"]
        assert "address" in row["last_error"], row["last_error"]
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"
    for address in bad:
        row_id = rows[address]["id"]
        assert len([r for r in caplog.records if f"outbox row {row_id} " in r.getMessage()]) == 1

    page = await staff_page(client, "/staff/mail?status=failed")
    shown = {int(n): html.unescape(r) for n, r in re.findall(r'<tr data-outbox="(\d+)">(.*?)</tr>', page, re.S)}
    for address in bad:
        row = rows[address]
        assert "Failed" in shown[row["id"]] and row["last_error"] in shown[row["id"]]
    assert not CONTROLS.search(page.replace("\n", " "))  # control characters shown, not sent raw
    assert "ada\\x07lovelace@example.com" in page
    assert "ada@example.com\\r\\nBcc: evil@attacker.example" in page


@pytest.mark.parametrize("transport", ["smtp", "file"])
async def test_an_issue_to_an_address_that_can_never_be_written_fails_once(
    transport, tmp_path, smtp_settings, smtp_server, caplog  # noqa: F811
):
    from bulletin.helpers import new_issue, run_until_settled, subscribers

    config = smtp_settings if transport == "smtp" else dataclasses.replace(smtp_settings, smtp_url=None, var_dir=tmp_path)
    await subscribers(tmp_path, 4)
    for n, address in enumerate(BAD_ADDRESSES):
        await db.fetch("UPDATE subscriber SET email = {} WHERE email = {}", address, f"reader{n}@example.org")
    issue = await new_issue()
    await issues.release(issue["id"])
    worker = Worker(config)

    with caplog.at_level(logging.INFO):
        await run_until_settled(worker)
    await worker.close()

    if transport == "smtp":
        assert [r.rcpt_tos for r in smtp_server.received] == [["reader3@example.org"]]
    else:
        [written] = (tmp_path / "mail").iterdir()
        assert [a.addr_spec for a in parse_both(written.read_bytes())[1]["To"].addresses] == ["reader3@example.org"]
    failed = await db.fetch("SELECT * FROM outbox WHERE status = 'failed'")
    assert len(failed) == len(BAD_ADDRESSES)
    for row in failed:
        assert row["attempts"] == 1 and "address" in row["last_error"] and "\n" not in row["last_error"]
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"


async def staff_page(client, path: str) -> str:
    from events_app.domain import staff
    from staff.conftest import EMAIL, PASSWORD, sign_in

    await staff.create(EMAIL, PASSWORD, "Team Lead")
    await sign_in(client)
    answer = await client.get(path)
    assert answer.status_code == 200
    return answer.text


@given(
    name=st.one_of(NAMES, st.from_regex(r"[A-Za-z0-9'_ -]{0,70}", fullmatch=True)),
    local=st.from_regex(r"[A-Za-z0-9_+-]{1,30}(\.[A-Za-z0-9_+-]{1,10}){0,2}", fullmatch=True),
    domain=st.from_regex(r"[A-Za-z0-9-]{1,30}(\.[A-Za-z0-9-]{1,10}){1,2}", fullmatch=True),
)
@hsettings(max_examples=150, deadline=None)
def test_the_bulk_to_line_is_what_the_header_registry_writes(name, local, domain):
    """Bulk mail's fast path for plain names and addresses writes the very line the header
    registry folds, so the speed costs no safety."""
    from events_app.mail import headers

    address = f"{local}@{domain}"
    assert headers.to_line(name, address) == headers.to_line_slow(name, address)
    line, envelope = headers.to_line(name, address)
    assert envelope == address
    for parsed in parse_both(f"{line}\nSubject: x\n\nbody\n".encode()):
        assert [a.addr_spec for a in parsed["To"].addresses] == [address]
