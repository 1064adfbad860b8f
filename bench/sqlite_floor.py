"""The raw-sqlite3 floor of one registration: the app's own SQL on the app's own schema, no Piccolo,
no HTTP, timed statement by statement.

    .venv/bin/python bench/sqlite_floor.py [--count 20000] [--variants default,group-commit-32]

A fresh database is migrated with `events-app migrate`; one connection configured like
events_app/db.py (WAL, synchronous=NORMAL), its thread pinned to one CPU, runs per registration
what the request runs: the event read, BEGIN IMMEDIATE, the existing-row check, the seat claim,
the registration insert, the outbox insert and COMMIT (the answer is built from what was
written, no re-read). The SQL texts are imported from events_app (registrations.CLAIM_SQL, INSERT_SQL, EXISTING_SQL, outbox.INSERT_SQL), so the
floor follows the code.

Variants, each on a fresh database:
  default             wal_autocheckpoint=1000 (SQLite's default, what the app runs): now and then
                      a COMMIT also copies the WAL back into the database
  bg-ckpt-passive     wal_autocheckpoint=0, and a second thread with its own connection runs
                      `PRAGMA wal_checkpoint(PASSIVE)` every 0.25 s on the other CPU (its time is
                      not in the figures). Under continuous writes the WAL never restarts and grows
  bg-ckpt-restart     the same with RESTART checkpoints: the WAL stays bounded, and the writer
                      waits for them in BEGIN IMMEDIATE instead
  group-commit-32     default, but 32 registrations share one BEGIN IMMEDIATE ... COMMIT (what a
                      request-batching writer would do under load); BEGIN and COMMIT are shared
                      out over the 32
  with-old-indexes    default plus the two indexes dropped in ef26e15 (registration.event,
                      outbox.status), to show what an index on these tables costs per commit
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import registration as bench  # noqa: E402

VARIANTS = {
    "default": {},
    "bg-ckpt-passive": {"checkpoint": "PASSIVE"},
    "bg-ckpt-restart": {"checkpoint": "RESTART"},
    "group-commit-32": {"batch": 32},
    "with-old-indexes": {"create": (
        'CREATE INDEX IF NOT EXISTS registration_event ON registration ("event")',
        'CREATE INDEX IF NOT EXISTS outbox_status ON outbox ("status")',
    )},
}

MAIN_CPU = 0
STEPS = ("event read", "BEGIN IMMEDIATE", "existing check", "seat claim", "insert registration",
         "insert outbox", "COMMIT")


def qmarks(sql: str) -> str:
    return sql.replace("{}", "?")


def _checkpoint_loop(path: Path, mode: str, stop: threading.Event) -> None:
    others = set(os.sched_getaffinity(0)) - {MAIN_CPU}
    if others:  # the checkpoint runs beside the writer, as a thread of the server would
        os.sched_setaffinity(threading.get_native_id(), others)
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        while not stop.wait(0.25):
            conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
    finally:
        conn.close()


def run_variant(name: str, count: int) -> dict:
    from events_app.domain import outbox
    from events_app.domain import registrations as regs

    with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as tmp_name:
        tmp = Path(tmp_name)
        env = bench._real_env(tmp, 0)
        bench._cli(env, "migrate")
        conn = sqlite3.connect(tmp / "events.sqlite3", isolation_level=None, timeout=10)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        options = VARIANTS[name]
        for statement in options.get("create", ()):
            conn.execute(statement)
        stop = threading.Event()
        checkpointer = None
        if options.get("checkpoint"):
            conn.execute("PRAGMA wal_autocheckpoint=0")
            checkpointer = threading.Thread(
                target=_checkpoint_loop, args=(tmp / "events.sqlite3", options["checkpoint"], stop)
            )
            checkpointer.start()
        batch = options.get("batch", 1)
        now = datetime.now(UTC)
        starts = (now + timedelta(days=30)).isoformat()
        event_id = conn.execute(
            "INSERT INTO event (slug, title, starts_at, ends_at, timezone, capacity, status) "
            "VALUES ('floor', 'Floor', ?, ?, 'UTC', NULL, 'published') RETURNING id",
            (starts, starts),
        ).fetchone()[0]
        claim, insert, existing = qmarks(regs.CLAIM_SQL), qmarks(regs.INSERT_SQL), qmarks(regs.EXISTING_SQL)
        enqueue = qmarks(outbox.INSERT_SQL)
        times = {step: [] for step in STEPS}
        clock = time.perf_counter
        def timed(step: str, sql: str, params=()) -> list:
            t = clock()
            rows = conn.execute(sql, params).fetchall()
            times[step].append(clock() - t)
            return rows

        pending_commit = []  # registrations waiting for the shared COMMIT of their batch
        try:
            for i in range(count):
                email = f"floor-{i}@bench.example.org"
                moment = datetime.now(UTC).isoformat()
                timed("event read", "SELECT * FROM event WHERE id = ?", (event_id,))
                if i % batch == 0:
                    t = clock()
                    conn.execute("BEGIN IMMEDIATE")
                    times["BEGIN IMMEDIATE"].extend([(clock() - t) / batch] * min(batch, count - i))
                timed("existing check", existing, (event_id, email))
                timed("seat claim", claim, (event_id,))
                reg_id = timed("insert registration", insert, (
                    event_id, email, "Floor Person", "{}", "registered", secrets.token_hex(16),
                    False, moment, moment, moment, f"{secrets.token_hex(16)}@floor",
                ))[0][0]
                timed("insert outbox", enqueue, (
                    "registration_confirmed", email, json.dumps({"registration_id": reg_id}), moment, moment,
                ))
                pending_commit.append(reg_id)
                if len(pending_commit) == batch or i == count - 1:
                    t = clock()
                    conn.execute("COMMIT")
                    share = (clock() - t) / len(pending_commit)
                    times["COMMIT"].extend([share] * len(pending_commit))
                    pending_commit.clear()
        finally:
            stop.set()
            if checkpointer is not None:
                checkpointer.join(timeout=30)
        wal = (tmp / "events.sqlite3-wal").stat().st_size if (tmp / "events.sqlite3-wal").exists() else 0
        conn.close()
    per_step = {
        step: {
            "mean_us": statistics.fmean(v) * 1e6,
            "p99_us": sorted(v)[int(len(v) * 0.99)] * 1e6,
            "max_us": max(v) * 1e6,
        }
        for step, v in times.items()
    }
    totals = [sum(times[step][i] for step in STEPS) for i in range(count)]
    return {
        "variant": name,
        "count": count,
        "steps": per_step,
        "total_mean_us": statistics.fmean(totals) * 1e6,
        "registrations_per_s": count / sum(totals),
        "wal_bytes_at_end": wal,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Raw sqlite3 cost of one registration's statements.")
    p.add_argument("--count", type=int, default=20000)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    opts = p.parse_args(argv)
    if not 100 <= opts.count <= 1_000_000:
        p.error("--count must be in [100, 1000000]")
    unknown = [v for v in opts.variants.split(",") if v.strip() and v.strip() not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}")
    global MAIN_CPU
    MAIN_CPU = min(os.sched_getaffinity(0))
    os.sched_setaffinity(threading.get_native_id(), {MAIN_CPU})  # this thread only: the writer
    try:
        results = [run_variant(v.strip(), opts.count) for v in opts.variants.split(",") if v.strip()]
    except bench.BenchError as exc:
        print(f"bench/sqlite_floor.py: the run broke: {exc}", file=sys.stderr)
        return 1
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    table = Table(title=f"Raw sqlite3, one connection, {opts.count:,} registrations per variant: mean us (p99 us)")
    table.add_column("step")
    for r in results:
        table.add_column(r["variant"], justify="right")
    for step in STEPS:
        table.add_row(step, *(f"{r['steps'][step]['mean_us']:.1f} ({r['steps'][step]['p99_us']:.0f})" for r in results))
    table.add_row("[bold]total per registration[/]", *(f"[bold]{r['total_mean_us']:.1f}[/]" for r in results))
    table.add_row("registrations/s (SQL only)", *(f"{r['registrations_per_s']:,.0f}" for r in results))
    table.add_row("BEGIN max us (per registration)", *(f"{r['steps']['BEGIN IMMEDIATE']['max_us']:,.0f}" for r in results))
    table.add_row("COMMIT max us (per registration)", *(f"{r['steps']['COMMIT']['max_us']:,.0f}" for r in results))
    table.add_row("WAL size at end", *(f"{r['wal_bytes_at_end'] / 2**20:,.1f} MiB" for r in results))
    console.print(table)
    out = HERE / "results" / "sqlite_floor.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"Results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
