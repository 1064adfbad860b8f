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

    .venv/bin/python bench/release.py                   # ~3 min
    .venv/bin/python bench/release.py --handoff 3000 --memory 20000 --json
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
    subs = {s["id"]: s for s in await db.fetch("SELECT id, email, name, status, token_salt, paused_until, bounced_at FROM subscriber")}

    def bare() -> float:
        start = time.perf_counter()
        for r in rows:
            s = subs[r["subscriber"]]
            token = subscriptions.manage_token(s)
            context = {
                "greeting": f"Hello {s['name']},", "topic_name": issue["topic_name"], "organizer_name": "Events",
                "site_host": cfg.host, "issue": {**issue, "date": issue["issue_date"]}, "body_html": body_html,
                "body_text": issue["body"], "subject": "x",
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


async def main_async(args) -> list[dict]:
    sink, port = start_sink()
    out: list[dict] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-release-") as folder:
            setup_env(folder, port)
            from events_app import db

            await prepare(max(args.build, args.handoff), folder)
            out += await build_cost(args.build, args.rounds)
            out += await handoff(args.handoff, port, args.rounds)
            await db.stop()
        out += await asyncio.to_thread(peak_memory, args.memory, port)
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
