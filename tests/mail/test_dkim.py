"""DKIM (issue 12): with EVENTS_DKIM_KEY and EVENTS_DKIM_SELECTOR set, every message the worker
hands over is signed for the From domain (rsa-sha256, relaxed/relaxed), covering the headers
receivers judge, including List-Unsubscribe and List-Unsubscribe-Post (RFC 8058 asks for that).

A fresh RSA key is made with openssl; messages go through the real worker to the loopback SMTP
server, and the bytes it received are verified by dkimpy against the public key, served by a
`dnsfunc` that answers the TXT record an operator would publish.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import subprocess

import dkim
import pytest

from events_app import settings
from events_app.domain import issues
from events_app.mail.worker import Worker
from bulletin.helpers import new_issue, run_until_settled, subscribers
from mail.helpers import published_webinar, register

SELECTOR = "ev2026"


@pytest.fixture(scope="module")
def key_pair(tmp_path_factory):
    """(private key file, the DNS TXT record of its public key)."""
    folder = tmp_path_factory.mktemp("dkim")
    private = folder / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(private), "2048"], check=True, capture_output=True)
    der = subprocess.run(
        ["openssl", "rsa", "-in", str(private), "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    return private, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


@pytest.fixture
async def signing_worker(smtp_server, key_pair):
    config = dataclasses.replace(
        settings.get(), smtp_url=smtp_server.url, mail_from="Événements Zoë <events@example.org>",
        dkim_key_path=key_pair[0], dkim_selector=SELECTOR,
    )
    w = Worker(config)
    yield w
    await w.transport.close()


def dns(record: bytes):
    def lookup(name, timeout=5):
        return record if name == f"{SELECTOR}._domainkey.example.org.".encode() else None

    return lookup


def signed_headers(raw: bytes) -> list[str]:
    unfolded = re.sub(rb"\r\n[ \t]+", b" ", raw.split(b"\r\n\r\n", 1)[0])
    line = [l for l in unfolded.split(b"\r\n") if l.lower().startswith(b"dkim-signature:")][0]
    fields = dict(f.strip().split(b"=", 1) for f in line.split(b":", 1)[1].split(b";") if b"=" in f)
    assert fields[b"a"] == b"rsa-sha256" and fields[b"c"] == b"relaxed/relaxed" and fields[b"d"] == b"example.org"
    return [h.strip().decode().lower() for h in fields[b"h"].replace(b" ", b"").split(b":")]


async def test_a_confirmation_is_signed_and_verifies(smtp_server, signing_worker, key_pair):
    event = await published_webinar()
    await register(event, "Zoë Ådahl", "ada@example.com")

    await signing_worker.run_once(50)

    [received] = smtp_server.received
    assert dkim.verify(received.raw, dnsfunc=dns(key_pair[1]))
    assert {"from", "to", "subject", "date", "message-id", "mime-version", "content-type"} <= set(signed_headers(received.raw))
    # A changed byte in the body or a signed header fails.
    assert not dkim.verify(received.raw.replace(b"You're registered", b"You are registered", 1), dnsfunc=dns(key_pair[1]))


async def test_an_issue_email_is_signed_per_recipient_with_its_list_headers(tmp_path, smtp_server, signing_worker, key_pair):
    await subscribers(tmp_path, 3)
    issue = await new_issue()
    await issues.release(issue["id"])

    await run_until_settled(signing_worker)

    assert len(smtp_server.received) == 3
    for received in smtp_server.received:
        assert dkim.verify(received.raw, dnsfunc=dns(key_pair[1])), received.rcpt_tos
        assert {"from", "to", "subject", "list-id", "list-unsubscribe", "list-unsubscribe-post"} <= set(
            signed_headers(received.raw)
        )
    # Another key's record does not verify them.
    other = subprocess.run(["openssl", "genrsa", "2048"], check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "rsa", "-pubout", "-outform", "DER"], input=other, check=True, capture_output=True).stdout
    assert not dkim.verify(smtp_server.received[0].raw, dnsfunc=dns(b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)))


async def test_without_a_key_nothing_is_signed(smtp_server, worker):
    event = await published_webinar()
    await register(event, "Ada", "ada@example.com")

    await worker.run_once(50)

    [received] = smtp_server.received
    assert b"DKIM-Signature" not in received.raw
