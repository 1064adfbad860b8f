"""Registration on PostgreSQL over HTTP against the raw asyncpg floor, measured in one run.

    .venv/bin/python bench/registration_pg.py [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]
        [--duration 10] [--connections 64] [--rounds 2] [--fresh] [--json]

Targets, alternated round by round, each on a fresh throwaway database (migrated with
`events-app migrate`, one published event with a capacity of 1,000,000, never reached):
  raw-asyncpg   bench/bare_app.py --pg: a bare Litestar route running the one statement that
                claims the seat and writes the registration and its outbox row, on a raw asyncpg
                pool (min 2, max 20, like the app's); no validation, no event check.
  registration  `events-app serve --no-worker`: POST /api/v1/events/{id}/registrations. The
                registrations that arrive together take their seats in one statement and one
                commit (domain/seats.py GroupClaims), where the raw statement pays one commit,
                under the event row's lock, per registration.
wrk, register.lua, pinning, warm-up and percentiles as in bench/registration.py (server on CPU 0,
wrk on CPU 1; PostgreSQL's own processes are not pinned and serve both targets alike).

The database is analysed after the warm-up (both targets), so that both run on plans made from
statistics, as a database does after autovacuum's first minute. Before that the planner may find
an address by the event's other indexes and read all its registrations per statement: the raw
statement then slows with every row (about 300/s instead of 1,300 here), which flattered the
ratio in every run before 2026-12-01 (the app now has the table analysed itself, see
domain/seats.py GroupClaims). `--fresh` skips the ANALYZE, to see that.

After each run the database is checked: registrations == 201 answers (plus at most one request
per connection finished after wrk stopped), outbox rows == registrations, seats taken ==
registrations, no non-2xx answers. Exit status 0 when the run worked, 1 when it broke, 2
without wrk or PostgreSQL. `--json` prints one `BENCH_ROWS [...]` line (bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import registration as bench  # noqa: E402
import rows as rowfmt  # noqa: E402

TARGET_RATIO = 3.0  # issue 15, must show 3: >= 3x the raw single-statement asyncpg baseline
CAPACITY = 1_000_000
RESULTS = HERE / "results" / "registration_pg.json"


async def _admin(url: str, *statements: str):
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        out = None
        for statement in statements:
            out = await conn.fetch(statement)
        return out
    finally:
        await conn.close()


@contextmanager
def throwaway_database(admin_url: str):
    """A new, empty PostgreSQL database; dropped on exit."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    parts = urlsplit(admin_url)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))
    finally:
        asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def pg_counts(url: str, event_id: int) -> dict:
    rows = asyncio.run(_admin(url, f"""
        SELECT (SELECT COUNT(*) FROM registration WHERE event = {event_id}) AS registrations,
               (SELECT COUNT(*) FROM registration WHERE event = {event_id} AND status = 'registered') AS registered,
               (SELECT COUNT(DISTINCT email) FROM registration WHERE event = {event_id}) AS distinct_emails,
               (SELECT COUNT(*) FROM outbox WHERE kind = 'registration_confirmed') AS outbox,
               (SELECT COUNT(*) FROM outbox o JOIN registration r
                  ON r.id = (o.payload::json ->> 'registration_id')::int
                 WHERE o.kind = 'registration_confirmed' AND r.event = {event_id}
                   AND o.recipient = r.email) AS outbox_matching,
               (SELECT taken FROM event WHERE id = {event_id}) AS taken"""))
    return dict(rows[0])


def run_target(args, rnd: int, target: str) -> bench.RunResult:
    with throwaway_database(args.admin_url) as url, bench.real_server(
        args, f"{target} round {rnd}", CAPACITY, database_url=url
    ) as srv:
        server, path = srv["server"], srv["path"]
        bare = None
        if target == "raw-asyncpg":
            # The event exists now; the app steps aside and the raw route serves the same path.
            server.stop()
            port = bench.free_port()
            bare = bench.Server(
                "bare app (asyncpg)",
                [sys.executable, str(HERE / "bare_app.py"), "--host", bench.HOST, "--port", str(port),
                 "--pg", url, "--event-id", str(srv["event_id"])],
                dict(os.environ), Path(tempfile.mkdtemp(prefix="bench-bare-pg-")) / "server.log", args.server_cpus,
            )
            base = f"http://{bench.HOST}:{port}"
            bench.wait_ready(bare, "GET", base + "/nothing-here", None, 404, args.ready_timeout)
            server = bare
        else:
            base = srv["base"]
        try:
            loads = []
            if args.warmup:
                loads.append(bench.run_wrk(args, base, path, f"r{rnd}-{target}-w", args.warmup, args.wrk_cpus, server.pid))
            if not args.fresh:
                # Planner statistics for both targets, as any database has after its first minute.
                asyncio.run(_admin(url, "ANALYZE"))
            measured = bench.run_wrk(args, base, path, f"r{rnd}-{target}-m", args.duration, args.wrk_cpus, server.pid)
            loads.append(measured)
            if not server.alive():
                raise bench.BenchError(f"{server.name} died during the run:\n{server.log_tail()}")
            time.sleep(0.5)
        finally:
            server.stop()
        counts = pg_counts(url, srv["event_id"])
    created = sum(run["statuses"].get(201, 0) for run in loads)
    unanswered = counts["registrations"] - created
    problems = []
    for i, run in enumerate(loads):
        problems += bench.check_load(run, f"{target} {'warm-up' if i < len(loads) - 1 else 'measured'}")
    if not 0 <= unanswered <= args.connections * len(loads):
        problems.append(f"{target}: {counts['registrations']} rows for {created} answers 201")
    if not counts["outbox"] == counts["registrations"] == counts["outbox_matching"]:
        problems.append(f"{target}: outbox rows differ from registrations: {counts}")
    if not counts["registered"] == counts["registrations"] == counts["taken"]:
        problems.append(f"{target}: seats differ from registrations: {counts}")
    return bench._result(target, rnd, measured, problems, {**counts, "answered_201": created})


def parse_args(argv):
    p = argparse.ArgumentParser(description="Registration on PostgreSQL vs a raw asyncpg statement (wrk, loopback).")
    p.add_argument("--admin-url", default=os.environ.get("PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--first-delay-ms", type=int, default=250)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--ready-timeout", type=float, default=30.0)
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--fresh", action="store_true",
                   help="no ANALYZE after the warm-up: the raw statement keeps the plans of an empty table")
    p.add_argument("--json", action="store_true", help="print one BENCH_ROWS line for bench/run_all.py")
    p.add_argument("--output", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    cpus = sorted(os.sched_getaffinity(0))
    if args.no_pin or len(cpus) < 2:
        args.server_cpus = args.wrk_cpus = None
    else:
        args.server_cpus, args.wrk_cpus = {cpus[0]}, set(cpus[1:])
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    args.wrk = shutil.which("wrk")
    if args.wrk is None:
        print("bench/registration_pg.py needs wrk: apt-get install -y wrk", file=sys.stderr)
        return 2
    try:
        asyncio.run(_admin(args.admin_url, "SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means no server to measure
        print(f"bench/registration_pg.py: PostgreSQL at {args.admin_url} is not usable: {exc}", file=sys.stderr)
        return 2
    targets = ("raw-asyncpg", "registration")
    results: list[bench.RunResult] = []
    try:
        for rnd in range(1, args.rounds + 1):
            for target in targets:
                print(f"round {rnd}/{args.rounds}: {target} ...", file=sys.stderr, flush=True)
                res = run_target(args, rnd, target)
                print(f"  {res.rps:,.0f} req/s, p50 {res.p50_ms:.1f} ms, p99 {res.p99_ms:.1f} ms, "
                      f"server {res.cpu['server_us_per_request']} us/req"
                      + (f"  PROBLEMS: {res.problems}" if res.problems else ""), file=sys.stderr, flush=True)
                results.append(res)
    except bench.BenchError as exc:
        print(f"bench/registration_pg.py: the run broke: {exc}", file=sys.stderr)
        return 1
    summary = {}
    for target in targets:
        runs = [r for r in results if r.target == target]
        summary[target] = {
            "rps_median": statistics.median(r.rps for r in runs),
            "rps_rounds": [round(r.rps) for r in runs],
            "p50_ms_median": statistics.median(r.p50_ms for r in runs),
            "p99_ms_median": statistics.median(r.p99_ms for r in runs),
            "server_us_per_request_median": statistics.median(r.cpu["server_us_per_request"] or 0 for r in runs),
        }
    raw, real = summary["raw-asyncpg"], summary["registration"]
    ratio = real["rps_median"] / raw["rps_median"] if raw["rps_median"] else 0.0
    print(f"PostgreSQL registration vs raw asyncpg statement, wrk -t{args.threads} -c{args.connections} "
          f"-d{args.duration:g}s, {args.rounds} round(s), medians")
    print(f"{'target':<14}{'req/s':>9}{'rounds':>18}{'p50 ms':>8}{'p99 ms':>8}{'srv us/req':>11}")
    for target in targets:
        s = summary[target]
        print(f"{target:<14}{s['rps_median']:>9,.0f}{' / '.join(map(str, s['rps_rounds'])):>18}"
              f"{s['p50_ms_median']:>8.1f}{s['p99_ms_median']:>8.1f}{s['server_us_per_request_median']:>11.0f}")
    print(f"ratio {ratio:.2f} (target >= {TARGET_RATIO})")
    problems = [p for r in results for p in r.problems]
    for p in problems:
        print(f"problem: {p}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"summary": summary, "ratio": ratio, "runs": [r.__dict__ for r in results]},
                                      indent=2, default=str) + "\n")
    if args.json:
        rowfmt.emit([
            rowfmt.row("registration POST, PostgreSQL, 64 clients (req/s)", real["rps_median"],
                       raw["rps_median"], "raw asyncpg statement over bare Litestar",
                       f">= {TARGET_RATIO:g}x", ratio >= TARGET_RATIO, ok=not problems),
        ])
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
