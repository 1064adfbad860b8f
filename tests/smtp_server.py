"""A real SMTP server on loopback for mail tests: aiosmtpd in its own thread.

`SMTPSink` records every accepted message (envelope and parsed email) and the client connection
it came over, can be stopped and started again on the same port (an outage), and can answer a
chosen reply to chosen recipients (e.g. "550 5.1.1 No such user"), at RCPT or after the message. The `smtp_server` fixture
(tests/conftest.py) gives a started sink per test and stops it afterwards.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from aiosmtpd.controller import Controller


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage
    peer: tuple  # the client's (host, port): one per SMTP connection
    mail_options: tuple = ()  # the MAIL FROM parameters, e.g. ("SIZE=1234",)


class _Handler:
    def __init__(self, sink: "SMTPSink") -> None:
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.sink.lock:
            if self.sink.trouble_left > 0:
                self.sink.trouble_left -= 1
                self.sink.troubled += 1
                return self.sink.trouble
        reply = self.sink.replies.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        refusal = next((self.sink.data_replies[a.lower()] for a in envelope.rcpt_tos
                        if a.lower() in self.sink.data_replies), None)
        if refusal:
            return refusal
        raw = envelope.original_content or envelope.content
        parsed = BytesParser(policy=policy.default).parsebytes(raw)
        with self.sink.lock:
            self.sink.received.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    raw,
                    parsed,
                    tuple(session.peer),
                    tuple(envelope.mail_options),
                )
            )
        return "250 2.0.0 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SMTPSink:
    """aiosmtpd on 127.0.0.1:`port`, recording what it accepts."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: list[Received] = []
        self.replies: dict[str, str] = {}
        self.data_replies: dict[str, str] = {}
        # A bad hour: the next `trouble_left` recipients, whoever they are, get `trouble`.
        self.trouble = "451 4.3.0 Temporary local problem, try again later"
        self.trouble_left = 0
        self.troubled = 0
        self.lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> "SMTPSink":
        if self._controller is None:
            controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
            controller.start()
            self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def reply_to(self, address: str, reply: str) -> None:
        """Answer RCPT TO:<address> with `reply` (e.g. '550 5.1.1 No such user here')."""
        self.replies[address.lower()] = reply

    def reply_after_data_to(self, address: str, reply: str) -> None:
        """Take RCPT TO:<address>, then answer the message itself (after DATA) with `reply`
        (e.g. '552 5.3.4 Message too big for system')."""
        self.data_replies[address.lower()] = reply

    def answer_everyone(self, reply: str, times: int) -> None:
        """Answer the next `times` RCPT TO commands with `reply` (e.g. '421 4.7.0 Try later')."""
        with self.lock:
            self.trouble, self.trouble_left = reply, times

    def messages(self) -> list[EmailMessage]:
        with self.lock:
            return [r.message for r in self.received]

    def to(self, address: str) -> list[EmailMessage]:
        """Messages whose envelope recipient is `address`."""
        with self.lock:
            return [r.message for r in self.received if address.lower() in (a.lower() for a in r.rcpt_tos)]

    def connections(self) -> int:
        """How many distinct client connections delivered messages."""
        with self.lock:
            return len({r.peer for r in self.received})
