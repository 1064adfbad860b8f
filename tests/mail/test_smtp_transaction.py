"""The worker's SMTP transaction (mail/transport.py `_transaction`) against a real server.

It replaces aiosmtplib's `sendmail` for one recipient (sendmail parses each address twice and
normalises the message twice, about a sixth of the worker's CPU per message), so it has to
deliver exactly what `sendmail` delivers: the same envelope, the same bytes, the same SIZE, and the
same outcome for refusals, including the RSET that keeps the connection usable. The lanes build a
row's message while the one before is on the wire (mail/lanes.py): the last tests check that
this happens, and that a message built ahead for a row that goes back untried leaves no trace.
"""

from __future__ import annotations

import asyncio

import aiosmtplib
import pytest
from bulletin.helpers import new_issue, subscribers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events_app.domain import issues, mailings
from events_app.mail import delivery as delivery_module
from events_app.mail import transport as transport_module
from events_app.mail.transport import PermanentFailure, SMTPTransport, TemporaryFailure
from events_app.mail.worker import Worker

ADDRESS = st.from_regex(r"[A-Za-z0-9._%+=-]{1,24}@[A-Za-z0-9-]{1,15}(\.[A-Za-z]{2,6}){1,2}", fullmatch=True)
# Message lines as they come: dots at the start (stuffed on the wire), lone LF and CR line ends.
LINE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=90)
BODY = st.lists(st.tuples(st.sampled_from([".", "..", "", "From ", " "]), LINE, st.sampled_from(["\r\n", "\n", "\r"])),
                min_size=1, max_size=30)


def _message(sender: str, recipient: str, lines: list[tuple[str, str, str]]) -> bytes:
    head = f"From: <{sender}>\r\nTo: <{recipient}>\r\nSubject: Implementation in Action\r\n\r\n"
    return (head + "".join(a + b + end for a, b, end in lines)).encode("ascii")


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(sender=ADDRESS, recipient=ADDRESS, lines=BODY)
def test_what_arrives_is_what_sendmail_delivers(smtp_server, sender, recipient, lines):
    data = _message(sender, recipient, lines)

    async def both() -> None:
        ours = SMTPTransport(smtp_server.url, timeout=10)
        await ours.send_raw(sender, recipient, data)
        await ours.close()
        theirs = aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_server.port, timeout=10)
        await theirs.connect()
        await theirs.sendmail(sender, [recipient], data)
        await theirs.quit()

    asyncio.run(both())
    ours, theirs = smtp_server.received[-2:]
    assert (ours.mail_from, ours.rcpt_tos, ours.raw) == (theirs.mail_from, theirs.rcpt_tos, theirs.raw)
    # SIZE is the size on the wire with CRLF line ends (RFC 1870), as newer aiosmtplib counts it
    # (3.0, our floor, counted the bytes as given).
    on_the_wire = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    assert [o.upper() for o in ours.mail_options] == [f"SIZE={len(on_the_wire)}"], "SIZE (the server offers it) as RFC 1870 counts it"


# The worker's messages: CRLF line ends only, so DATA goes out without aiosmtplib's mending.
CRLF_BODY = st.lists(st.tuples(st.sampled_from([".", "..", "", "From ", " ", ". "]), LINE, st.just("\r\n")),
                     min_size=1, max_size=30)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(sender=ADDRESS, recipient=ADDRESS, lines=CRLF_BODY, last_line_open=st.booleans())
def test_a_message_with_crlf_line_ends_skips_the_mending_and_arrives_as_sendmail_delivers(
        smtp_server, monkeypatch, sender, recipient, lines, last_line_open):
    data = _message(sender, recipient, lines)
    if last_line_open:
        data = data[:-2]  # no line end after the last line: DATA adds one, as sendmail's does
    mended: list[bytes] = []
    real_data = aiosmtplib.SMTP.data

    async def data_spy(self, message, **kwargs):
        mended.append(message)
        return await real_data(self, message, **kwargs)

    async def ours() -> None:
        transport = SMTPTransport(smtp_server.url, timeout=10)
        await transport.send_raw(sender, recipient, data)
        await transport.close()

    async def theirs() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_server.port, timeout=10)
        await client.connect()
        await client.sendmail(sender, [recipient], data)
        await client.quit()

    with monkeypatch.context() as patch:
        patch.setattr(aiosmtplib.SMTP, "data", data_spy)
        asyncio.run(ours())
    assert mended == [], "a message with CRLF line ends only does not go through aiosmtplib's data()"
    asyncio.run(theirs())
    ours_got, theirs_got = smtp_server.received[-2:]
    assert (ours_got.mail_from, ours_got.rcpt_tos, ours_got.raw) == (theirs_got.mail_from, theirs_got.rcpt_tos, theirs_got.raw)


@settings(max_examples=400, deadline=None)
@given(lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")), max_size=12),
       last_line_open=st.booleans())
def test_the_data_body_is_the_bytes_aiosmtplib_would_send(lines, last_line_open):
    from aiosmtplib.protocol import LINE_ENDINGS_REGEX, PERIOD_REGEX

    data = b"\r\n".join(lines) + (b"" if last_line_open else b"\r\n")
    assert transport_module._has_crlf_only(data)
    # aiosmtplib's execute_data_command, in both 3.0's and 5.x's order of steps.
    theirs = PERIOD_REGEX.sub(b"..", LINE_ENDINGS_REGEX.sub(b"\r\n", data))
    theirs += b"" if theirs.endswith(b"\r\n") else b"\r\n"
    assert transport_module._data_body(data) == theirs + b".\r\n"


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=60))
def test_only_crlf_line_ends_count_as_crlf_only(data):
    assert transport_module._has_crlf_only(data) == (data.replace(b"\r\n", b"").count(b"\r") == 0
                                                      and data.replace(b"\r\n", b"").count(b"\n") == 0)


def _refused_then_sent(smtp_server, first: tuple[str, str, bytes], second: tuple[str, str, bytes]):
    """Over one transport: `first` (sender, recipient, body), which must fail, then `second`, which
    must arrive alone, with its own envelope (the refusal reset the first's), over the same
    connection. The failure and the message that arrived."""

    async def go() -> tuple[Exception, int]:
        transport = SMTPTransport(smtp_server.url, timeout=10)
        try:
            with pytest.raises((PermanentFailure, TemporaryFailure)) as refused:
                await transport.send_raw(first[0], first[1], b"Subject: 1\r\n\r\n" + first[2] + b"\r\n")
            await transport.send_raw(second[0], second[1], b"Subject: 2\r\n\r\n" + second[2] + b"\r\n")
            return refused.value, transport.connections
        finally:
            await transport.close()

    refused, connections = asyncio.run(go())
    [arrived] = smtp_server.received
    assert (arrived.mail_from, arrived.rcpt_tos) == (second[0], [second[1]]), "only the second, with its own envelope"
    assert connections == 1, "a refused message does not cost the connection"
    return refused, arrived


@pytest.mark.parametrize(("reply", "permanent"), [
    ("552 5.3.4 Message too big for system", True),
    ("451 4.3.0 Queue full, try again later", False),
])
def test_a_message_refused_after_data_fails_as_it_should_and_the_connection_goes_on(smtp_server, reply, permanent):
    smtp_server.reply_after_data_to("big@example.org", reply)
    refused, second = _refused_then_sent(smtp_server, ("bounce-1@example.org", "big@example.org", b".one"),
                                         ("bounce-2@example.org", "here@example.org", b".two"))
    assert isinstance(refused, PermanentFailure if permanent else TemporaryFailure)
    assert ("message refused" if permanent else "message deferred") in str(refused)
    assert reply.split()[0] in str(refused) and not getattr(refused, "recipient", False)
    assert second.raw.endswith(b"\r\n\r\n.two\r\n"), "the server takes the stuffed period away again"


@settings(max_examples=500, deadline=None)
@given(address=st.text(max_size=40))
def test_an_envelope_address_is_safe_or_refused(address):
    try:
        wire = transport_module._envelope_address(address)
    except ValueError:
        return
    inside = wire[1:-1].decode("ascii")
    assert wire == b"<" + inside.encode("ascii") + b">" and inside == address
    assert not any(c in "<> \t\r\n\x00\x7f" or ord(c) < 32 for c in inside)


@pytest.mark.parametrize("address", [
    "two words@example.org",
    "x@example.org>\r\nRCPT TO:<someone.else@example.org",
    "josé@example.org",
    "<angle@example.org>",
])
def test_an_address_no_envelope_can_carry_fails_for_good_and_the_connection_goes_on(smtp_server, address):
    refused, _ = _refused_then_sent(smtp_server, ("bounces@example.org", address, b"body"),
                                    ("bounces@example.org", "fine@example.org", b"body"))
    assert isinstance(refused, PermanentFailure) and "cannot send to this address" in str(refused) and not refused.recipient


@pytest.mark.parametrize(("reply", "permanent"), [
    ("550 5.1.1 No such user here", True),
    ("452 4.2.2 Mailbox full", False),
])
def test_a_refused_recipient_resets_the_envelope_for_the_next_message(smtp_server, reply, permanent):
    smtp_server.reply_to("gone@example.org", reply)
    refused, _ = _refused_then_sent(smtp_server, ("bounce-1@example.org", "gone@example.org", b"one"),
                                    ("bounce-2@example.org", "here@example.org", b"two"))
    assert isinstance(refused, PermanentFailure if permanent else TemporaryFailure)
    assert reply.split()[0] in str(refused) and "gone@example.org" in str(refused)
    if permanent:
        assert refused.recipient, "a refused address is suppressed for bulk mail"
    else:
        assert not refused.connection, "one full mailbox does not stop the lane"


@pytest.fixture
async def one_lane_worker(smtp_settings):
    """A worker with one SMTP connection, so that every row goes through the same lane."""
    import dataclasses

    worker = Worker(dataclasses.replace(smtp_settings, smtp_connections=1))
    yield worker
    await worker.transport.close()


async def _released_to(tmp_path, count: int) -> dict:
    await subscribers(tmp_path, count)
    issue = await new_issue()
    await issues.release(issue["id"])
    await mailings.tick()
    return issue


async def test_the_next_message_is_built_while_this_one_is_on_the_wire(tmp_path, one_lane_worker, monkeypatch):
    issue = await _released_to(tmp_path, 4)
    steps: list[str] = []
    real_build, real_send = delivery_module.Delivery.build, SMTPTransport.send_raw

    async def build(self, row):
        steps.append(f"build {row['recipient']}")
        return await real_build(self, row)

    async def send_raw(self, sender, recipient, data, *, outbox_id=None):
        steps.append(f"send {recipient}")
        await real_send(self, sender, recipient, data, outbox_id=outbox_id)
        steps.append(f"sent {recipient}")

    monkeypatch.setattr(delivery_module.Delivery, "build", build)
    monkeypatch.setattr(SMTPTransport, "send_raw", send_raw)
    assert await one_lane_worker.run_once(50) == 4
    order = [s.split()[1] for s in steps if s.startswith("send ")]
    assert len(order) == 4 and (await issues.delivery(issue["id"]))["sent"] == 4
    for first, second in zip(order, order[1:], strict=False):
        # The second message's build started before the first one's answer came back.
        assert steps.index(f"build {second}") < steps.index(f"sent {first}"), steps


async def test_a_message_built_ahead_for_a_row_that_goes_back_untried_leaves_no_trace(
        tmp_path, one_lane_worker, smtp_server, monkeypatch, caplog):
    import gc

    issue = await _released_to(tmp_path, 3)
    stop = asyncio.Event()
    real_build, real_send = delivery_module.Delivery.build, SMTPTransport.send_raw
    first: list[str] = []

    async def build_fails_after_the_first(self, row):
        if first:  # built ahead while the first is on the wire, for a row that then goes back
            raise ValueError("a header no encoder takes")
        first.append(row["recipient"])
        return await real_build(self, row)

    async def send_then_stop(self, sender, recipient, data, *, outbox_id=None):
        await real_send(self, sender, recipient, data, outbox_id=outbox_id)
        stop.set()  # SIGTERM while the first message is in hand; the second was built meanwhile

    monkeypatch.setattr(delivery_module.Delivery, "build", build_fails_after_the_first)
    monkeypatch.setattr(SMTPTransport, "send_raw", send_then_stop)
    one_lane_worker.stop = stop
    assert await one_lane_worker.run_once(50) == 3
    await asyncio.sleep(0)
    gc.collect()  # a task whose error nobody took says so when it is collected
    # The failed build was never tried as a send: the row is queued again, not failed.
    delivery = await issues.delivery(issue["id"])
    assert (delivery["sent"], delivery["queued"], delivery["failed"], delivery["skipped"]) == (1, 2, 0, 0)
    assert [r.rcpt_tos for r in smtp_server.received] == [first]
    # (aiosmtplib 3.0 leaves a Future of its own unretrieved when a connection closes; ours are Tasks.)
    assert "Task exception was never retrieved" not in caplog.text
