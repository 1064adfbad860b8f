"""Getting a built message out of the process: SMTP, .eml files, or a list in memory.

Every transport has `async send_raw(sender, recipient, data, *, outbox_id=None)` (the worker's
way: bytes with CRLF line ends, already signed, and the envelope sender that names the row),
`async send(message, *, outbox_id=None)` (an EmailMessage, written with the same folding and CRLF
as the worker's) and `async close()`. Sending raises
`TemporaryFailure` when trying again later may work (server down, time-out, 4xx) and
`PermanentFailure` when it will not (5xx for this recipient or this message); the worker turns
these into a retry with backoff or a failed row.

`SMTPTransport` keeps one connection open and reuses it for message after message (a TCP and TLS
handshake plus EHLO and AUTH per message would cost more than the message), and reconnects when
the server has dropped it in between. Every step (connect, greeting, each command, DATA) has a
bounded time-out (`smtp_timeout_seconds`, 30 s by default): a server that accepts and then never
answers is a temporary failure like one that is down.

`FileTransport` keeps its directory readable by its owner only (0700, tightened if it was
wider) and creates each file 0600; a message is written whole (temporary file, fsync, rename) or
not at all, so a full disk is a temporary failure that leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
import tempfile
from email.errors import MessageError
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
from aiosmtplib import SMTPStatus

from .. import clock
from ..settings import Settings, smtp_server
from .headers import MAIL_POLICY

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    """A message could not be handed over."""


class TemporaryFailure(DeliveryError):
    """Try again later. `connection` is True when the server could not be reached at all, so
    other messages would fail the same way right now."""

    def __init__(self, message: str, *, connection: bool = False) -> None:
        super().__init__(message)
        self.connection = connection


class PermanentFailure(DeliveryError):
    """The server refused this recipient or this message for good (5xx). `recipient` is True
    when it refused the address itself (RCPT TO): that address gets no more bulk mail."""

    def __init__(self, message: str, *, recipient: bool = False) -> None:
        super().__init__(message)
        self.recipient = recipient


class SMTPTransport:
    """SMTP over one reused connection. URL forms: smtp://host:port (plain, port 25),
    smtp+starttls://user:pass@host:587, smtps://user:pass@host:465 (TLS from the start)."""

    def __init__(self, url: str, *, timeout: float = 30.0, tls_context: ssl.SSLContext | None = None) -> None:
        parts = smtp_server(url)  # ValueError (SettingsError) for a scheme or port we cannot use
        self.use_tls = parts.scheme == "smtps"
        self.start_tls = parts.scheme == "smtp+starttls"
        self.hostname = parts.host or "localhost"
        self.port = parts.port or (465 if self.use_tls else 587 if self.start_tls else 25)
        self.username = parts.username
        self.password = parts.password
        self.timeout = timeout
        self.tls_context = tls_context
        self._client: aiosmtplib.SMTP | None = None
        # One conversation at a time on the one connection.
        self._lock = asyncio.Lock()
        self.connections = 0  # how many connections were opened (seen by tests and logs)

    def _new_client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self.hostname,
            port=self.port,
            username=self.username,
            password=self.password,
            use_tls=self.use_tls,
            # Plain smtp:// means plain: no opportunistic STARTTLS that a local relay's
            # self-signed certificate would turn into a failure.
            start_tls=self.start_tls,
            timeout=self.timeout,
            tls_context=self.tls_context,
        )

    async def _connect(self) -> aiosmtplib.SMTP:
        client = self._new_client()
        try:
            await client.connect()
        except aiosmtplib.SMTPAuthenticationError as exc:
            # Wrong credentials: our configuration, not the recipient. Retry (someone will fix it).
            raise TemporaryFailure(f"SMTP login refused: {exc.code} {exc.message}", connection=True) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise TemporaryFailure(
                f"SMTP server {self.hostname}:{self.port} answered {exc.code} {exc.message}", connection=True
            ) from exc
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            raise TemporaryFailure(
                f"cannot connect to SMTP server {self.hostname}:{self.port}: {exc}", connection=True
            ) from exc
        self.connections += 1
        log.debug("connected to SMTP server %s:%s", self.hostname, self.port)
        return client

    def clone(self) -> SMTPTransport:
        """Another transport to the same server (one more parallel connection)."""
        twin = SMTPTransport.__new__(SMTPTransport)
        twin.__dict__.update(self.__dict__)
        twin._client, twin._lock, twin.connections = None, asyncio.Lock(), 0
        return twin

    async def send(self, message: EmailMessage, *, outbox_id: int | None = None) -> None:
        try:
            data = message.as_bytes(policy=MAIL_POLICY)
        except (ValueError, MessageError) as exc:  # e.g. a header no encoder takes: no retry helps
            raise PermanentFailure(f"the message cannot be written: {exc}") from exc
        sender = message["From"].addresses[0].addr_spec
        await self.send_raw(sender, message["To"].addresses[0].addr_spec, data, outbox_id=outbox_id)

    async def send_raw(self, sender: str, recipient: str, data: bytes, *, outbox_id: int | None = None) -> None:
        """Send bytes already formatted as a message (bulk mail, mail/bulk.py)."""
        await self._deliver(lambda client: _transaction(client, sender, recipient, data))

    async def _deliver(self, action) -> None:
        async with self._lock:
            reused = self._client is not None and self._client.is_connected
            if not reused:
                await self._drop()
                self._client = await self._connect()
            try:
                await action(self._client)
            except aiosmtplib.SMTPServerDisconnected as exc:
                await self._drop()
                if not reused:
                    raise TemporaryFailure(f"SMTP server disconnected: {exc}", connection=True) from exc
                # The server closed an idle connection since our last message: one fresh try.
                self._client = await self._connect()
                try:
                    await action(self._client)
                except Exception as exc2:
                    await self._classify(exc2)
            except Exception as exc:
                await self._classify(exc)

    async def _classify(self, exc: Exception) -> None:
        """Raise the TemporaryFailure or PermanentFailure that `exc` means."""
        if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
            detail = f"{exc.recipient}: {exc.code} {exc.message}"
            if 500 <= exc.code < 600:
                raise PermanentFailure(f"recipient refused: {detail}", recipient=True) from exc
            raise TemporaryFailure(f"recipient deferred: {detail}") from exc
        if isinstance(exc, aiosmtplib.SMTPSenderRefused):
            # Our From address was refused: a configuration matter for every message alike.
            raise TemporaryFailure(f"sender refused: {exc.code} {exc.message}", connection=True) from exc
        if isinstance(exc, aiosmtplib.SMTPResponseException) and not isinstance(exc, aiosmtplib.SMTPServerDisconnected):
            text = f"{exc.code} {exc.message}"
            if 500 <= exc.code < 600:
                raise PermanentFailure(f"message refused: {text}") from exc
            raise TemporaryFailure(f"message deferred: {text}") from exc
        if isinstance(exc, (ValueError, aiosmtplib.SMTPNotSupported)):
            # An address this server cannot take (e.g. non-ASCII without SMTPUTF8): no retry helps.
            raise PermanentFailure(f"cannot send to this address: {exc}") from exc
        # Connection lost or timed out mid-conversation: its state is unknown, start afresh.
        await self._drop()
        if isinstance(exc, (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError)):
            raise TemporaryFailure(f"SMTP connection failed: {exc}", connection=True) from exc
        raise exc

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            try:
                await client.quit()
            except Exception:  # already broken; closing is all that is left
                client.close()

    async def close(self) -> None:
        async with self._lock:
            await self._drop()


# What may not appear in an envelope address: it would end the address or the command line.
_NOT_IN_ENVELOPE = re.compile(r"[\x00-\x20<>\x7f]")


def _envelope_address(address: str) -> bytes:
    """`<address>` for MAIL FROM / RCPT TO. ValueError (a permanent failure) for an address that
    is not ASCII (we do not ask for SMTPUTF8) or that holds a space, a control character or an
    angle bracket."""
    if _NOT_IN_ENVELOPE.search(address):
        raise ValueError(f"the address {address!r} cannot be written in an SMTP envelope")
    return b"<" + address.encode("ascii") + b">"


_LINE_END = re.compile(rb"\r\n|\n|\r")


def _has_crlf_only(data: bytes) -> bool:
    """True when every line of `data` ends in CRLF: no lone CR or LF (three counts tell)."""
    crlf = data.count(b"\r\n")
    return data.count(b"\n") == crlf == data.count(b"\r")


def _data_body(data: bytes) -> bytes:
    """What follows DATA for a message with CRLF line ends only: a line that starts with a
    period gets another (RFC 5321 4.5.2), a CRLF ends the last line, and a line holding only a
    period ends the message. The same bytes as aiosmtplib's `data()` sends, which finds line
    ends with one regex and line starts with another over the whole message (about a quarter of
    the worker's busy time in a release); one `bytes.replace` does it here."""
    body = data.replace(b"\n.", b"\n..")
    if body.startswith(b"."):
        body = b"." + body
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


async def _data(client: aiosmtplib.SMTP, data: bytes, crlf_only: bool) -> None:
    """DATA and the message. A message with other line ends than CRLF goes through aiosmtplib's
    `data()`, which mends them; the worker's never have any. Otherwise the same conversation
    through aiosmtplib's public parts (the command, then the protocol's `write` and
    `read_response`), with the body made by `_data_body`. As `data()` does, a lost connection
    or a time-out closes the client, and an answer other than 354, then 250, raises
    SMTPDataError."""
    if not crlf_only:
        await client.data(data)
        return
    answer = await client.execute_command(b"DATA")  # not connected: SMTPServerDisconnected
    if answer.code != SMTPStatus.start_input:
        raise aiosmtplib.SMTPDataError(answer.code, answer.message)
    protocol = client.protocol
    if protocol is None:  # only a 421 or a lost connection closes the client, never a 354
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    try:
        protocol.write(_data_body(data))
        answer = await protocol.read_response(timeout=client.timeout)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        client.close()
        raise
    if answer.code != SMTPStatus.completed:
        raise aiosmtplib.SMTPDataError(answer.code, answer.message)


async def _transaction(client: aiosmtplib.SMTP, sender: str, recipient: str, data: bytes) -> None:
    """One message to one recipient: MAIL, RCPT, DATA, with the SIZE the server asked for.

    What aiosmtplib's `sendmail` does for this case, without its general parts: it parses each
    address twice (email.utils) and turns the message's line ends into CRLF twice (once to count
    its size), together about a sixth of the worker's CPU per message. Our addresses are checked by
    `_envelope_address`, SIZE is the length of a message with CRLF line ends only, and `_data`
    sends it without mending line ends it does not have.
    As in `sendmail`, a refusal resets the envelope (RSET) before it is raised."""
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            await client.helo()
    mail_from, rcpt_to = b"FROM:" + _envelope_address(sender), b"TO:" + _envelope_address(recipient)
    crlf_only = _has_crlf_only(data)
    wire_size = len(data) if crlf_only else len(_LINE_END.sub(b"\r\n", data))
    size = (b"SIZE=%d" % wire_size,) if client.supports_extension("size") else ()
    try:
        answer = await client.execute_command(b"MAIL", mail_from, *size)
        if answer.code != SMTPStatus.completed:
            raise aiosmtplib.SMTPSenderRefused(answer.code, answer.message, sender)
        answer = await client.execute_command(b"RCPT", rcpt_to)
        if answer.code not in (SMTPStatus.completed, SMTPStatus.will_forward):
            raise aiosmtplib.SMTPRecipientRefused(answer.code, answer.message, recipient)
        await _data(client, data, crlf_only)
    except aiosmtplib.SMTPResponseException:
        try:
            await client.rset()
        except (ConnectionError, aiosmtplib.SMTPResponseException):
            pass  # disconnected or refused: the error that matters is the one raised
        raise


class FileTransport:
    """Writes each message to `<directory>/<UTC timestamp>-<outbox id>.eml` (development, and
    installations without SMTP), CRLF line ends as on the wire. The file appears whole or not at all: written to a temporary
    name in the same directory (mode 0600), flushed to disk, then renamed. The directory is kept
    0700: messages hold personal links."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self._checked = False

    async def send(self, message: EmailMessage, *, outbox_id: int | None = None) -> None:
        try:
            data = message.as_bytes(policy=MAIL_POLICY)
        except (ValueError, MessageError) as exc:  # e.g. a header no encoder takes: no retry helps
            raise PermanentFailure(f"the message cannot be written: {exc}") from exc
        await self.send_raw("", "", data, outbox_id=outbox_id)

    async def send_raw(self, sender: str, recipient: str, data: bytes, *, outbox_id: int | None = None) -> None:
        try:
            self._write(data, outbox_id)
        except OSError as exc:  # a full or read-only disk may be fixed; keep the row
            raise TemporaryFailure(f"cannot write to {self.directory}: {exc}", connection=True) from exc

    def _prepare_directory(self) -> None:
        if self._checked and self.directory.is_dir():
            return
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.directory.stat().st_mode & 0o077:  # made wider by hand or by an older version
            os.chmod(self.directory, 0o700)
        self._checked = True

    def _write(self, data: bytes, outbox_id: int | None) -> Path:
        self._prepare_directory()
        stamp = clock.now().strftime("%Y%m%dT%H%M%S%fZ")
        target = self.directory / f"{stamp}-{outbox_id if outbox_id is not None else 'message'}.eml"
        fd, temp = tempfile.mkstemp(prefix=".tmp-", suffix=".eml", dir=self.directory)  # mode 0600
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                # On disk before the rename: the row is marked sent right after, so a crash must
                # not leave an empty file under the final name.
                os.fsync(handle.fileno())
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return target

    async def close(self) -> None:
        return None


class MemoryTransport:
    """Keeps messages in `self.messages` (unit tests). Exceptions put in `self.fail_next` are
    raised by the next sends, one each, to rehearse failures."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.outbox_ids: list[int | None] = []
        self.fail_next: list[Exception] = []

    async def send(self, message: EmailMessage, *, outbox_id: int | None = None) -> None:
        if self.fail_next:
            raise self.fail_next.pop(0)
        self.messages.append(message)
        self.outbox_ids.append(outbox_id)

    async def send_raw(self, sender: str, recipient: str, data: bytes, *, outbox_id: int | None = None) -> None:
        import email
        from email.policy import default

        await self.send(email.message_from_bytes(data, policy=default), outbox_id=outbox_id)

    async def close(self) -> None:
        return None


Transport = SMTPTransport | FileTransport | MemoryTransport


def make_transport(settings: Settings) -> Transport:
    """SMTP when `EVENTS_SMTP_URL` is set, else .eml files in the mail directory."""
    if settings.smtp_url:
        return SMTPTransport(settings.smtp_url, timeout=settings.smtp_timeout_seconds)
    return FileTransport(settings.mail_dir)
