"""The mail worker beside the web server (mail/worker.py `run_beside`) and how a worker stops.

`events-app serve` runs its worker as a child `events-app worker` process with its own event loop
and database connection, so that confirmations go out while the server is busy answering
requests; stopping the server stops the worker too, and a worker whose server vanished stops by
itself. A stopping worker finishes the message in hand and hands the rest of its batch back
untried. Rows sent within a batch are recorded sent in one statement per batch.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from server import running_server

from events_app import db
from events_app.domain import outbox
from events_app.mail.transport import MemoryTransport
from events_app.mail.worker import Worker

from .helpers import outbox_rows, published_webinar, register


def _children_of(pid: int) -> list[int]:
    """Processes whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its closing bracket.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _server_pid(port: str) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and port in _cmdline(int(entry.name)) and "serve" in _cmdline(int(entry.name)):
            return int(entry.name)
    raise AssertionError("the server process was not found")


def _within(seconds: float, predicate) -> bool:
    """Whether `predicate()` holds within `seconds` (looked at every 50 ms)."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _worker_of(server_pid: int) -> list[int]:
    return [p for p in _children_of(server_pid) if "--parent-pid" in _cmdline(p)]


async def test_serve_sends_from_a_worker_process_of_its_own_while_busy_and_stops_it(smtp_server):
    env = {"EVENTS_SMTP_URL": smtp_server.url, "EVENTS_WORKER_POLL_SECONDS": "0.05"}
    event = await published_webinar(capacity=5)
    with running_server(worker=True, env=env) as base:
        server_pid = _server_pid(base.rsplit(":", 1)[1])
        assert await asyncio.to_thread(_within, 10, lambda: _worker_of(server_pid))
        workers = _worker_of(server_pid)
        assert len(workers) == 1, "serve started one worker process"
        assert _cmdline(workers[0])[-4:-1] == ["worker", "--parent-pid", str(server_pid)]

        # Keep the server busy with requests while the registration's confirmation is due.
        busy = True

        async def hammer() -> int:
            answered = 0
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                while busy:
                    answered += (await http.get("/events")).status_code == 200
            return answered

        hammering = [asyncio.create_task(hammer()) for _ in range(8)]
        await asyncio.sleep(0.2)
        await register(event, "Ada Lovelace", "ada@example.org")
        arrived = await asyncio.to_thread(_within, 30, lambda: smtp_server.to("ada@example.org"))
        busy = False
        answered = sum(await asyncio.gather(*hammering))
        assert arrived, "the confirmation reached the SMTP server while the server was answering requests"
        assert answered > 0
        assert [r["status"] for r in await outbox_rows()] == ["sent"]
    # Stopping the server (SIGTERM) stopped its worker: no process left behind.
    assert await asyncio.to_thread(_within, 10, lambda: not _alive(workers[0]))
    assert len(smtp_server.to("ada@example.org")) == 1


def test_a_worker_whose_server_is_gone_stops_by_itself():
    # The worker is told its server is a process that is not its parent: as when the server was
    # killed (SIGKILL) and the worker was handed to init. It must not go on sending alone.
    not_my_parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "events_app.cli", "worker", "--parent-pid", str(not_my_parent.pid)],
            env={**os.environ, "EVENTS_LOG_LEVEL": "warning"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            status = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        assert status == 0, output
        assert "is gone; stopping" in output
        # EVENTS_LOG_LEVEL=warning holds for the worker too: no info lines (one per message).
        assert "mail worker started" not in output
    finally:
        not_my_parent.kill()
        not_my_parent.wait()


class StopAfterFirst(MemoryTransport):
    """Sets `stop` while handing over the first message, as SIGTERM arriving mid-batch would."""

    def __init__(self, stop: asyncio.Event) -> None:
        super().__init__()
        self.stop = stop

    async def send(self, message, *, outbox_id=None):
        await super().send(message, outbox_id=outbox_id)
        self.stop.set()


async def test_a_stopping_worker_finishes_the_message_in_hand_and_hands_the_rest_back(config):
    event = await published_webinar()
    for i in range(5):
        await register(event, f"Person {i}", f"p{i}@example.org")
    stop = asyncio.Event()
    transport = StopAfterFirst(stop)
    worker = Worker(config, transport=transport)
    worker.stop = stop
    assert await worker.run_once(50) == 5
    assert len(transport.messages) == 1, "only the message in hand went out"
    rows = await outbox_rows()
    assert sorted(r["status"] for r in rows) == ["queued"] * 4 + ["sent"]
    # Handed back untried: the attempt is not counted, and the next worker sends them at once.
    assert all(r["attempts"] == 0 for r in rows if r["status"] == "queued")
    assert [r["id"] for r in rows if r["status"] == "sent"] == transport.outbox_ids

    # Control: without a stop the same kind of batch goes out whole.
    stop.clear()
    rest = Worker(config, transport=MemoryTransport())
    assert await rest.run_once(50) == 4
    assert sorted(r["status"] for r in await outbox_rows()) == ["sent"] * 5


async def test_a_batch_of_confirmations_is_recorded_sent_in_one_statement(config, monkeypatch):
    event = await published_webinar(capacity=3)
    for i in range(6):
        await register(event, f"Person {i}", f"p{i}@example.org")
    statements: list[str] = []
    real_fetch = db.fetch

    async def counting(sql: str, *args):
        if "SET status = 'sent'" in sql:
            statements.append(sql)
        return await real_fetch(sql, *args)

    monkeypatch.setattr(db, "fetch", counting)
    transport = MemoryTransport()
    assert await Worker(config, transport=transport).run_once(50) == 6
    assert len(transport.messages) == 6
    assert len(statements) == 1, "one statement for the batch, not one commit per message"
    assert sorted(r["status"] for r in await outbox_rows()) == ["sent"] * 6
    # Outside a worker's batch, marking one row still writes it at once.
    await outbox.enqueue("registration_confirmed", "x@example.org", {"registration_id": 0})
    row = (await outbox.claim(1, 600))[0]
    await outbox.mark_sent(row["id"])
    assert [r["status"] for r in await outbox_rows()] == ["sent"] * 7


async def test_a_claimed_batch_reads_its_registrations_together_not_per_message(config, monkeypatch):
    """The worker asks delivery.py to read a claimed batch's registrations at once (Delivery.
    prepare): the statements reading registrations do not grow with the batch."""
    event = await published_webinar(capacity=2)
    real_fetch = db.fetch
    reads: list[str] = []

    async def counting(sql: str, *args):
        if "FROM registration" in sql:
            reads.append(sql)
        return await real_fetch(sql, *args)

    async def statements_for(people: int) -> int:
        start = len(await outbox_rows())
        for i in range(people):
            await register(event, f"Person {start + i}", f"p{start + i}@example.org")
        reads.clear()
        monkeypatch.setattr(db, "fetch", counting)
        try:
            transport = MemoryTransport()
            assert await Worker(config, transport=transport).run_once(50) == people
            assert len(transport.messages) == people
        finally:
            monkeypatch.setattr(db, "fetch", real_fetch)
        return len(reads)

    few, many = await statements_for(3), await statements_for(12)
    assert many == few, (few, many)
