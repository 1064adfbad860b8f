"""The registration rush: 10,000 attempts for 1,000 seats, on SQLite and on PostgreSQL, with the
confirmation emails caught by an SMTP sink.

    .venv/bin/python bench/rush.py [--attempts 10000] [--seats 1000] [--engines sqlite,postgres]
        [--admin-url postgresql://postgres@127.0.0.1:5432/postgres] [--json]

Deployments, each on a fresh database with one published event of `--seats` seats:
  sqlite    one `events-app serve` with its in-process mail worker (the SQLite deployment)
  postgres  the scale-out deployment: two `serve --no-worker` processes sharing Redis, two
            `events-app worker` processes; attempts alternate between the two servers
Each attempt is a new address; `--concurrency` (64) requests are in flight at once (keep-alive
connections of a small asyncio HTTP/1.1 client). Mail goes to a minimal SMTP sink in a process of
its own that records when each message arrived and its Message-ID.

Checks (the "must show"): every answer 201 (no 5xx), exactly `seats` registered, every other
answer a waitlist place with the places 1..N each given once, outbox rows == registrations ==
attempts, seats taken == seats, every confirmation delivered exactly once (no Message-ID twice).
On PostgreSQL also the form rate limit across both servers (12 POSTs, exactly 10 accepted).
Figures: answers/s, and the time from each 201 to its confirmation at the sink (p50/p99/max;
targets p99 <= 10 s on SQLite, <= 5 s on PostgreSQL). Exit status 0 when the run worked (targets met or not), 1 when a check
failed or it broke, 2 when PostgreSQL is missing. `--json` also prints one `BENCH_ROWS [...]`
line (bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack, contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import registration as bench  # noqa: E402
import rows as rowfmt  # noqa: E402
from registration_pg import _admin, throwaway_database  # noqa: E402

# The targets for the confirmation at the sink, p99: one `serve` on SQLite, the scale-out
# deployment on PostgreSQL.
MAIL_P99_TARGET_S = {"sqlite": 10.0, "postgres": 5.0}
REDIS_URL = os.environ.get("EVENTS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


SINK_PROGRAM = r"""
# A minimal SMTP server (greeting, EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT): it stands for
# a mail server on another machine, so it should cost this machine as little as it can. aiosmtpd
# spent about as much CPU per message as the worker sending it.
import asyncio, sys, time

out = sys.stdout

class Session(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer, self.data, self.rcpts = transport, b"", False, []
        transport.write(b"220 sink ESMTP\r\n")

    def data_received(self, chunk):
        self.buffer += chunk
        while True:
            if self.data:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    return
                body, self.buffer, self.data = self.buffer[:end + 2], self.buffer[end + 5:], False
                moment = time.time()
                mid = ""
                for line in body.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
                    if line[:11].lower() == b"message-id:":
                        mid = line[11:].strip().decode(errors="replace")
                out.write("".join(f"{moment!r}\t{mid}\t{r}\n" for r in self.rcpts))
                out.flush()
                self.rcpts = []
                self.transport.write(b"250 2.0.0 accepted\r\n")
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return
            line, self.buffer = self.buffer[:end], self.buffer[end + 2:]
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.transport.write(b"250-sink\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 100000000\r\n")
            elif verb == b"RCPT":
                address = line.split(b":", 1)[1].strip().split(b" ", 1)[0].strip(b"<>")
                self.rcpts.append(address.decode(errors="replace").lower())
                self.transport.write(b"250 2.1.5 OK\r\n")
            elif verb == b"DATA":
                self.data = True
                self.transport.write(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                self.transport.write(b"221 bye\r\n")
                self.transport.close()
                return
            else:  # HELO, MAIL, RSET, NOOP
                if verb in (b"MAIL", b"RSET"):
                    self.rcpts = []
                self.transport.write(b"250 OK\r\n")

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Session, "127.0.0.1", int(sys.argv[1]))
    out.write("ready\n")
    out.flush()
    await loop.run_in_executor(None, sys.stdin.read)  # until the bench closes it
    server.close()

asyncio.run(main())
"""


class Sink:
    """A minimal SMTP server on loopback (SINK_PROGRAM), in a process of its own (aiosmtpd in the
    bench's process shared one core and one GIL with the rush's client, and could itself hold the
    messages back): the arrival time and Message-ID of every message, per recipient, read from its
    output by a thread."""

    def __init__(self) -> None:
        self.port = bench.free_port()
        self.lock = threading.Lock()
        self.arrivals: dict[str, list[float]] = {}
        self.message_ids: Counter = Counter()
        self.proc: subprocess.Popen | None = None
        self.reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            moment, mid, rcpt = line.rstrip("\n").split("\t")
            with self.lock:
                self.message_ids[mid] += 1
                self.arrivals.setdefault(rcpt, []).append(float(moment))

    def __enter__(self) -> "Sink":
        self.proc = subprocess.Popen([sys.executable, "-c", SINK_PROGRAM, str(self.port)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise bench.BenchError("the SMTP sink did not start")
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def __exit__(self, *exc) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.reader is not None:
            self.reader.join(timeout=5)


def _serve(env: dict, tmp: Path, name: str, worker: bool) -> tuple[bench.Server, str]:
    port = bench.free_port()
    argv = [*bench._events_cli(), "serve", "--host", bench.HOST, "--port", str(port)]
    if not worker:
        argv.append("--no-worker")
    server = bench.Server(name, argv, {**env, "EVENTS_BASE_URL": f"http://{bench.HOST}:{port}"},
                          tmp / f"{name}.log", None)
    base = f"http://{bench.HOST}:{port}"
    bench.wait_ready(server, "GET", base + "/health", None, 200, 30)
    return server, base


@contextmanager
def deployment(engine: str, args, sink: Sink):
    """(server base URLs, database URL, staff token); everything stopped on exit."""
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-rush-")))
        if engine == "sqlite":
            url = f"sqlite:///{tmp / 'events.sqlite3'}"
        else:
            url = stack.enter_context(throwaway_database(args.admin_url))
        env = bench._real_env(tmp, 0, url)
        env.update(EVENTS_SMTP_URL=sink.url, EVENTS_WORKER_POLL_SECONDS="0.1")
        for pair in args.env:  # experiments: other settings for every process of the deployment
            key, _, value = pair.partition("=")
            env[key] = value
        if args.serve_worker:  # how the SQLite deployment's `serve` runs its worker (settings.py)
            env["EVENTS_SERVE_WORKER"] = args.serve_worker
        if engine == "postgres":
            env.update(EVENTS_REDIS_URL=REDIS_URL, EVENTS_RATE_LIMITS="on")
        bench._cli(env, "migrate")
        bench._cli(env, "staff", "create", bench.STAFF_EMAIL, "--name", "Bench", stdin=bench.STAFF_PASSWORD + "\n")
        token = bench._cli(env, "staff", "token", bench.STAFF_EMAIL, "--label", "bench").splitlines()[-1].strip()
        servers = []
        if engine == "sqlite":
            servers.append(_serve(env, tmp, "server", worker=True))
        else:
            servers += [_serve(env, tmp, f"server{i}", worker=False) for i in (1, 2)]
            for i in (1, 2):
                servers.append((bench.Server(f"worker{i}", [*bench._events_cli(), "worker"], env,
                                             tmp / f"worker{i}.log", None), None))
        try:
            yield [base for _, base in servers if base], url, token
        finally:
            for server, _ in servers:
                server.stop()


async def _rush(bases: list[str], event_id: int, attempts: int, concurrency: int) -> list[tuple]:
    """`concurrency` keep-alive connections, each sending one attempt after another, spread
    over the servers. A plain HTTP/1.1 client on asyncio streams: httpx spent more CPU per
    request than the server did and became the bottleneck of the rush."""
    import json as jsonlib
    from urllib.parse import urlsplit

    results: list[tuple] = [None] * attempts  # type: ignore[list-item]
    queue = list(range(attempts - 1, -1, -1))
    path = f"/api/v1/events/{event_id}/registrations"

    async def one_connection(n: int) -> None:
        target = urlsplit(bases[n % len(bases)])
        reader, writer = await asyncio.open_connection(target.hostname, target.port)
        try:
            while queue:
                i = queue.pop()
                email = f"rush{i}@bench.example.org"
                body = jsonlib.dumps({"name": f"Rush {i}", "email": email}).encode()
                # Each attempt is another person, from an address of their own (the per-client
                # registration limit, web/limits.py, is on in the PostgreSQL deployment).
                writer.write(f"POST {path} HTTP/1.1\r\nHost: {target.netloc}\r\nContent-Type: application/json\r\n"
                             f"X-Forwarded-For: 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}\r\n"
                             f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = int(head.split(b" ", 2)[1])
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        if line[:15].lower() == b"content-length:":
                            length = int(line[15:])
                    payload = await reader.readexactly(length)
                except (asyncio.IncompleteReadError, ConnectionError) as exc:
                    results[i] = (email, f"error {type(exc).__name__}", time.time(), None, None)
                    return
                answer = jsonlib.loads(payload) if status == 201 else {}
                results[i] = (email, status, time.time(), answer.get("status"), answer.get("waitlist_position"))
        finally:
            writer.close()

    await asyncio.gather(*(one_connection(n) for n in range(concurrency)))
    for i, res in enumerate(results):
        if res is None:
            results[i] = (f"rush{i}@bench.example.org", "not sent", time.time(), None, None)
    return results


async def _rate_limit_burst(bases: list[str]) -> Counter:
    import httpx

    ip = f"10.{random.randint(0, 255)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
    seen = Counter()
    async with httpx.AsyncClient(timeout=30) as http:
        for i in range(12):
            answer = await http.post(bases[i % len(bases)] + "/bulletin/subscribe",
                                     data={"email": f"burst{i}@bench.example.org", "topics": "bulletin"},
                                     headers={"X-Forwarded-For": ip})
            seen[answer.status_code] += 1
    return seen


async def _db_counts(url: str, event_id: int) -> dict:
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.split("sqlite:///", 1)[1])
        try:
            one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
            return {
                "registered": one(f"SELECT COUNT(*) FROM registration WHERE event = {event_id} AND status = 'registered'"),
                "waitlisted": one(f"SELECT COUNT(*) FROM registration WHERE event = {event_id} AND status = 'waitlisted'"),
                "rows": one(f"SELECT COUNT(*) FROM registration WHERE event = {event_id}"),
                "outbox": one("SELECT COUNT(*) FROM outbox WHERE kind = 'registration_confirmed'"),
                "unsent": one("SELECT COUNT(*) FROM outbox WHERE status IN ('queued', 'sending')"),
                "taken": one(f"SELECT taken FROM event WHERE id = {event_id}"),
            }
        finally:
            conn.close()
    rows = await _admin(url, f"""SELECT
        (SELECT COUNT(*) FROM registration WHERE event = {event_id} AND status = 'registered') AS registered,
        (SELECT COUNT(*) FROM registration WHERE event = {event_id} AND status = 'waitlisted') AS waitlisted,
        (SELECT COUNT(*) FROM registration WHERE event = {event_id}) AS rows,
        (SELECT COUNT(*) FROM outbox WHERE kind = 'registration_confirmed') AS outbox,
        (SELECT COUNT(*) FROM outbox WHERE status IN ('queued', 'sending')) AS unsent,
        (SELECT taken FROM event WHERE id = {event_id}) AS taken""")
    return dict(rows[0])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def run_engine(engine: str, args) -> dict:
    from datetime import datetime, timedelta, timezone

    with Sink() as sink, deployment(engine, args, sink) as (bases, url, token):
        starts = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=30)
        status, event = bench.http("POST", bases[0] + "/api/v1/events/", {
            "title": "Rush", "starts_at": starts.isoformat(), "ends_at": (starts + timedelta(hours=1)).isoformat(),
            "timezone": "UTC", "capacity": args.seats, "status": "published"}, token=token)
        if status != 201:
            raise bench.BenchError(f"creating the event answered {status}: {event}")
        began = time.time()
        results = asyncio.run(_rush(bases, event["id"], args.attempts, args.concurrency))
        rush_s = time.time() - began
        burst = asyncio.run(_rate_limit_burst(bases)) if engine == "postgres" else None
        deadline = time.time() + args.mail_timeout
        while time.time() < deadline:
            with sink.lock:
                arrived = sum(1 for r in results if r[0] in sink.arrivals)
            if arrived >= len(results):
                break
            time.sleep(0.2)
        mail_s = time.time() - began
        time.sleep(1.0)  # a message sent twice would arrive now
        counts = asyncio.run(_db_counts(url, event["id"]))
        with sink.lock:
            arrivals = {k: list(v) for k, v in sink.arrivals.items()}
            duplicates = sum(n - 1 for n in sink.message_ids.values() if n > 1)
    statuses = Counter(r[1] for r in results)
    answered = {r[0]: r[2] for r in results if r[1] == 201}
    latencies = [arrivals[e][0] - t for e, t in answered.items() if e in arrivals]
    missing = len(answered) - len(latencies)
    places = sorted(r[4] for r in results if r[3] == "waitlisted")
    checks = {
        "all 201": statuses == Counter({201: args.attempts}),
        "exactly the seats registered": counts["registered"] == counts["taken"] == args.seats
        and sum(1 for r in results if r[3] == "registered") == args.seats,
        "every other answer a waitlist place, each place once": places == list(range(1, args.attempts - args.seats + 1)),
        "outbox rows == registrations": counts["outbox"] == counts["rows"] == args.attempts,
        "every confirmation delivered once": missing == 0 and duplicates == 0
        and all(len(arrivals.get(e, [])) == 1 for e in answered),
    }
    if burst is not None:
        checks["rate limit shared (10 of 12 accepted)"] = burst[429] == 2 and sum(burst.values()) == 12
    return {
        "engine": engine, "statuses": dict(statuses), "counts": counts, "rush_s": rush_s,
        "answers_per_s": args.attempts / rush_s, "mail_done_s": mail_s, "missing_mail": missing,
        "duplicates": duplicates, "burst": dict(burst) if burst else None, "checks": checks,
        "mail_p50_s": pct(latencies, 0.50), "mail_p99_s": pct(latencies, 0.99),
        "mail_max_s": max(latencies) if latencies else float("nan"),
        "delivered_per_s": len(latencies) / max(mail_s, 1e-9),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="10,000 attempts for 1,000 seats, with the confirmations at an SMTP sink.")
    p.add_argument("--attempts", type=int, default=10_000)
    p.add_argument("--seats", type=int, default=1_000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--engines", default="sqlite,postgres")
    p.add_argument("--admin-url", default=os.environ.get("PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--mail-timeout", type=float, default=300.0, help="seconds to wait for every confirmation")
    p.add_argument("--serve-worker", choices=("process", "task"), default="",
                   help="EVENTS_SERVE_WORKER for the SQLite `serve` (default: the app's default)")
    p.add_argument("--env", action="append", default=[], metavar="EVENTS_X=VALUE",
                   help="a setting for the deployment's processes (repeatable; experiments)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if "postgres" in engines:
        try:
            asyncio.run(_admin(args.admin_url, "SELECT 1"))
        except Exception as exc:  # noqa: BLE001
            print(f"bench/rush.py: PostgreSQL at {args.admin_url} is not usable: {exc}", file=sys.stderr)
            return 2
    results, rows, broken = [], [], False
    for engine in engines:
        print(f"rush on {engine}: {args.attempts:,} attempts for {args.seats:,} seats ...", file=sys.stderr, flush=True)
        try:
            res = run_engine(engine, args)
        except bench.BenchError as exc:
            print(f"bench/rush.py: the {engine} run broke: {exc}", file=sys.stderr)
            broken = True
            continue
        results.append(res)
        ok = all(res["checks"].values())
        print(f"{engine}: {res['answers_per_s']:,.0f} answers/s over {res['rush_s']:.1f} s; statuses {res['statuses']}; "
              f"db {res['counts']}; confirmation after the answer p50 {res['mail_p50_s']:.2f} s, "
              f"p99 {res['mail_p99_s']:.2f} s, max {res['mail_max_s']:.2f} s; all delivered after {res['mail_done_s']:.1f} s "
              f"({res['delivered_per_s']:,.0f}/s); duplicates {res['duplicates']}; rate-limit burst {res['burst']}")
        for name, held in res["checks"].items():
            print(f"  {'ok  ' if held else 'FAIL'} {name}")
        label = "SQLite" if engine == "sqlite" else "PostgreSQL, 2 servers + 2 workers"
        rows.append(rowfmt.row(f"rush {args.attempts:,}/{args.seats:,} on {label}: registered", res["counts"]["registered"],
                               args.seats, "seats", "== seats, checks hold", ok, unit="seats", ok=ok,
                               note="; ".join(k for k, v in res["checks"].items() if not v)))
        target = MAIL_P99_TARGET_S[engine]
        rows.append(rowfmt.row(f"rush on {label}: confirmation at the sink, p99", res["mail_p99_s"], target,
                               "target", f"<= {target:g} s", res["mail_p99_s"] <= target,
                               unit="s", ok=ok, note=f"p50 {res['mail_p50_s']:.2f} s; delivered {res['delivered_per_s']:,.0f}/s, "
                               f"answers {res['answers_per_s']:,.0f}/s"))
    if args.json:
        rowfmt.emit(rows)
    failed = broken or any(not all(r["checks"].values()) for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
