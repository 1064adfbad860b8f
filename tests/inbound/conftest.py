"""Inbound mail as an MTA hands it over: the real `events-app inbound` reading standard input, and
the real `events-app inbound --listen` LMTP server receiving from smtplib.LMTP, both subprocesses
on the test database. Samples are templates in samples/ with {{PLACEHOLDERS}} filled at test time.
"""

from __future__ import annotations

import asyncio
import base64
import os
import smtplib
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

SAMPLES = Path(__file__).parent / "samples"


def fill(name: str, **values: str) -> bytes:
    """A sample with its placeholders filled; {{CAL}} and {{CAL_B64}} take the filled calendar
    named by `calendar` (base64 in 76-character lines, as Outlook and Gmail write it). CRLF lines."""
    text = (SAMPLES / name).read_text()
    values.setdefault("MSGID", uuid.uuid4().hex)
    calendar = values.pop("calendar", None)
    if calendar:
        cal = (SAMPLES / calendar).read_text()
        for key, value in values.items():
            cal = cal.replace("{{" + key + "}}", value)
        cal = cal.replace("\r\n", "\n").replace("\n", "\r\n")
        encoded = base64.b64encode(cal.encode()).decode()
        values["CAL"] = cal.rstrip("\r\n")
        values["CAL_B64"] = "\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76))
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    assert "{{" not in text, f"unfilled placeholder in {name}: {text[text.index('{{'):][:40]}"
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def dtstamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def run_cli(*args: str, stdin: bytes = b"", env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "events_app.cli", *args], input=stdin, capture_output=True, timeout=120,
        env={**os.environ, "EVENTS_LOG_LEVEL": "warning", **(env or {})},
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_listener(env: dict | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "events_app.cli", "inbound", "--listen", f"127.0.0.1:{port}"],
        env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"listener exited: {proc.stdout.read().decode()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the LMTP listener did not start")


def stop_listener(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out.decode(errors="replace")


def lmtp_deliver(port: int, raw: bytes, recipients: list[str], sender: str = "") -> list[tuple[int, str]]:
    """Deliver over LMTP; the replies after DATA, one per recipient (RFC 2033)."""
    client = smtplib.LMTP("127.0.0.1", port, timeout=60)
    try:
        client.ehlo_or_helo_if_needed()
        client.mail(sender)
        for rcpt in recipients:
            code, _ = client.rcpt(rcpt)
            assert code == 250
        code, msg = client.data(raw)
        replies = [(code, msg.decode())]
        for _ in recipients[1:]:
            replies.append(client.getreply())
            replies[-1] = (replies[-1][0], replies[-1][1].decode())
        client.quit()
        return replies
    finally:
        client.close()


@pytest.fixture(scope="module")
def listener(database):
    proc, port = start_listener()
    yield port
    stop_listener(proc)


@pytest.fixture(params=["stdin", "lmtp"])
def deliver(request):
    """deliver(raw, rcpt=None) -> outcome text: through the CLI's standard input (rcpt given as
    --recipient), or through the LMTP listener (rcpt the RCPT TO, default events@example.org)."""
    if request.param == "stdin":
        async def by_stdin(raw: bytes, rcpt: str | None = None) -> str:
            args = ["inbound"] + (["--recipient", rcpt] if rcpt else [])
            done = await asyncio.to_thread(run_cli, *args, stdin=raw)
            assert done.returncode == 0, done.stderr.decode()
            return done.stdout.decode().strip()
        return by_stdin
    port = request.getfixturevalue("listener")

    async def by_lmtp(raw: bytes, rcpt: str | None = None) -> str:
        replies = await asyncio.to_thread(lmtp_deliver, port, raw, [rcpt or "events@example.org"])
        assert replies == [(250, "2.0.0 OK")], replies
        return "delivered"
    return by_lmtp
