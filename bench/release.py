"""Bulk-mail release, side by side with its baselines in one run.

1. Build cost per message: mail/bulk.py (the issue rendered and CSS-inlined once per mailing,
   then per recipient: token, substitution, quoted-printable, headers) against a bare Jinja render
   of the same templates (subject, text and HTML) per recipient with no inlining and no MIME.
   Target: at most 1.3x.
2. Hand-off rate: the real worker draining a released issue from a fresh SQLite database
   (claims, ledger marks, builds, two SMTP connections) against raw aiosmtplib sending the same
   number of pre-built messages over the same number of connections, both to one aiosmtpd sink
   in its own process. Target: at least 0.9x.
3. Peak memory: an `events-app worker` process releasing an issue to 100,000 subscribers, its
   peak RSS (VmHWM) read from /proc. Target: under 150 MB.
4. PostgreSQL, 1,000,000 subscribers (a throwaway database from --admin-url / PG_ADMIN_URL,
   migrated; the subscribers and their subscriptions inserted with generate_series, not timed):
   an issue released while `--pg-workers` `events-app worker` processes run against the same
   sink, and a staff member's client polls the delivery page.
   - ledger: release time to the mailing's `expanded_at`, with the row count checked (exactly
     one row per recipient). Target <= 60 s. For scale, the same rows written by one bare
     INSERT ... SELECT into an empty copy of the outbox (same indexes), timed after the run.
   - hand-off: rows recorded sent per second once the ledger is complete (sending all 1,000,000
     would take longer than the run may), against raw aiosmtplib sending pre-built messages of
     this issue over the same number of connections in as many processes. Target >= 0.9x. The
     window (--pg-window s) is cut into --pg-pairs slices; after each, the workers are stopped
     (SIGSTOP, their claims stay theirs) while raw aiosmtplib sends about as long, then they go
     on (SIGCONT). The figure is the workers' rows over their slices against the mean of the raw
     runs between them, with the staff client polling the delivery page through both. Why: on
     2 cores the sink is busy about 90% of the time and any other process slows the loop, about
     0.8% of the rate per 1% of a core (a process burning 3% of a core cost raw aiosmtplib 3%, one
     burning 30% cost it 25%), and this machine's speed drifts from minute to minute: single runs
     of the old layout (raw before and after the release, minutes from the window, with nothing
     polling the page) gave 0.72x to 1.03x for the same code. The raw run before the release,
     nothing else running, is kept in the note for the record.
   - memory: each worker's VmHWM at the end of the run. Target < 150 MB.
   - delivery page: GET /staff/issues/ID/progress/live (every fifth the whole progress page)
     about 4 times a second from a signed-in client during the release, p99, against the same
     client polling the same pages before the release. Target p99 < 200 ms.

    .venv/bin/python bench/release.py                   # ~10 min
    .venv/bin/python bench/release.py --handoff 3000 --memory 20000 --pg-subscribers 100000 --json
    .venv/bin/python bench/release.py --only-pg --pg-subscribers 200000 --pg-window 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from rows import emit, row  # noqa: E402

PY = sys.executable


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sink() -> tuple[subprocess.Popen, int]:
    """aiosmtpd with its Sink handler (accepts and discards) in its own process."""
    port = free_port()
    proc = subprocess.Popen(
        [PY, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink", "-l", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    import socket

    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the SMTP sink did not start")


def setup_env(folder: str, smtp_port: int | None = None) -> dict:
    env = {
        "EVENTS_VAR_DIR": folder,
        "EVENTS_DATABASE_URL": f"sqlite:///{folder}/bench.sqlite3",
        "EVENTS_SECRET_KEY": "bench-secret-key-0123456789",
        "EVENTS_LOG_LEVEL": "warning",
        "EVENTS_WORKER_POLL_SECONDS": "0.05",
    }
    if smtp_port:
        env["EVENTS_SMTP_URL"] = f"smtp://127.0.0.1:{smtp_port}"
    os.environ.update(env)
    from events_app import db, settings

    settings.reset()
    db.reset()
    return env


async def prepare(count: int, folder: str) -> int:
    """Migrate a fresh database, import `count` subscribers, write an issue; return its id."""
    from events_app import db
    from events_app.domain import importer, issues, seed

    subprocess.run([PY, "-m", "events_app.cli", "migrate"], check=True, env=os.environ, capture_output=True)
    await db.start()
    await seed.topics()
    path = Path(folder) / "subscribers.csv"
    path.write_text("email,name\n" + "".join(f"reader{n}@example.org,Reader {n}\n" for n in range(count)))
    await importer.import_csv(path, ["bulletin"])
    issue = await issues.create({
        "title": "October 2019", "issue_date": "2019-10-15", "summary": "Non-academic careers with impact",
        "body": (ROOT / "events_app" / "demo.py").read_text().split('ISSUE_BODY = """\\\n', 1)[1].split('"""', 1)[0],
    })
    return issue["id"]


# -- 1. build cost ------------------------------------------------------------------------------

async def build_cost(n: int, rounds: int) -> list[dict]:
    from events_app import settings
    from events_app.domain import issues, mailings, subscriptions
    from events_app.mail import bulk, render

    cfg = settings.get()
    issue_id = (await issues.listing())[0]["id"]
    await issues.release(issue_id)
    await mailings.tick(batch=n)
    from events_app import db

    rows = await db.fetch("SELECT * FROM outbox WHERE mailing IS NOT NULL ORDER BY id LIMIT {}", n)
    issue = await issues.get(issue_id)
    env = render.environment()
    base = cfg.base_url
    templates = [env.get_template(f"issue/{p}") for p in ("subject.txt", "body.txt", "body.html")]
    from events_app import markdown

    body_html = markdown.to_html(issue["body"])
    brand = render.brand()  # the identity's parts every email template reads (once, as ours does)
    subs = {s["id"]: s for s in await db.fetch("SELECT id, email, name, status, token_salt, paused_until, bounced_at FROM subscriber")}

    def bare() -> float:
        start = time.perf_counter()
        for r in rows:
            s = subs[r["subscriber"]]
            token = subscriptions.manage_token(s)
            context = {
                "greeting": f"Hello {s['name']},", "topic_name": issue["topic_name"], "organizer_name": "Events",
                "site_host": cfg.host, "issue": {**issue, "date": issue["issue_date"]}, "body_html": body_html,
                "body_text": issue["body"], "subject": "x", "brand": brand,
                "links": {"site": base + "/", "manage": f"{base}/s/{token}", "unsubscribe": f"{base}/s/{token}/unsubscribe",
                          "archive": base + "/bulletin", "issue": base + "/bulletin/x"},
            }
            for t in templates:
                t.render(context)
        return (time.perf_counter() - start) / len(rows) * 1e6

    def ours() -> float:
        start = time.perf_counter()
        shared = bulk.render_issue(issue, cfg)  # once per mailing, counted in
        for r in rows:
            s = subs[r["subscriber"]]
            bulk.compose(shared, r, s, s["email"], cfg)
        return (time.perf_counter() - start) / len(rows) * 1e6

    bare(), ours()  # warm up caches and templates
    b, o = [], []
    for _ in range(rounds):
        b.append(bare())
        o.append(ours())
    b_us, o_us = statistics.median(b), statistics.median(o)
    print(f"build: bare Jinja {b_us:.1f} us/message, ours {o_us:.1f} us/message (ratio {o_us / b_us:.2f}x), {len(rows)} messages, {rounds} rounds")
    return [row("release: build cost per message", o_us, b_us, "bare Jinja render of the same templates",
                "<= 1.3x", o_us / b_us <= 1.3, unit="us/message")]


# -- 2. hand-off ------------------------------------------------------------------------------

async def raw_send(port: int, messages: list[tuple[str, bytes]], connections: int) -> float:
    import aiosmtplib

    queue = list(reversed(messages))

    async def lane() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await client.connect()
        while queue:
            to, data = queue.pop()
            await client.sendmail("events@localhost", [to], data)
        await client.quit()

    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(connections)))
    return len(messages) / (time.perf_counter() - start)


async def handoff(n: int, port: int, rounds: int) -> list[dict]:
    from events_app import db, settings
    from events_app.domain import issues, mailings
    from events_app.mail import bulk
    from events_app.mail.worker import Worker

    cfg = settings.get()
    connections = cfg.smtp_connections
    results_raw, results_ours = [], []
    for r in range(rounds):
        await db.fetch("DELETE FROM outbox")
        await db.fetch("DELETE FROM mailing")
        await db.fetch("UPDATE issue SET status = 'draft', released_at = NULL, release_at = NULL")
        issue = (await issues.listing())[0]
        # Pre-built messages for the baseline: the same bytes our worker would send.
        shared = bulk.render_issue(issue, cfg)
        subs = await db.fetch("SELECT id, email, name, status, token_salt FROM subscriber ORDER BY id LIMIT {}", n)
        prebuilt = [(s["email"], bulk.compose(shared, {"id": i + 1, "created_at": None}, s, s["email"], cfg).data)
                    for i, s in enumerate(subs)]
        raw_rate = await raw_send(port, prebuilt, connections)

        if r == 0:  # the audience is exactly the n pre-built recipients
            await db.fetch("DELETE FROM subscription WHERE subscriber > {}", subs[-1]["id"])
        await issues.release(issue["id"])
        # The worker's own loop, as `events-app worker` runs it; stopped once the ledger is done.
        worker = Worker(cfg)
        stop = asyncio.Event()
        start = time.perf_counter()
        task = asyncio.create_task(worker.run(stop))
        sent_sql = "SELECT count(*) AS n FROM outbox WHERE status = 'sent' AND mailing IS NOT NULL"
        while (await db.fetch(sent_sql))[0]["n"] < n:
            await asyncio.sleep(0.1)
        stop.set()
        await task
        ours_rate = n / (time.perf_counter() - start)
        sent = (await issues.delivery(issue["id"]))["sent"]
        assert sent == n, f"sent {sent} of {n}"
        results_raw.append(raw_rate)
        results_ours.append(ours_rate)
        print(f"hand-off round {r + 1}: raw aiosmtplib {raw_rate:,.0f} msg/s, worker {ours_rate:,.0f} msg/s")
    raw, ours = statistics.median(results_raw), statistics.median(results_ours)
    print(f"hand-off: raw aiosmtplib {raw:,.0f} msg/s, our worker {ours:,.0f} msg/s (ratio {ours / raw:.2f}x), "
          f"{n} messages, {connections} connections each")
    return [row("release: hand-off rate to SMTP", ours, raw, f"raw aiosmtplib, pre-built, {connections} connections",
                ">= 0.9x", ours / raw >= 0.9, unit="msg/s")]


# -- 3. peak memory -----------------------------------------------------------------------------

def peak_memory(count: int, port: int) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench-release-mem-") as folder:
        env = {**os.environ, **setup_env(folder, port)}
        subprocess.run([PY, "-m", "events_app.cli", "migrate"], check=True, env=env, capture_output=True)
        asyncio.run(_prepare_memory(count, folder))
        proc = subprocess.Popen([PY, "-m", "events_app.cli", "worker"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        peak, start = 0, time.perf_counter()
        try:
            while True:
                status = Path(f"/proc/{proc.pid}/status").read_text()
                peak = max(peak, int(status.split("VmHWM:")[1].split()[0]))
                if _done(folder):
                    break
                if time.perf_counter() - start > 1800:
                    raise RuntimeError("the 100,000 release did not finish in 30 minutes")
                time.sleep(0.5)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        took = time.perf_counter() - start
    mb = peak / 1024
    print(f"peak memory: worker releasing to {count:,} subscribers: {mb:.0f} MB (VmHWM), {took:.0f} s, "
          f"{count / took:,.0f} msg/s end to end")
    return [row(f"release: worker peak memory, {count:,} recipients", mb, None, "-", "< 150 MB", mb < 150, unit="MB")]


async def _prepare_memory(count: int, folder: str) -> None:
    from events_app import db
    from events_app.domain import issues

    issue_id = await prepare(count, folder)
    await issues.release(issue_id)
    await db.stop()


def _done(folder: str) -> bool:
    import sqlite3

    con = sqlite3.connect(f"{folder}/bench.sqlite3", timeout=10)
    try:
        row_ = con.execute("SELECT status FROM mailing ORDER BY id DESC LIMIT 1").fetchone()
        return bool(row_) and row_[0] == "done"
    finally:
        con.close()


# -- 4. PostgreSQL, a million subscribers ----------------------------------------------------------

async def _pg_admin(url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _vm_hwm_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def _peaks(peak: list[float], procs: list[subprocess.Popen]) -> list[float]:
    """Each process's VmHWM so far: the larger of `peak` and what /proc says now."""
    return [max(p, _vm_hwm_mb(w.pid)) for p, w in zip(peak, procs, strict=True)]


def _signal_all(procs: list[subprocess.Popen], sig: int) -> None:
    for proc in procs:
        proc.send_signal(sig)


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan")


async def _pg_setup(count: int) -> tuple[int, int]:
    """Topics, a staff member, `count` confirmed bulletin subscribers (SQL), an issue: its id and
    the topic's."""
    from events_app import db
    from events_app.domain import issues, seed, staff

    await seed.topics()
    await staff.create("bench@example.org", "bench password 12345", "Bench")
    topic = (await db.fetch("SELECT id FROM topic WHERE slug = 'bulletin'"))[0]["id"]
    started = time.perf_counter()
    await db.fetch(
        "INSERT INTO subscriber (email, email_hash, name, status, token_salt, source, created_at, confirmed_at) "
        "SELECT 'reader' || g || '@example.org', encode(sha256(('reader' || g || '@example.org')::bytea), 'hex'), "
        "'Reader ' || g, 'confirmed', md5(g::text), 'import', now() - interval '1 day', now() - interval '1 day' "
        "FROM generate_series(1, {}::integer) g",
        count,
    )
    await db.fetch(
        "INSERT INTO subscription (subscriber, topic, created_at) "
        "SELECT id, {}::integer, now() - interval '1 day' FROM subscriber",
        topic,
    )
    await db.fetch("ANALYZE subscriber")
    await db.fetch("ANALYZE subscription")
    print(f"pg: {count:,} subscribers inserted in {time.perf_counter() - started:.1f} s (not timed)", flush=True)
    issue = await issues.create({
        "title": "October 2019", "issue_date": "2019-10-15", "summary": "Non-academic careers with impact",
        "body": (ROOT / "events_app" / "demo.py").read_text().split('ISSUE_BODY = """\\\n', 1)[1].split('"""', 1)[0],
    })
    return issue["id"], topic


async def _prebuilt(issue_id: int, n: int) -> list[tuple[str, bytes]]:
    """The issue's messages to its first `n` subscribers, as the worker builds them."""
    from events_app import db, settings
    from events_app.domain import issues
    from events_app.mail import bulk

    cfg = settings.get()
    shared = bulk.render_issue(await issues.get(issue_id), cfg)
    subs = await db.fetch("SELECT id, email, name, status, token_salt FROM subscriber ORDER BY id LIMIT {}", n)
    return [(s["email"], bulk.compose(shared, {"id": i + 1, "created_at": None}, s, s["email"], cfg).data)
            for i, s in enumerate(subs)]


def _raw_process(port: int, messages: list, connections: int, out) -> None:
    out.put(asyncio.run(raw_send(port, messages, connections)))


def raw_rate_processes(port: int, messages: list, connections: int, processes: int) -> float:
    """raw aiosmtplib over `connections` each in `processes` processes (the workers' shape)."""
    if processes == 1:
        return asyncio.run(raw_send(port, messages, connections))
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    share = len(messages) // processes
    procs = [ctx.Process(target=_raw_process, args=(port, messages[i * share:(i + 1) * share], connections, out))
             for i in range(processes)]
    for p in procs:
        p.start()
    rates = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


class Poller:
    """A signed-in staff client polling the delivery page at a steady pace."""

    def __init__(self, base: str, issue_id: int, every: float = 0.25) -> None:
        import httpx

        self.client = httpx.AsyncClient(base_url=base, timeout=30)
        self.issue_id, self.every = issue_id, every
        self.times: list[float] = []
        self.errors = 0

    async def sign_in(self) -> None:
        import re

        page = (await self.client.get("/staff/login")).text
        token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page).group(1)
        answer = await self.client.post("/staff/login", data={
            "csrf_token": token, "email": "bench@example.org", "password": "bench password 12345"})
        assert answer.status_code == 303, answer.status_code

    async def run(self, stop: asyncio.Event) -> None:
        n = 0
        next_at = time.perf_counter()
        while not stop.is_set():
            path = f"/staff/issues/{self.issue_id}/progress" + ("" if n % 5 == 0 else "/live")
            start = time.perf_counter()
            answer = await self.client.get(path)
            self.times.append((time.perf_counter() - start) * 1000)
            if answer.status_code != 200 or (path.endswith("/live") and "delivery-counts" not in answer.text):
                self.errors += 1
                if self.errors <= 3:
                    print(f"pg: delivery page {path}: {answer.status_code} {answer.text[:200]!r}", flush=True)
            n += 1
            next_at += self.every
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    async def close(self) -> None:
        await self.client.aclose()


async def pg_release(args, port: int) -> list[dict]:
    import signal
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    from events_app import db, settings

    count, workers, connections = args.pg_subscribers, args.pg_workers, 2
    name = f"bench_release_{uuid.uuid4().hex[:8]}"
    await _pg_admin(args.admin_url, f'CREATE DATABASE "{name}"')
    parts = urlsplit(args.admin_url)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))
    started_run = time.perf_counter()
    procs: list[subprocess.Popen] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-release-pg-") as folder:
            env = {**os.environ, **setup_env(folder, port), "EVENTS_DATABASE_URL": url,
                   "EVENTS_SMTP_CONNECTIONS": str(connections)}
            os.environ.update(env)
            settings.reset()
            db.reset()
            subprocess.run([PY, "-m", "events_app.cli", "migrate"], check=True, env=env, capture_output=True)
            await db.start()
            issue_id, _ = await _pg_setup(count)
            messages = await _prebuilt(issue_id, args.pg_baseline)
            raw_quiet = await asyncio.to_thread(raw_rate_processes, port, messages, connections, workers)
            print(f"pg: raw aiosmtplib before the release, nothing else running: {raw_quiet:,.0f} msg/s", flush=True)

            web_port = free_port()
            procs.append(subprocess.Popen(
                [PY, "-m", "events_app.cli", "serve", "--no-worker", "--port", str(web_port)], env=env,
                stdout=subprocess.DEVNULL, stderr=open(f"{folder}/serve.log", "w")))
            base = f"http://127.0.0.1:{web_port}"
            poller = Poller(base, issue_id)
            for _ in range(200):
                try:
                    await poller.client.get("/staff/login")
                    break
                except Exception:
                    await asyncio.sleep(0.1)
            await poller.sign_in()
            # The page's baseline: the same client and pages before the release.
            stop = asyncio.Event()
            task = asyncio.create_task(poller.run(stop))
            await asyncio.sleep(8)
            stop.set()
            await task
            idle_times, poller.times = poller.times, []

            worker_procs = [subprocess.Popen([PY, "-m", "events_app.cli", "worker"], env=env,
                                             stdout=subprocess.DEVNULL, stderr=open(f"{folder}/worker{i}.log", "w"))
                            for i in range(workers)]
            procs += worker_procs
            await asyncio.sleep(3)  # started and idle
            if os.environ.get("BENCH_PYSPY"):  # profile the first worker during the window
                spy_out = os.environ["BENCH_PYSPY"]
                procs.append(subprocess.Popen(
                    [str(Path(PY).parent / "py-spy"), "record", "-p", str(worker_procs[0].pid), "-d", str(int(2 * args.pg_window) + 30),
                     "-f", "raw", "-o", spy_out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            from events_app.domain import issues

            stop = asyncio.Event()
            task = asyncio.create_task(poller.run(stop))
            released = await issues.release(issue_id)
            mailing_id = released["mailing"]
            print(f"pg: released to {released['recipients']:,}", flush=True)
            peak = [0.0] * workers
            ledger_s = None
            while ledger_s is None:
                await asyncio.sleep(0.5)
                peak = _peaks(peak, worker_procs)
                m = (await db.fetch("SELECT release_at, expanded_at FROM mailing WHERE id = {}", mailing_id))[0]
                if m["expanded_at"] is not None:
                    ledger_s = (m["expanded_at"] - m["release_at"]).total_seconds()
                elif time.perf_counter() - started_run > 900:
                    raise RuntimeError("the ledger was not written in 15 minutes")
            print(f"pg: ledger written in {ledger_s:.1f} s", flush=True)
            # The hand-off, alternated in slices: the workers send for a slice of the window, then
            # are stopped (SIGSTOP) while raw aiosmtplib sends about as long, `--pg-pairs` times,
            # the staff client polling the delivery page all along. Both sides thus share the
            # machine's moment and the page's load (see the module's docstring).
            sent_sql = "SELECT count(*) AS n FROM outbox WHERE mailing = {} AND status = 'sent'"
            slice_s = args.pg_window / args.pg_pairs
            share = min(len(messages), max(500, int(raw_quiet * slice_s)))
            sent_all, worker_s, raw_polled, pair_ratios = 0, 0.0, [], []
            _signal_all(worker_procs, signal.SIGSTOP)
            for k in range(args.pg_pairs):
                sent_a = (await db.fetch(sent_sql, mailing_id))[0]["n"]
                _signal_all(worker_procs, signal.SIGCONT)
                t_a = time.perf_counter()
                while time.perf_counter() < t_a + slice_s:
                    await asyncio.sleep(0.5)
                    peak = _peaks(peak, worker_procs)
                _signal_all(worker_procs, signal.SIGSTOP)
                t_b = time.perf_counter()
                sent_b = (await db.fetch(sent_sql, mailing_id))[0]["n"]
                sent_all, worker_s = sent_all + sent_b - sent_a, worker_s + t_b - t_a
                raw_polled.append(await asyncio.to_thread(raw_rate_processes, port, messages[:share], connections, workers))
                slice_rate = (sent_b - sent_a) / (t_b - t_a)
                pair_ratios.append(slice_rate / raw_polled[-1])
                print(f"pg: slice {k + 1}: worker {slice_rate:,.0f} msg/s, "
                      f"raw aiosmtplib {raw_polled[-1]:,.0f} msg/s ({pair_ratios[-1]:.2f}x)", flush=True)
            _signal_all(worker_procs, signal.SIGCONT)
            rate = sent_all / worker_s
            stop.set()
            await task
            # The page's figure: every request from the release on (the ledger written, the
            # workers' slices and the raw runs between them, the mailing sending throughout).
            busy_times = poller.times
            await poller.close()
            peak = _peaks(peak, worker_procs)
            _signal_all(worker_procs, signal.SIGTERM)
            for w in worker_procs:
                w.wait(timeout=60)
            figures = await db.fetch(
                "SELECT count(*) AS n, count(DISTINCT subscriber) AS people, "
                "count(*) FILTER (WHERE status = 'sent') AS sent FROM outbox WHERE mailing = {}", mailing_id)
            exact = figures[0]["n"] == figures[0]["people"] == count
            # For scale: the same rows by one bare statement into an empty copy of the outbox.
            await db.fetch("CREATE TABLE outbox_bare (LIKE outbox INCLUDING ALL)")
            t0 = time.perf_counter()
            await db.fetch(
                "INSERT INTO outbox_bare (kind, recipient, payload, status, attempts, next_attempt_at, last_error, "
                "created_at, mailing, subscriber) SELECT 'issue', s.email, '{}', 'queued', 0, now(), '', now(), 1, "
                "s.id FROM subscriber s JOIN subscription t ON t.subscriber = s.id")
            bare_s = time.perf_counter() - t0
            await db.stop()
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)  # a worker stopped between slices could not stop
                p.terminate()
                p.wait(timeout=30)
        db.reset()
        await _pg_admin(args.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    raw_rate = statistics.mean(raw_polled)
    busy_p99, idle_p99 = _p99(busy_times), _p99(idle_times)
    wall = time.perf_counter() - started_run
    spread = ", ".join(f"{r:.2f}" for r in pair_ratios)
    print(f"pg: {count:,} subscribers, {workers} worker(s) x {connections} connections: ledger {ledger_s:.1f} s "
          f"(bare INSERT ... SELECT {bare_s:.1f} s), {figures[0]['n']:,} rows, exact {exact}; hand-off "
          f"{rate:,.0f} msg/s over {worker_s:.0f} s in {args.pg_pairs} slices vs raw {raw_rate:,.0f} in the slices "
          f"between ({rate / raw_rate:.2f}x; slices {spread}; raw before the release, nothing else running: "
          f"{raw_quiet:,.0f}, {rate / raw_quiet:.2f}x); peak RSS {', '.join(f'{p:.0f}' for p in peak)} MB; page p99 "
          f"{busy_p99:.0f} ms during, {idle_p99:.0f} ms before ({len(busy_times)} requests, {poller.errors} bad); "
          f"section {wall:.0f} s")
    label = f"{count:,}"
    return [
        row(f"release pg {label}: ledger written", ledger_s, bare_s, "one bare INSERT ... SELECT of the same rows",
            "<= 60 s", ledger_s <= 60, unit="s", ok=exact,
            note=f"{figures[0]['n']:,} rows, one per recipient: {exact}"),
        row(f"release pg {label}: hand-off rate", rate, raw_rate,
            f"raw aiosmtplib, pre-built, {workers}x{connections} connections, in the slices between, page polled alike",
            ">= 0.9x", rate / raw_rate >= 0.9, unit="msg/s",
            note=f"{args.pg_pairs} slices of {slice_s:.0f} s once the ledger was complete, each followed by raw "
                 f"(slice ratios {spread}); raw before the release with nothing else running: {raw_quiet:,.0f} "
                 f"msg/s ({rate / raw_quiet:.2f}x)"),
        row(f"release pg {label}: worker peak memory", max(peak), None, "-", "< 150 MB", max(peak) < 150,
            unit="MB", note=f"VmHWM of {workers} worker(s): {', '.join(f'{p:.0f}' for p in peak)} MB"),
        row(f"release pg {label}: delivery page p99", busy_p99, idle_p99, "same pages polled before the release",
            "< 200 ms", busy_p99 < 200, unit="ms", ok=poller.errors == 0,
            note=f"{len(busy_times)} requests during the release; section wall time {wall:.0f} s"),
    ]


async def main_async(args) -> list[dict]:
    sink, port = start_sink()
    out: list[dict] = []
    try:
        if not args.only_pg:
            with tempfile.TemporaryDirectory(prefix="bench-release-") as folder:
                setup_env(folder, port)
                from events_app import db

                await prepare(max(args.build, args.handoff), folder)
                out += await build_cost(args.build, args.rounds)
                out += await handoff(args.handoff, port, args.rounds)
                await db.stop()
            out += await asyncio.to_thread(peak_memory, args.memory, port)
        if args.pg_subscribers:
            out += await pg_release(args, port)
    finally:
        sink.terminate()
        sink.wait()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", type=int, default=2000, help="messages per build-cost round")
    parser.add_argument("--handoff", type=int, default=5000, help="messages per hand-off round")
    parser.add_argument("--memory", type=int, default=100_000, help="recipients of the memory run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the BENCH_ROWS line for run_all.py")
    parser.add_argument("--admin-url", default=os.environ.get("PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--pg-subscribers", type=int, default=1_000_000, help="PostgreSQL release audience (0: skip)")
    parser.add_argument("--pg-window", type=float, default=60.0, help="seconds of the PostgreSQL hand-off window")
    parser.add_argument("--pg-workers", type=int, default=1, help="`events-app worker` processes on PostgreSQL")
    parser.add_argument("--pg-baseline", type=int, default=20_000, help="pre-built messages of the raw run before the release")
    parser.add_argument("--pg-pairs", type=int, default=4,
                        help="slices the hand-off window is cut into, each followed by a raw run as long")
    parser.add_argument("--only-pg", action="store_true", help="skip the SQLite figures (iterating)")
    args = parser.parse_args()
    rows = asyncio.run(main_async(args))
    print()
    print(f"{'figure':45} {'value':>12} {'baseline':>12} {'ratio':>7} {'target':>9}  met")
    for r in rows:
        base = f"{r['baseline']:,.1f}" if r["baseline"] is not None else "-"
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
        print(f"{r['name']:45} {r['value']:>12,.1f} {base:>12} {ratio:>7} {r['target']:>9}  {r['met']}")
    if args.json:
        emit(rows)


if __name__ == "__main__":
    main()
