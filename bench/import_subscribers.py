"""Subscriber import throughput against a raw-driver baseline, measured in one run.

    .venv/bin/python bench/import_subscribers.py [--rows 100000] [--rounds 3] [--batch-size 1000]
        [--topic bulletin ...] [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

One CSV of --rows generated rows (`email,name`, varied addresses) is written once. Each round runs,
each on a fresh database migrated by `events-app migrate`:

  baseline     raw sqlite3 on a connection configured like events_app/db.py (WAL,
               synchronous=NORMAL): read the same CSV with the csv module, lower-case the
               addresses, hash them and make a salt, then in ONE transaction `executemany` the
               subscriber rows and add every topic with one INSERT ... SELECT. No validation, no
               check of existing rows, no batches: the floor for these rows in this schema.
  batched      (SQLite) the baseline with a transaction per --batch-size rows, as the import
               commits: every commit rewrites the index pages its random email hashes touched,
               so this is the floor of batching itself.
  import       the command's own code path (`events_app.cli.main(["subscribers", "import", ...])`)
               in a fresh Python process whose modules are already imported, timed around
               main(): validation, a transaction per --batch-size rows, the SELECT of known
               hashes, multi-row INSERT ... ON CONFLICT DO NOTHING, progress callbacks (no bar:
               stderr is not a terminal).
  reimport     the same command again on the same database: every row is known, nothing may
               change (checked by a digest of both tables).

With --postgres ADMIN_URL the same three run on a throwaway PostgreSQL database per round,
the baseline being asyncpg `executemany` in one transaction.

Reported: rows/s per target (median over rounds), import/baseline and import/batched ratios; checks that every row
arrived once, confirmed, with every topic, and that the re-import changed nothing. The machine is
shared: the 1-minute load average before each run is recorded as a noise indicator.
Writes bench/results/import.json. Exit status 0 when the run worked, 1 when it broke.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import json
import os
import platform
import random
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "import.json"

FIRST = ["ada", "grace", "alan", "edsger", "barbara", "donald", "frances", "john", "margaret", "ken",
         "dennis", "radia", "leslie", "tony", "niklaus", "shafi", "silvio", "whitfield", "adi", "ron"]
LAST = ["lovelace", "hopper", "turing", "dijkstra", "liskov", "knuth", "allen", "backus", "hamilton",
        "thompson", "ritchie", "perlman", "lamport", "hoare", "wirth", "goldwasser", "micali", "diffie"]
DOMAINS = ["example.org", "example.com", "uni.example.edu", "mail.example.net", "example.ca"]

SUBSCRIBER_SQL = (
    "INSERT INTO subscriber (email, email_hash, name, status, token_salt, source, created_at, confirmed_at) "
    "VALUES ({}, {}, {}, 'confirmed', {}, 'import', {}, {})"
)


class BenchError(Exception):
    """The run broke: a command failed or a check did not hold."""


def generate(path: Path, rows: int, seed: int = 20221129) -> None:
    rnd = random.Random(seed)
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["email", "name"])
        for i in range(rows):
            first, last = rnd.choice(FIRST), rnd.choice(LAST)
            writer.writerow([f"{first}.{last}.{i:x}@{rnd.choice(DOMAINS)}", f"{first.title()} {last.title()}"])


def _events_cli() -> list[str]:
    script = Path(sys.executable).parent / "events-app"
    return [str(script)] if script.exists() else [sys.executable, "-m", "events_app.cli"]


def _env(database_url: str, tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTS_")}
    env.update(EVENTS_DATABASE_URL=database_url, EVENTS_VAR_DIR=str(tmp), EVENTS_SECRET_KEY="bench-secret-key-0123456789",
               EVENTS_LOG_LEVEL="warning")
    return env


def migrate(env: dict) -> None:
    out = subprocess.run([*_events_cli(), "migrate"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise BenchError(f"events-app migrate failed ({out.returncode}): {out.stderr.strip()}")


def run_import(env: dict, csv_path: Path, topics: list[str], batch_size: int, tmp: Path) -> dict:
    """The command in a fresh process, timed inside it around cli.main()."""
    timing = tmp / f"timing-{uuid.uuid4().hex[:8]}.json"
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", str(timing), str(batch_size), str(csv_path), *topics]
    started = time.perf_counter()
    out = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - started
    if out.returncode != 0 or not timing.exists():
        raise BenchError(f"import failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
    result = json.loads(timing.read_text())
    result["process_wall_s"] = wall
    result["summary"] = out.stdout.strip()
    return result


def child(argv: list[str]) -> int:
    """Runs in the import process: warm the modules, then time the command's main()."""
    timing, batch_size, csv_path, *topics = argv
    sys.path.insert(0, str(ROOT))
    import rich.progress  # noqa: F401 - imported before the clock starts, like the modules below

    from events_app import cli
    from events_app.domain import importer

    importer.BATCH_SIZE = int(batch_size)
    args = ["subscribers", "import", csv_path] + [x for t in topics for x in ("--topic", t)]
    started = time.perf_counter()
    status = cli.main(args)
    elapsed = time.perf_counter() - started
    Path(timing).write_text(json.dumps({"elapsed_s": elapsed, "exit_status": status}))
    return status


# ---------------------------------------------------------------------------------------------
# baselines


def _prepared_rows(csv_path: Path, moment) -> list[tuple]:
    rows = []
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        for email, name in reader:
            email = email.strip().lower()
            rows.append((email, hashlib.sha256(email.encode()).hexdigest(), name.strip(), secrets.token_hex(16),
                         moment, moment))
    return rows


def sqlite_baseline(db_path: Path, csv_path: Path, topic_ids: list[int], batch_size: int | None = None) -> dict:
    """One transaction (batch_size None), or a transaction per batch_size rows: the floor of the
    batching the import does so that a live server's writers wait at most one batch."""
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=10)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    try:
        started = time.perf_counter()
        moment = str(datetime.now(timezone.utc))  # the text Piccolo's adapter stores
        rows = _prepared_rows(csv_path, moment)
        prepared = time.perf_counter()
        step = batch_size or len(rows)
        last_id = 0
        for start in range(0, len(rows), step):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(SUBSCRIBER_SQL.replace("{}", "?"), rows[start:start + step])
            for topic_id in topic_ids:
                conn.execute("INSERT INTO subscription (subscriber, topic, created_at) "
                             "SELECT id, ?, ? FROM subscriber WHERE id > ?", (topic_id, moment, last_id))
            last_id = conn.execute("SELECT MAX(id) FROM subscriber").fetchone()[0]
            conn.execute("COMMIT")
        done = time.perf_counter()
    finally:
        conn.close()
    return {"elapsed_s": done - started, "insert_s": done - prepared, "read_s": prepared - started}


async def postgres_baseline(url: str, csv_path: Path, topic_ids: list[int]) -> dict:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        rows = _prepared_rows(csv_path, datetime.now(timezone.utc))
        prepared = time.perf_counter()
        sql = SUBSCRIBER_SQL
        for i in range(1, 7):
            sql = sql.replace("{}", f"${i}", 1)
        async with conn.transaction():
            await conn.executemany(sql, rows)
            for topic_id in topic_ids:
                await conn.execute(
                    "INSERT INTO subscription (subscriber, topic, created_at) SELECT id, $1, $2 FROM subscriber",
                    topic_id, rows[0][4],
                )
        done = time.perf_counter()
    finally:
        await conn.close()
    return {"elapsed_s": done - started, "insert_s": done - prepared, "read_s": prepared - started}


# ---------------------------------------------------------------------------------------------
# checks


def _digest(rows) -> str:
    h = hashlib.sha256()
    for row in rows:
        h.update(repr(tuple(row)).encode())
    return h.hexdigest()


def sqlite_state(db_path: Path) -> dict:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "subscribers": one("SELECT COUNT(*) FROM subscriber"),
            "distinct_hashes": one("SELECT COUNT(DISTINCT email_hash) FROM subscriber"),
            "confirmed_imported": one("SELECT COUNT(*) FROM subscriber WHERE status = 'confirmed' AND source = 'import' "
                                      "AND confirmed_at IS NOT NULL"),
            "subscriptions": one("SELECT COUNT(*) FROM subscription"),
            "digest": _digest(conn.execute("SELECT * FROM subscriber ORDER BY id").fetchall()
                              + conn.execute("SELECT * FROM subscription ORDER BY id").fetchall()),
        }
    finally:
        conn.close()


async def postgres_state(url: str) -> dict:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        one = conn.fetchval
        return {
            "subscribers": await one("SELECT COUNT(*) FROM subscriber"),
            "distinct_hashes": await one("SELECT COUNT(DISTINCT email_hash) FROM subscriber"),
            "confirmed_imported": await one("SELECT COUNT(*) FROM subscriber WHERE status = 'confirmed' "
                                            "AND source = 'import' AND confirmed_at IS NOT NULL"),
            "subscriptions": await one("SELECT COUNT(*) FROM subscription"),
            "digest": _digest([tuple(r) for r in await conn.fetch("SELECT * FROM subscriber ORDER BY id")]
                              + [tuple(r) for r in await conn.fetch("SELECT * FROM subscription ORDER BY id")]),
            "next_subscriber_id": await one("SELECT last_value FROM subscriber_id_seq"),
        }
    finally:
        await conn.close()


def check(state: dict, rows: int, topics: int, label: str) -> list[str]:
    problems = []
    if not state["subscribers"] == state["distinct_hashes"] == state["confirmed_imported"] == rows:
        problems.append(f"{label}: expected {rows} confirmed imported subscribers, found {state}")
    if state["subscriptions"] != rows * topics:
        problems.append(f"{label}: expected {rows * topics} subscriptions, found {state['subscriptions']}")
    return problems


def topic_ids_sqlite(db_path: Path, slugs: list[str]) -> list[int]:
    conn = sqlite3.connect(db_path)
    try:
        found = dict(conn.execute("SELECT slug, id FROM topic").fetchall())
    finally:
        conn.close()
    return [found[s] for s in slugs]


async def topic_ids_postgres(url: str, slugs: list[str]) -> list[int]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        found = {r["slug"]: r["id"] for r in await conn.fetch("SELECT slug, id FROM topic")}
    finally:
        await conn.close()
    return [found[s] for s in slugs]


# ---------------------------------------------------------------------------------------------
# one round per engine


def load() -> float:
    return round(os.getloadavg()[0], 2)


def sqlite_round(args, csv_path: Path, tmp: Path, rnd: int) -> list[dict]:
    results = []
    base_db = tmp / f"baseline-{rnd}.sqlite3"
    migrate(_env(f"sqlite:///{base_db}", tmp))
    before = load()
    base = sqlite_baseline(base_db, csv_path, topic_ids_sqlite(base_db, args.topics))
    state = sqlite_state(base_db)
    results.append({"engine": "sqlite", "target": "baseline", "round": rnd, "load_before": before, **base,
                    "problems": check(state, args.rows, len(args.topics), f"r{rnd} sqlite baseline")})
    batched_db = tmp / f"batched-{rnd}.sqlite3"
    migrate(_env(f"sqlite:///{batched_db}", tmp))
    before = load()
    base = sqlite_baseline(batched_db, csv_path, topic_ids_sqlite(batched_db, args.topics), args.batch_size)
    state = sqlite_state(batched_db)
    results.append({"engine": "sqlite", "target": "batched", "round": rnd, "load_before": before, **base,
                    "problems": check(state, args.rows, len(args.topics), f"r{rnd} sqlite batched")})
    import_db = tmp / f"import-{rnd}.sqlite3"
    env = _env(f"sqlite:///{import_db}", tmp)
    migrate(env)
    for target in ("import", "reimport"):
        before = load()
        res = run_import(env, csv_path, args.topics, args.batch_size, tmp)
        after = sqlite_state(import_db)
        problems = check(after, args.rows, len(args.topics), f"r{rnd} sqlite {target}")
        if target == "reimport" and after["digest"] != first_digest:
            problems.append(f"r{rnd} sqlite reimport: the tables changed")
        first_digest = after["digest"]
        results.append({"engine": "sqlite", "target": target, "round": rnd, "load_before": before, **res,
                        "problems": problems})
    for path in tmp.glob("*.sqlite3*"):
        path.unlink()
    return results


def _pg_url(admin_url: str, name: str) -> str:
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))


async def _pg_admin(admin_url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def postgres_round(args, csv_path: Path, tmp: Path, rnd: int) -> list[dict]:
    results = []
    for target in ("baseline", "import"):
        name = f"bench_import_{uuid.uuid4().hex[:10]}"
        asyncio.run(_pg_admin(args.postgres, f'CREATE DATABASE "{name}"'))
        url = _pg_url(args.postgres, name)
        try:
            env = _env(url, tmp)
            migrate(env)
            if target == "baseline":
                before = load()
                ids = asyncio.run(topic_ids_postgres(url, args.topics))
                base = asyncio.run(postgres_baseline(url, csv_path, ids))
                state = asyncio.run(postgres_state(url))
                results.append({"engine": "postgres", "target": "baseline", "round": rnd, "load_before": before, **base,
                                "problems": check(state, args.rows, len(args.topics), f"r{rnd} postgres baseline")})
                continue
            first = None
            for run in ("import", "reimport"):
                before = load()
                res = run_import(env, csv_path, args.topics, args.batch_size, tmp)
                state = asyncio.run(postgres_state(url))
                problems = check(state, args.rows, len(args.topics), f"r{rnd} postgres {run}")
                if run == "reimport" and (state["digest"], state["next_subscriber_id"]) != first:
                    problems.append(f"r{rnd} postgres reimport: the tables or the id sequence changed")
                first = (state["digest"], state["next_subscriber_id"])
                results.append({"engine": "postgres", "target": run, "round": rnd, "load_before": before, **res,
                                "problems": problems})
        finally:
            asyncio.run(_pg_admin(args.postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return results


# ---------------------------------------------------------------------------------------------


def summarise(results: list[dict], rows: int) -> dict:
    summary: dict = {}
    for engine in dict.fromkeys(r["engine"] for r in results):
        per = {}
        for target in ("baseline", "batched", "import", "reimport"):
            runs = [r for r in results if r["engine"] == engine and r["target"] == target]
            if not runs:
                continue
            rates = [rows / r["elapsed_s"] for r in runs]
            per[target] = {"rows_per_s_median": round(statistics.median(rates)), "rows_per_s_rounds": [round(x) for x in rates],
                           "seconds_median": round(statistics.median(r["elapsed_s"] for r in runs), 3)}
            if target in ("baseline", "batched"):
                per[target]["insert_only_s_median"] = round(statistics.median(r["insert_s"] for r in runs), 3)
        for target in ("batched", "import", "reimport"):
            if target in per and "baseline" in per:
                per[target]["ratio_to_baseline"] = round(
                    per[target]["rows_per_s_median"] / per["baseline"]["rows_per_s_median"], 3)
        if "batched" in per and "import" in per:
            per["import"]["ratio_to_batched"] = round(
                per["import"]["rows_per_s_median"] / per["batched"]["rows_per_s_median"], 3)
        summary[engine] = per
    return summary


def print_report(summary: dict, results: list[dict], args) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=110)
    table = Table(title=f"Import of {args.rows:,} rows, batches of {args.batch_size:,}, topics {', '.join(args.topics)} "
                        f"(medians of {args.rounds} rounds)")
    for col in ("engine", "target", "rows/s", "rounds", "seconds", "vs baseline", "vs batched"):
        table.add_column(col, justify="left" if col in ("engine", "target") else "right")
    for engine, per in summary.items():
        for target, s in per.items():
            table.add_row(engine, target, f"{s['rows_per_s_median']:,}", " / ".join(f"{x:,}" for x in s["rows_per_s_rounds"]),
                          f"{s['seconds_median']:.2f}", f"{s['ratio_to_baseline']:.2f}" if "ratio_to_baseline" in s else "-",
                          f"{s['ratio_to_batched']:.2f}" if "ratio_to_batched" in s else "-")
    console.print(table)
    console.print("baseline: read + hash + one executemany transaction, no validation; batched: the same with a "
                  "transaction per batch (SQLite only); import: the command's code path, timed inside its process; "
                  "reimport: the same file again (nothing may change). Ratios are rows/s over rows/s.")
    for r in results:
        for p in r["problems"]:
            console.print(f"[red]problem:[/] {p}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Subscriber import rows/s vs a raw executemany baseline.")
    p.add_argument("--rows", type=int, default=100_000, help="rows in the generated CSV (default 100,000)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of baseline, import, reimport (default 3)")
    p.add_argument("--batch-size", type=int, default=None, help="rows per transaction (default: the importer's)")
    p.add_argument("--topic", action="append", dest="topics", help="topic slug, repeatable (default bulletin)")
    p.add_argument("--postgres", metavar="ADMIN_URL", help="also run on throwaway PostgreSQL databases made here")
    p.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    p.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS.relative_to(ROOT)})")
    p.add_argument("--json", action="store_true",
                   help="print one BENCH_ROWS line for bench/run_all.py (no target: figures for the record)")
    args = p.parse_args(argv)
    if not 1 <= args.rows <= 10_000_000 or not 1 <= args.rounds <= 20:
        p.error("need 1 <= rows <= 10,000,000 and 1 <= rounds <= 20")
    if args.no_sqlite and not args.postgres:
        p.error("--no-sqlite needs --postgres")
    args.topics = list(dict.fromkeys(args.topics or ["bulletin"]))
    if args.batch_size is None:
        sys.path.insert(0, str(ROOT))
        from events_app.domain.importer import BATCH_SIZE

        args.batch_size = BATCH_SIZE
    if not 1 <= args.batch_size <= 100_000:
        p.error("--batch-size must be in [1, 100000]")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1:])
    args = parse_args(argv)
    results: list[dict] = []
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp_name:
        tmp = Path(tmp_name)
        csv_path = tmp / "subscribers.csv"
        generate(csv_path, args.rows)
        try:
            for rnd in range(1, args.rounds + 1):
                if not args.no_sqlite:
                    print(f"round {rnd}/{args.rounds}: sqlite ...", file=sys.stderr, flush=True)
                    results += sqlite_round(args, csv_path, tmp, rnd)
                if args.postgres:
                    print(f"round {rnd}/{args.rounds}: postgres ...", file=sys.stderr, flush=True)
                    results += postgres_round(args, csv_path, tmp, rnd)
                for r in [r for r in results if r["round"] == rnd]:
                    print(f"  {r['engine']:8s} {r['target']:8s} {args.rows / r['elapsed_s']:>9,.0f} rows/s "
                          f"({r['elapsed_s']:.2f} s, load {r['load_before']})", file=sys.stderr, flush=True)
        except BenchError as exc:
            print(f"bench/import_subscribers.py: the run broke: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
    summary = summarise(results, args.rows)
    print_report(summary, results, args)
    problems = [p for r in results for p in r["problems"]]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    out = {
        "benchmark": "import",
        "started_at": datetime.fromtimestamp(started, timezone.utc).isoformat(),
        "elapsed_s": round(time.time() - started, 1),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
                    "kernel": platform.release(), "git_commit": commit},
        "settings": {"rows": args.rows, "rounds": args.rounds, "batch_size": args.batch_size, "topics": args.topics,
                     "postgres": bool(args.postgres)},
        "summary": summary,
        "runs": results,
        "problems": problems,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"Results written to {args.output}")
    if args.json:
        import rows as rowfmt

        out_rows = []
        for engine, per in summary.items():
            if "import" in per and "baseline" in per:
                out_rows.append(rowfmt.row(
                    f"subscribers import, {engine}, {args.rows:,} rows (rows/s)", per["import"]["rows_per_s_median"],
                    per["baseline"]["rows_per_s_median"], "raw executemany, one transaction", "none (for the record)",
                    None, unit="rows/s", ok=not problems,
                    note=(f"{per['import']['ratio_to_batched']:.2f} of a transaction per batch"
                          if "ratio_to_batched" in per["import"] else ""),
                ))
        rowfmt.emit(out_rows)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
