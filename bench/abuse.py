"""Sign-in abuse against a real server: does one client looping sign-ins slow everyone else?

    .venv/bin/python bench/abuse.py [--phase-seconds 20] [--abusers 8] [--json]

One `events-app serve` (uvicorn, with its in-process mail worker, a fresh SQLite database,
EVENTS_RATE_LIMITS=on as in production, mail to .eml files) with a staff account and one
published event. Two timers run all the time, each on its own keep-alive connection, one
request after another with a short pause: GET /health, and a registration
(POST /api/v1/events/{id}/registrations, a new person each time: a new address and a new
X-Forwarded-For, as a crowd of people would be). Phases, each --phase-seconds long:

  idle-1       nothing else: the baseline for the next phase
  abuse-one    --abusers clients (8) in another process loop POST /staff/login with random
               addresses and the form's CSRF token, all from one client address (the issue's
               case: the per-client sign-in limit answers them 429 before any hashing)
  idle-2       nothing else again: the baseline for the next phase
  abuse-many   the same, but every attempt from a new client address (X-Forwarded-For), as a
               botnet would: the per-client limit cannot help, the bounded hashing pool must

Figures: median and p99 latency of each timer per phase, and the ratio of each abuse phase's
median to the idle phase measured just before it (target: <= 2x for the issue's case); the
abusers' attempts/s and answers (401: a password was checked; 429: refused by a limit; 503: the
hashing pool was full). Checks: every timed request answered 200/201, no abuser saw a 5xx other
than 503, and after the abuse the staff member signs in at once. Only loopback traffic, bounded
in time (4 phases) and in count (each timer pauses between requests).

Exit status 0 when the run worked (targets met or not), 1 when it broke or a check failed.
`--json` also prints one `BENCH_ROWS [...]` line (bench/README.md); results go to
bench/results/abuse.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import registration as bench  # noqa: E402
import rows as rowfmt  # noqa: E402

RESULTS = HERE / "results" / "abuse.json"
TARGET_RATIO = 2.0


# A small HTTP/1.1 client on asyncio streams (cheaper per request than httpx, so the client
# process does not become what is measured). --------------------------------------------------

class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, headers: dict | None = None,
                      body: bytes = b"") -> tuple[int, dict, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.writer.write(head.encode() + b"\r\n" + body)
        try:
            raw = await self.reader.readuntil(b"\r\n\r\n")
            lines = raw.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            found: dict[str, str] = {}
            for line in lines[1:]:
                if ":" in line:
                    key, value = line.split(":", 1)
                    key = key.strip().lower()
                    found[key] = found[key] + "\n" + value.strip() if key in found else value.strip()
            if found.get("transfer-encoding", "").lower() == "chunked":
                data = b""
                while True:
                    size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                    data += await self.reader.readexactly(size + 2)
                    if size == 0:
                        break
                content = data
            else:
                content = await self.reader.readexactly(int(found.get("content-length", "0")))
            if found.get("connection", "").lower() == "close":
                await self.close()
            return status, found, content
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.close()
            raise

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _login_form(html: bytes) -> str:
    found = re.search(rb'name="csrf_token" value="([^"]+)"', html)
    return found.group(1).decode() if found else ""


def _cookie(headers: dict) -> str:
    return "; ".join(line.split(";", 1)[0] for line in headers.get("set-cookie", "").split("\n") if line)


# The abusers (another process) ------------------------------------------------------------------

async def _abuse(host: str, port: int, clients: int, seconds: float, rotate: bool) -> dict:
    answers: Counter = Counter()
    deadline = time.monotonic() + seconds

    async def one(n: int) -> None:
        conn = Conn(host, port)
        _, headers, html = await conn.request("GET", "/staff/login")
        token, cookie = _login_form(html), _cookie(headers)
        fixed = "198.51.100.66"
        while time.monotonic() < deadline:
            body = f"csrf_token={token}&email=probe{random.getrandbits(48):x}%40example.org&password=guess+guess+guess"
            ip = f"10.{random.randint(0, 255)}.{random.randint(0, 255)}.{random.randint(1, 254)}" if rotate else fixed
            try:
                status, _, _ = await conn.request("POST", "/staff/login", {
                    "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie, "X-Forwarded-For": ip,
                }, body.encode())
            except (OSError, asyncio.IncompleteReadError):
                status = 0
            answers[status] += 1
        await conn.close()

    started = time.monotonic()
    await asyncio.gather(*(one(n) for n in range(clients)))
    return {"answers": dict(answers), "seconds": time.monotonic() - started}


def _abuser_process(host: str, port: int, clients: int, seconds: float, rotate: bool, out) -> None:
    out.put(asyncio.run(_abuse(host, port, clients, seconds, rotate)))


# The timers (this process) ----------------------------------------------------------------------

async def _timed(host: str, port: int, seconds: float, event_id: int, phase: str) -> dict:
    deadline = time.monotonic() + seconds
    results: dict[str, list[float]] = {"health": [], "registration": []}
    statuses: dict[str, Counter] = {"health": Counter(), "registration": Counter()}

    async def health() -> None:
        conn = Conn(host, port)
        while time.monotonic() < deadline:
            started = time.perf_counter()
            status, _, _ = await conn.request("GET", "/health")
            results["health"].append(time.perf_counter() - started)
            statuses["health"][status] += 1
            await asyncio.sleep(0.02)
        await conn.close()

    async def register() -> None:
        conn = Conn(host, port)
        n = 0
        while time.monotonic() < deadline:
            n += 1
            body = json.dumps({"name": f"Person {n}", "email": f"{phase}-{n}@bench.example.org"}).encode()
            ip = f"172.{16 + n // 65000 % 16}.{n // 250 % 256}.{n % 250 + 1}"
            started = time.perf_counter()
            status, _, _ = await conn.request("POST", f"/api/v1/events/{event_id}/registrations", {
                "Content-Type": "application/json", "X-Forwarded-For": ip}, body)
            results["registration"].append(time.perf_counter() - started)
            statuses["registration"][status] += 1
            await asyncio.sleep(0.05)
        await conn.close()

    await asyncio.gather(health(), register())
    return {name: {"ms": [round(x * 1000, 3) for x in values], "statuses": dict(statuses[name])}
            for name, values in results.items()}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _phase(args, host: str, port: int, event_id: int, name: str, abuse: str | None) -> dict:
    proc = queue = None
    if abuse:
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        proc = ctx.Process(target=_abuser_process,
                           args=(host, port, args.abusers, args.phase_seconds + 1.0, abuse == "many", queue))
        proc.start()
        time.sleep(1.0)  # the abusers are at full speed before the timing starts
    timed = asyncio.run(_timed(host, port, args.phase_seconds, event_id, name))
    abusers = None
    if proc is not None:
        abusers = queue.get(timeout=60)
        proc.join(timeout=30)
    summary = {"phase": name, "abusers": abusers}
    for timer in ("health", "registration"):
        ms = timed[timer]["ms"]
        summary[timer] = {"count": len(ms), "median_ms": statistics.median(ms) if ms else None,
                          "p99_ms": _pct(ms, 0.99), "statuses": timed[timer]["statuses"]}
    return summary


def _setup(tmp: Path, port: int) -> tuple[bench.Server, int]:
    env = bench._real_env(tmp, port)
    env["EVENTS_RATE_LIMITS"] = "on"  # as in production
    bench._cli(env, "migrate")
    bench._cli(env, "staff", "create", bench.STAFF_EMAIL, "--name", "Bench", stdin=bench.STAFF_PASSWORD + "\n")
    token = bench._cli(env, "staff", "token", bench.STAFF_EMAIL, "--label", "bench").splitlines()[-1].strip()
    server = bench.Server("events-app serve", [*bench._events_cli(), "serve", "--host", bench.HOST, "--port", str(port)],
                          env, tmp / "server.log", None)
    base = f"http://{bench.HOST}:{port}"
    bench.wait_ready(server, "GET", base + "/health", None, 200, 60)
    starts = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=30)
    status, event = bench.http("POST", base + "/api/v1/events/", {
        "title": "Bench abuse", "starts_at": starts.isoformat(), "ends_at": (starts + timedelta(hours=1)).isoformat(),
        "timezone": "UTC", "capacity": None}, token=token)
    if status != 201:
        raise bench.BenchError(f"creating the event answered {status}: {event}")
    status, _ = bench.http("POST", f"{base}/api/v1/events/{event['id']}/publish", token=token)
    if status != 200:
        raise bench.BenchError(f"publishing the event answered {status}")
    return server, event["id"]


async def _staff_signs_in(host: str, port: int) -> int:
    conn = Conn(host, port)
    _, headers, html = await conn.request("GET", "/staff/login", {"X-Forwarded-For": "192.0.2.10"})
    body = (f"csrf_token={_login_form(html)}&email={bench.STAFF_EMAIL.replace('@', '%40')}"
            f"&password={bench.STAFF_PASSWORD}").encode()
    status, _, _ = await conn.request("POST", "/staff/login", {
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": _cookie(headers),
        "X-Forwarded-For": "192.0.2.10"}, body)
    await conn.close()
    return status


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--phase-seconds", type=float, default=20.0)
    p.add_argument("--abusers", type=int, default=8)
    p.add_argument("--json", action="store_true", help="also print the BENCH_ROWS line")
    args = p.parse_args(argv)
    if not 1 <= args.abusers <= 64 or not 1 <= args.phase_seconds <= 120:
        p.error("--abusers must be 1..64 and --phase-seconds 1..120")
    port = bench.free_port()
    host = bench.HOST
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-abuse-") as tmp_name:
        server, event_id = _setup(Path(tmp_name), port)
        try:
            phases = [
                _phase(args, host, port, event_id, "idle-1", None),
                _phase(args, host, port, event_id, "abuse-one", "one"),
                _phase(args, host, port, event_id, "idle-2", None),
                _phase(args, host, port, event_id, "abuse-many", "many"),
            ]
            signed_in = asyncio.run(_staff_signs_in(host, port))
            if not server.alive():
                problems.append(f"the server died:\n{server.log_tail()}")
        finally:
            server.stop()
    for ph in phases:
        for timer, expect in (("health", 200), ("registration", 201)):
            bad = {s: n for s, n in ph[timer]["statuses"].items() if s != expect}
            if bad:
                problems.append(f"{ph['phase']} {timer}: answers other than {expect}: {bad}")
        if ph["abusers"]:
            odd = {s: n for s, n in ph["abusers"]["answers"].items() if s not in (401, 429, 503)}
            if odd:
                problems.append(f"{ph['phase']}: abusers got {odd}")
    if signed_in != 303:
        problems.append(f"the staff member could not sign in after the abuse ({signed_in})")

    by_name = {ph["phase"]: ph for ph in phases}
    rows, lines = [], []
    print(f"Sign-in abuse: {args.abusers} abusers, {args.phase_seconds:g} s per phase, nproc {os.cpu_count()}, "
          f"{rowfmt.cpu_model()}")
    print(f"{'phase':<11} {'health p50':>10} {'p99':>8} {'reg p50':>9} {'p99':>8}  abusers")
    for ph in phases:
        ab = ph["abusers"]
        note = ""
        if ab:
            total = sum(ab["answers"].values())
            note = f"{total / ab['seconds']:.0f} attempts/s, answers {dict(sorted(ab['answers'].items()))}"
        print(f"{ph['phase']:<11} {ph['health']['median_ms']:>8.2f}ms {ph['health']['p99_ms']:>6.1f}ms "
              f"{ph['registration']['median_ms']:>7.2f}ms {ph['registration']['p99_ms']:>6.1f}ms  {note}")
    for abuse, idle, label, target in (("abuse-one", "idle-1", "one client address", True),
                                       ("abuse-many", "idle-2", "a new client address per attempt", False)):
        for timer in ("health", "registration"):
            value, base = by_name[abuse][timer]["median_ms"], by_name[idle][timer]["median_ms"]
            ratio = value / base if base else None
            met = (ratio is not None and ratio <= TARGET_RATIO) if target else None
            name = f"{'GET /health' if timer == 'health' else 'registration POST'} median under sign-in abuse, {label} (ms)"
            rows.append(rowfmt.row(name, value, base, "idle, same run", f"<= {TARGET_RATIO:g}x" if target else "",
                                   met, unit="ms", ok=not problems,
                                   note=f"p99 {by_name[abuse][timer]['p99_ms']:.1f} ms vs idle {by_name[idle][timer]['p99_ms']:.1f} ms"))
            lines.append(f"  {name}: {value:.2f} vs idle {base:.2f} -> {ratio:.2f}x"
                         + (f" (target <= {TARGET_RATIO:g}x: {'met' if met else 'MISSED'})" if target else ""))
    print("\n".join(lines))
    if problems:
        print("PROBLEMS:\n  " + "\n  ".join(problems))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"phases": phases, "problems": problems, "rows": rows}, indent=2) + "\n")
    if args.json:
        rowfmt.emit(rows)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
