"""transport.sendmail is aiosmtplib's sendmail for one recipient without its repeated work: the
same commands and bytes reach the server, and the same exception (type, code, recipients) comes
back, for any message (CRLF or not, dots at line starts), addresses (including ones aiosmtplib
refuses to write) and answers of the server to MAIL, RCPT and DATA."""

from __future__ import annotations

import asyncio

import aiosmtplib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events_app.mail import transport


class Recorder:
    """A minimal SMTP server on loopback that records every byte it reads, answering MAIL, RCPT
    and the end of DATA with the codes it is given."""

    def __init__(self) -> None:
        self.log: list[bytes] = []
        self.answers = {"MAIL": 250, "RCPT": 250, "DATA": 250}
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 recorder ESMTP\r\n")
        try:
            while line := await reader.readline():
                self.log.append(line)
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-recorder\r\n250-SIZE 10000000\r\n250-8BITMIME\r\n250 PIPELINING\r\n")
                elif verb == b"MAIL":
                    writer.write(f"{self.answers['MAIL']} mail\r\n".encode())
                elif verb == b"RCPT":
                    writer.write(f"{self.answers['RCPT']} rcpt\r\n".encode())
                elif verb == b"DATA":
                    writer.write(b"354 go on\r\n")
                    while (body := await reader.readline()) != b".\r\n":
                        if not body:
                            return
                        self.log.append(body)
                    self.log.append(body)
                    writer.write(f"{self.answers['DATA']} data\r\n".encode())
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    return
                else:  # RSET, NOOP
                    writer.write(b"250 ok\r\n")
                await writer.drain()
        finally:
            writer.close()


def _outcome(exc: BaseException | None) -> tuple:
    if exc is None:
        return ("sent",)
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return (type(exc).__name__, [(r.code, r.recipient) for r in exc.recipients])
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return (type(exc).__name__, exc.code)
    return (type(exc).__name__,)


async def _run(recorder: Recorder, send, sender: str, recipient: str, data: bytes) -> tuple[tuple, list[bytes]]:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=recorder.port, start_tls=False, timeout=5)
    await client.connect()
    await client.ehlo()
    recorder.log.clear()
    error: BaseException | None = None
    try:
        await send(client, sender, recipient, data)
    except Exception as exc:
        error = exc
    # The connection is still usable for the next message (no envelope left open).
    await client.noop()
    log = list(recorder.log)
    await client.quit()
    return _outcome(error), log


async def _reference(client: aiosmtplib.SMTP, sender: str, recipient: str, data: bytes) -> None:
    await client.sendmail(sender, [recipient], data)


lines = st.lists(
    st.sampled_from([b"", b".", b"..", b".dot first", b"Subject: x", b"=3D qp=", b"plain text", b"a\rb", b"end."]),
    max_size=8,
)
endings = st.sampled_from([b"\r\n", b"\n", b"\r"])
addresses = st.sampled_from(
    ["a@example.org", "bounce+12-abc@example.org", "Name <n@example.org>", "bad <x>@example.org", "sp ace@example.org"]
)


@st.composite
def messages(draw) -> bytes:
    parts = draw(lines)
    if draw(st.booleans()):  # on the wire already, as every message the worker sends
        return b"".join(part.replace(b"\r", b"") + b"\r\n" for part in parts)
    out = b""
    for part in parts:
        out += part + draw(endings)
    if draw(st.booleans()):
        out += b"no final line end"
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sender=addresses,
    recipient=addresses,
    data=messages(),
    mail=st.sampled_from([250, 451, 550]),
    rcpt=st.sampled_from([250, 251, 450, 550]),
    done=st.sampled_from([250, 452, 554]),
)
def test_same_wire_and_outcome_as_sendmail(sender, recipient, data, mail, rcpt, done) -> None:
    async def check() -> None:
        recorder = Recorder()
        await recorder.start()
        try:
            recorder.answers = {"MAIL": mail, "RCPT": rcpt, "DATA": done}
            ours = await _run(recorder, transport.sendmail, sender, recipient, data)
            theirs = await _run(recorder, _reference, sender, recipient, data)
        finally:
            await recorder.stop()
        assert ours == theirs

    asyncio.run(check())


def test_on_the_wire() -> None:
    assert transport.on_the_wire(b"a\r\nb\r\n")
    assert not transport.on_the_wire(b"a\r\nb")
    assert not transport.on_the_wire(b"a\nb\r\n")
    assert not transport.on_the_wire(b"a\rb\r\n")
    assert not transport.on_the_wire(b"")
