"""Registration throughput over HTTP against a bare Litestar route, measured in one run.

    .venv/bin/python bench/registration.py [--duration 10] [--connections 64] [--rounds 2] [--json]

Targets, alternated round by round so that drift hits all of them alike:
  bare          bench/bare_app.py: one JSON POST route answering 201 {"ok": true}, no database;
                uvicorn with uvloop + httptools, one process, access log off.
  real-open     `events-app serve --no-worker` (--worker: `serve`, its mail worker beside it) on a fresh SQLite database (migrated, a staff
                token from the CLI, an event created and published through the staff API) with
                capacity null: POST /api/v1/events/{id}/registrations.
  real-capped   the same with a capacity (default 1,000,000, never reached) so the conditional
                seat claim compares `taken < capacity` on every request.
Every request carries a different email (bench/register.lua), so each one is a real registration:
a seat claim, a registration row and an outbox row in one BEGIN IMMEDIATE transaction.

Load: wrk (Debian package `wrk`) on 127.0.0.1 only, bounded by --duration; a --warmup run first,
then the measured run, with the same settings for every target (-t1 -c64 by default). On this
2-core machine the server is pinned to CPU 0 and wrk to CPU 1 (--no-pin to let the scheduler
decide). Each connection's first request is held back --first-delay-ms (250) so that all
connections are accepted before the load starts: a saturated uvicorn accepts late connections
slowly and their first requests would otherwise wait up to 1-2 s and make p99 a measure of the
connection ramp rather than of steady state (--first-delay-ms 0 shows it).

Besides req/s and wrk's latency percentiles, the server's CPU time per request is read from /proc
(the server process's own: with --worker, `serve` runs its mail worker as a child process, whose CPU
is reported apart as the worker's and is neither in the server's figure nor in "other load"):
the machine is shared (other people's tests run on it), and CPU per request moves much less with
such neighbours than req/s does. The CPU used by other processes during each run is reported.

After each real run the database is checked: registrations == 201 answers (plus at most one
request per connection that the server finished after wrk stopped listening), outbox rows ==
registrations, every registration holds a seat, no non-2xx answers and no socket errors.

Prints a table and writes bench/results/registration.json. See also bench/profile_registration.py
(where the time goes, with py-spy) and bench/sqlite_floor.py (the same SQL on raw sqlite3). Exit status: 0 when the run worked
(whether or not the targets were met), 1 when it broke (a server did not start, errors, a failed
check), 2 when wrk is missing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LUA = HERE / "register.lua"
RESULTS = HERE / "results" / "registration.json"
HOST = "127.0.0.1"  # loopback only
TARGET_RATIO = 0.50  # issue 15, must show 6: nothing already met gets worse (0.54x was met)
TARGET_P99_MS = 50.0
NOISE_CORES = 0.25  # other processes' CPU use during a measured run above which we warn
STAFF_EMAIL = "bench-staff@example.org"
STAFF_PASSWORD = "bench-password-0123456789"


class BenchError(Exception):
    """The run itself broke: a server did not start, wrk failed, a check failed."""


# ---------------------------------------------------------------------------------------------
# processes


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _pin(cpus: set[int] | None):
    if not cpus:
        return None

    def apply() -> None:
        os.sched_setaffinity(0, cpus)

    return apply


class Server:
    """A server subprocess whose output goes to a log file; always stopped by stop()."""

    def __init__(self, name: str, argv: list[str], env: dict, log_path: Path, cpus: set[int] | None):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, preexec_fn=_pin(cpus),
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def http(method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 5.0):
    """(status, parsed JSON or None) for one request; HTTP errors are answers, not exceptions."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_ready(server: Server, method: str, url: str, body: Any, expect: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not server.alive():
            raise BenchError(f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}")
        try:
            status, payload = http(method, url, body, timeout=1.0)
            if status == expect:
                return
            last = f"{status} {payload}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise BenchError(f"{server.name} not ready after {timeout:.0f}s ({last}):\n{server.log_tail()}")


# ---------------------------------------------------------------------------------------------
# wrk


def wrk_version(wrk: str) -> str:
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10)
    return (out.stdout + out.stderr).splitlines()[0].strip() if (out.stdout + out.stderr) else "?"


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _system_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    steal = fields[7] if len(fields) > 7 else 0
    return (sum(fields[:8]) - idle - steal) / CLK_TCK, steal / CLK_TCK


def _process_cpu(pid: int | None) -> float:
    """User + system CPU seconds of one process (0 if it is gone)."""
    if pid is None:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    rest = stat.rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def _descendants(pid: int | None) -> list[int]:
    """The processes started by `pid`, and theirs (a `serve` runs its mail worker as a child)."""
    if pid is None:
        return []
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _descendants_cpu(pids: list[int]) -> dict[int, float]:
    return {pid: _process_cpu(pid) for pid in pids}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    args, url: str, path: str, prefix: str, duration: float, cpus: set[int] | None, server_pid: int | None = None,
    lua: Path = LUA,
) -> dict:
    """One bounded wrk run; returns the counts from register.lua's done() plus wrk's summary and
    where the machine's CPU went meanwhile (server, wrk, everything else)."""
    # The run is lengthened by the first-request hold-back, so that the load lasts at least
    # `duration`; wrk takes whole seconds.
    wrk_duration = math.ceil(duration + args.first_delay_ms / 1000)
    argv = [
        args.wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{wrk_duration}s",
        f"--timeout={args.timeout:g}s", "--latency", "-s", str(lua), url, "--", path, prefix,
        str(args.first_delay_ms), str(-(-args.connections // args.threads)),
    ]
    # The server's CPU is its own process's only: a mail worker it runs as a child process
    # (`serve` without --no-worker, see --worker) is counted apart, as "worker".
    helpers0 = _descendants_cpu(_descendants(server_pid))
    server0, (busy0, steal0), wrk0, wall0 = _process_cpu(server_pid), _system_cpu(), _children_cpu(), time.monotonic()
    try:
        out = subprocess.run(
            argv, capture_output=True, text=True, timeout=wrk_duration + args.timeout + 30,
            preexec_fn=_pin(cpus),
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish: {' '.join(argv)}") from exc
    wall = time.monotonic() - wall0
    server_cpu = _process_cpu(server_pid) - server0
    # (A child that ended during the run is not counted: it then shows as "other load".)
    helpers1 = _descendants_cpu(_descendants(server_pid))
    worker_cpu = sum(max(used - helpers0.get(pid, 0.0), 0.0) for pid, used in helpers1.items())
    busy, steal = _system_cpu()
    wrk_cpu = _children_cpu() - wrk0
    if out.returncode != 0:
        raise BenchError(f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}")
    match = re.search(r"^BENCH_JSON (.*)$", out.stdout, re.M)
    if not match:
        raise BenchError(f"wrk printed no BENCH_JSON line:\n{out.stdout}\n{out.stderr}")
    result = json.loads(match.group(1))
    result["statuses"] = {int(k): v for k, v in result["statuses"].items()}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out.stdout)
    result["non_2xx_3xx"] = int(non2xx.group(1)) if non2xx else 0
    rps = re.search(r"Requests/sec:\s*([\d.]+)", out.stdout)
    result["wrk_requests_per_s"] = float(rps.group(1)) if rps else None
    # wrk divides by its whole run time; nothing is sent during the first-request hold-back.
    busy_s = result["duration_us"] / 1e6 - args.first_delay_ms / 1000
    result["requests_per_s"] = result["requests"] / busy_s if busy_s > 0 else 0.0
    result["wrk_output"] = out.stdout
    result["cpu"] = {
        "wall_s": round(wall, 3),
        "server_s": round(server_cpu, 3),
        "wrk_s": round(wrk_cpu, 3),
        # Everything else on the machine: other people's tests, the kernel's network work that is
        # not charged to our processes, py-spy. More than a few tenths of a core means noise.
        "others_cores": round(max(busy - busy0 - server_cpu - wrk_cpu - worker_cpu, 0.0) / wall, 3),
        "worker_s": round(worker_cpu, 3),
        "steal_cores": round((steal - steal0) / wall, 3),
        "server_util": round(server_cpu / wall, 3),
        "server_us_per_request": round(server_cpu / result["requests"] * 1e6, 1) if result["requests"] else None,
    }
    return result


def check_load(run: dict, label: str) -> list[str]:
    """Problems in one wrk result that mean the run broke."""
    problems = []
    bad = {code: n for code, n in run["statuses"].items() if not 200 <= code < 300}
    if bad or run["non_2xx_3xx"]:
        problems.append(f"{label}: non-2xx answers {bad or run['non_2xx_3xx']}")
    errs = {k: v for k, v in run["errors"].items() if v and k != "status"}
    if errs:
        problems.append(f"{label}: socket errors {errs}")
    if run["requests"] == 0:
        problems.append(f"{label}: no request completed")
    return problems


# ---------------------------------------------------------------------------------------------
# targets


@dataclass
class RunResult:
    target: str
    round: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    statuses: dict
    errors: dict
    cpu: dict
    checks: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)


def _result(target: str, rnd: int, measured: dict, problems: list[str], checks: dict | None = None) -> RunResult:
    lat = measured["latency_us"]
    return RunResult(
        target=target, round=rnd, rps=measured["requests_per_s"], p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000, p99_ms=lat["p99"] / 1000, max_ms=lat["max"] / 1000,
        requests=measured["requests"], statuses=measured["statuses"], errors=measured["errors"],
        cpu=measured["cpu"], checks=checks or {}, problems=problems,
    )


@contextmanager
def bare_server(args):
    """bench/bare_app.py on a free loopback port, ready; stopped on exit. Yields like
    real_server() (no database)."""
    port = free_port()
    base = f"http://{HOST}:{port}"
    path = "/api/v1/events/1/registrations"
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as tmp:
        server = Server(
            "bare app", [sys.executable, str(HERE / "bare_app.py"), "--host", HOST, "--port", str(port)],
            dict(os.environ), Path(tmp) / "server.log", args.server_cpus,
        )
        try:
            wait_ready(server, "POST", base + path, {"name": "ready", "email": "ready@example.org"}, 201, args.ready_timeout)
            yield {"server": server, "base": base, "path": path}
        finally:
            server.stop()


def run_bare(args, rnd: int) -> RunResult:
    with bare_server(args) as srv:
        server, base, path = srv["server"], srv["base"], srv["path"]
        warm = run_wrk(args, base, path, f"r{rnd}-bare-w", args.warmup, args.wrk_cpus, server.pid) if args.warmup else None
        measured = run_wrk(args, base, path, f"r{rnd}-bare-m", args.duration, args.wrk_cpus, server.pid)
        if not server.alive():
            raise BenchError(f"bare app died during the run:\n{server.log_tail()}")
    problems = check_load(measured, "bare") + (check_load(warm, "bare warm-up") if warm else [])
    return _result("bare", rnd, measured, problems)


def _events_cli() -> list[str]:
    script = Path(sys.executable).parent / "events-app"
    return [str(script)] if script.exists() else [sys.executable, "-m", "events_app.cli"]


def _cli(env: dict, *argv: str, stdin: str | None = None) -> str:
    out = subprocess.run(
        [*_events_cli(), *argv], env=env, cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=120
    )
    if out.returncode != 0:
        raise BenchError(f"events-app {' '.join(argv)} failed ({out.returncode}): {out.stderr.strip()}")
    return out.stdout.strip()


def _real_env(tmp: Path, port: int, database_url: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTS_")}
    env.update(
        EVENTS_DATABASE_URL=database_url or f"sqlite:///{tmp / 'events.sqlite3'}",
        EVENTS_VAR_DIR=str(tmp),
        EVENTS_RATE_LIMITS="off",
        EVENTS_LOG_LEVEL="warning",
        EVENTS_BASE_URL=f"http://{HOST}:{port}",
    )
    return env


def _db_counts(db_path: Path, event_id: int) -> dict:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        one = lambda sql, *a: conn.execute(sql, a).fetchone()[0]  # noqa: E731
        return {
            "registrations": one("SELECT COUNT(*) FROM registration WHERE event = ?", event_id),
            "registered": one(
                "SELECT COUNT(*) FROM registration WHERE event = ? AND status = 'registered'", event_id
            ),
            "distinct_emails": one("SELECT COUNT(DISTINCT email) FROM registration WHERE event = ?", event_id),
            "outbox": one("SELECT COUNT(*) FROM outbox WHERE kind = 'registration_confirmed'"),
            "outbox_matching": one(
                "SELECT COUNT(*) FROM outbox o JOIN registration r "
                "ON r.id = json_extract(o.payload, '$.registration_id') "
                "WHERE o.kind = 'registration_confirmed' AND r.event = ? AND o.recipient = r.email",
                event_id,
            ),
            "taken": one("SELECT taken FROM event WHERE id = ?", event_id),
        }
    finally:
        conn.close()


@contextmanager
def real_server(args, label: str, capacity: int | None, server_prefix: list[str] | None = None,
                database_url: str | None = None):
    # `events-app serve --no-worker` unless --worker: then `serve` runs its mail worker beside it
    # (a child process; its CPU is reported apart and not in the server's).
    """A fresh database (migrated, a staff token, one published event) served by
    `events-app serve --no-worker`. Yields (server, base URL, registration path, event id, db
    path); the server is stopped on exit, before the database is read, and the folder removed."""
    port = free_port()
    base = f"http://{HOST}:{port}"
    with tempfile.TemporaryDirectory(prefix="bench-real-") as tmp_name:
        tmp = Path(tmp_name)
        env = _real_env(tmp, port, database_url)
        _cli(env, "migrate")
        _cli(env, "staff", "create", STAFF_EMAIL, "--name", "Bench", stdin=STAFF_PASSWORD + "\n")
        token = _cli(env, "staff", "token", STAFF_EMAIL, "--label", "bench").splitlines()[-1].strip()
        server = Server(
            f"events-app ({label})",
            [*(server_prefix or _events_cli()), "serve", *([] if getattr(args, "worker", False) else ["--no-worker"]),
             "--host", HOST, "--port", str(port)],
            env, tmp / "server.log", args.server_cpus,
        )
        try:
            wait_ready(server, "GET", base + "/health", None, 200, args.ready_timeout)
            starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
            status, event = http("POST", base + "/api/v1/events/", {
                "title": f"Bench {label}",
                "starts_at": starts.isoformat(),
                "ends_at": (starts + timedelta(hours=2)).isoformat(),
                "timezone": "UTC",
                "capacity": capacity,
            }, token=token)
            if status != 201:
                raise BenchError(f"creating the event answered {status}: {event}")
            status, published = http("POST", f"{base}/api/v1/events/{event['id']}/publish", token=token)
            if status != 200 or published.get("status") != "published":
                raise BenchError(f"publishing the event answered {status}: {published}")
            holder = {"server": server, "base": base, "event_id": event["id"], "db": tmp / "events.sqlite3",
                      "path": f"/api/v1/events/{event['id']}/registrations"}
            yield holder
        finally:
            server.stop()


def run_real(args, rnd: int, target: str, capacity: int | None) -> RunResult:
    with real_server(args, f"{target} round {rnd}", capacity) as srv:
        server, base, path = srv["server"], srv["base"], srv["path"]
        loads = []
        if args.warmup:
            loads.append(run_wrk(args, base, path, f"r{rnd}-{target}-w", args.warmup, args.wrk_cpus, server.pid))
        measured = run_wrk(args, base, path, f"r{rnd}-{target}-m", args.duration, args.wrk_cpus, server.pid)
        loads.append(measured)
        if not server.alive():
            raise BenchError(f"{server.name} died during the run:\n{server.log_tail()}")
        time.sleep(0.5)  # let requests that wrk stopped waiting for finish on the server
        server.stop()
        counts = _db_counts(srv["db"], srv["event_id"])
    created = sum(run["statuses"].get(201, 0) for run in loads)
    in_flight_bound = args.connections * len(loads)
    unanswered = counts["registrations"] - created
    checks = {
        **counts,
        "answered_201": created,
        "finished_after_cutoff": unanswered,
        "rows_match_201": 0 <= unanswered <= in_flight_bound,
        "rows_equal_201_exactly": unanswered == 0,
        "outbox_equals_registrations": counts["outbox"] == counts["registrations"] == counts["outbox_matching"],
        "every_registration_seated": counts["registered"] == counts["registrations"] == counts["taken"],
        "emails_unique": counts["distinct_emails"] == counts["registrations"],
    }
    problems = []
    for i, run in enumerate(loads):
        problems += check_load(run, f"{target} {'warm-up' if i < len(loads) - 1 else 'measured'}")
    if not checks["rows_match_201"]:
        problems.append(
            f"{target}: {counts['registrations']} registration rows for {created} answers 201 "
            f"(at most {in_flight_bound} may finish after wrk stops)"
        )
    for key in ("outbox_equals_registrations", "every_registration_seated", "emails_unique"):
        if not checks[key]:
            problems.append(f"{target}: check {key} failed: {counts}")
    if capacity is not None and counts["taken"] > capacity:
        problems.append(f"{target}: {counts['taken']} seats taken of {capacity}")
    return _result(target, rnd, measured, problems, checks)


# ---------------------------------------------------------------------------------------------
# report


def machine_facts(args) -> dict:
    from rows import cpu_model  # bench/ is the script's folder, first on sys.path

    model = cpu_model()
    versions = {}
    for name in ("litestar", "uvicorn", "uvloop", "httptools", "piccolo", "msgspec"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:
            versions[name] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "wrk": wrk_version(args.wrk),
        "packages": versions,
        "git_commit": commit,
    }


def summarise(results: list[RunResult], targets: list[str]) -> dict:
    summary = {}
    for target in targets:
        runs = [r for r in results if r.target == target]
        summary[target] = {
            "rps_median": statistics.median(r.rps for r in runs),
            "rps_rounds": [round(r.rps, 1) for r in runs],
            "p50_ms_median": statistics.median(r.p50_ms for r in runs),
            "p90_ms_median": statistics.median(r.p90_ms for r in runs),
            "p99_ms_median": statistics.median(r.p99_ms for r in runs),
            "p99_ms_worst": max(r.p99_ms for r in runs),
            "server_us_per_request_median": statistics.median(r.cpu["server_us_per_request"] or 0 for r in runs),
            "worker_us_per_request_median": statistics.median(
                r.cpu.get("worker_s", 0.0) / r.requests * 1e6 if r.requests else 0.0 for r in runs
            ),
            "server_util_median": statistics.median(r.cpu["server_util"] for r in runs),
            "others_cores_max": max(r.cpu["others_cores"] for r in runs),
        }
    bare = summary["bare"]["rps_median"]
    for target in targets:
        s = summary[target]
        s["ratio_to_bare"] = s["rps_median"] / bare if bare else 0.0
        # The same ratio from CPU time per request: less sensitive to other load on the machine.
        cost = s["server_us_per_request_median"]
        s["cpu_ratio_to_bare"] = summary["bare"]["server_us_per_request_median"] / cost if cost else 0.0
        if target != "bare":
            s["meets_ratio"] = s["ratio_to_bare"] >= TARGET_RATIO
            s["meets_p99"] = s["p99_ms_median"] < TARGET_P99_MS
    return summary


def print_report(facts: dict, args, results: list[RunResult], summary: dict, targets: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(
        f"[bold]Registration vs bare Litestar[/] on {facts['nproc']} x {facts['cpu_model']}; "
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s after {args.warmup:g}s warm-up, "
        f"{args.rounds} round(s), first requests held {args.first_delay_ms} ms, "
        + (f"server on CPU {sorted(args.server_cpus)}, wrk on CPU {sorted(args.wrk_cpus)}" if args.server_cpus else "no pinning")
    )
    table = Table(show_lines=False)
    for col in ("target", "req/s", "rounds", "ratio", "p50 ms", "p90 ms", "p99 ms", "srv CPU us/req",
                "CPU ratio", "srv util", "target met"):
        table.add_column(col, justify="left" if col in ("target", "rounds", "target met") else "right")
    for target in targets:
        s = summary[target]
        met = ""
        if target != "bare":
            met = ("[green]yes[/]" if s["meets_ratio"] and s["meets_p99"] else "[red]no[/]") + (
                f" (ratio {'ok' if s['meets_ratio'] else f'<{TARGET_RATIO:.2f}'}, p99 {'ok' if s['meets_p99'] else '>=50ms'})"
            )
        table.add_row(
            target, f"{s['rps_median']:,.0f}", " / ".join(f"{x:,.0f}" for x in s["rps_rounds"]),
            f"{s['ratio_to_bare']:.2f}", f"{s['p50_ms_median']:.1f}", f"{s['p90_ms_median']:.1f}",
            f"{s['p99_ms_median']:.1f}", f"{s['server_us_per_request_median']:.0f}",
            f"{s['cpu_ratio_to_bare']:.2f}", f"{s['server_util_median']:.0%}", met,
        )
    console.print(table)
    console.print(
        "req/s, latencies and CPU figures are medians over rounds; ratio = real req/s / bare req/s; "
        "CPU ratio = bare server CPU per request / real server CPU per request (the server process's own "
        "CPU: a mail worker it runs beside it, with --worker, is not in it); srv util = server "
        "CPU time / wall time (~100% = the server's core was the bottleneck)."
    )
    checks = Table(title="Correctness (each real run, warm-up + measured)")
    for col in ("run", "req/s", "201s", "rows", "after cut-off", "outbox", "seated", "non-2xx", "socket errs",
                "other load", "ok"):
        checks.add_column(col, justify="left" if col in ("run", "ok") else "right")
    for r in results:
        non2xx = sum(n for code, n in r.statuses.items() if not 200 <= code < 300)
        sock = sum(v for k, v in r.errors.items() if k != "status")
        if r.target == "bare":
            checks.add_row(f"r{r.round} bare", f"{r.rps:,.0f}", f"{r.statuses.get(201, 0):,}", "-", "-", "-", "-",
                           str(non2xx), str(sock), f"{r.cpu['others_cores']:.2f}",
                           "[green]ok[/]" if not r.problems else "[red]FAIL[/]")
            continue
        c = r.checks
        checks.add_row(
            f"r{r.round} {r.target}", f"{r.rps:,.0f}", f"{c['answered_201']:,}", f"{c['registrations']:,}",
            str(c["finished_after_cutoff"]), f"{c['outbox']:,}", f"{c['registered']:,}",
            str(non2xx), str(sock), f"{r.cpu['others_cores']:.2f}",
            "[green]ok[/]" if not r.problems else "[red]FAIL[/]",
        )
    console.print(checks)
    console.print(
        "201s: answers counted by wrk in the warm-up and measured runs; rows: registrations in the "
        "database; after cut-off: requests the server finished after wrk stopped reading (at most one "
        "per connection per wrk run); seated: registrations holding a seat (= event.taken); other "
        "load: CPU cores used by other processes during the measured run."
    )
    noisy = [r for r in results if r.cpu["others_cores"] > NOISE_CORES]
    if noisy:
        console.print(
            f"[yellow]warning:[/] other processes used more than {NOISE_CORES} cores during "
            + ", ".join(f"r{r.round} {r.target} ({r.cpu['others_cores']:.2f})" for r in noisy)
            + ": req/s is noisy there; the CPU-per-request columns are less affected."
        )
    for r in results:
        for p in r.problems:
            console.print(f"[red]problem:[/] {p}")


# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Registration throughput vs a bare Litestar route (wrk, loopback).")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per run (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds before each run (default 2; 0 = none)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: the machine has 2 cores)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of bare, real-open, real-capped (default 2)")
    p.add_argument("--capacity", type=int, default=1_000_000, help="capacity of the capped event (default 1,000,000)")
    p.add_argument(
        "--first-delay-ms", type=int, default=250,
        help="hold each connection's first request back this long so that all connections are "
        "accepted before the load starts (default 250; 0 = cold connections, see register.lua)",
    )
    p.add_argument("--timeout", type=float, default=5.0, help="wrk per-request timeout in seconds (default 5)")
    p.add_argument("--ready-timeout", type=float, default=30.0, help="seconds to wait for a server to answer")
    p.add_argument("--no-pin", action="store_true", help="do not pin the server to CPU 0 and wrk to CPU 1")
    p.add_argument(
        "--worker", action="store_true",
        help="run `serve` with its mail worker beside it (default: --no-worker, the figure of record); the "
        "server CPU per request stays the server process's own, the worker's is reported apart",
    )
    p.add_argument("--targets", default="bare,real-open,real-capped", help="comma list (bare is always run)")
    p.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS.relative_to(ROOT)})")
    p.add_argument("--json", action="store_true", help="print one BENCH_ROWS line for bench/run_all.py")
    args = p.parse_args(argv)
    if args.duration <= 0 or args.duration > 600 or args.warmup < 0 or args.warmup > 60:
        p.error("--duration must be in (0, 600] and --warmup in [0, 60]")
    if not 0 <= args.first_delay_ms <= 5000:
        p.error("--first-delay-ms must be in [0, 5000]")
    if not 1 <= args.connections <= 1000 or not 1 <= args.threads <= args.connections or not 1 <= args.rounds <= 20:
        p.error("need 1 <= threads <= connections <= 1000 and 1 <= rounds <= 20")
    cpus = sorted(os.sched_getaffinity(0))
    if args.no_pin or len(cpus) < 2:
        args.server_cpus = args.wrk_cpus = None
    else:
        args.server_cpus, args.wrk_cpus = {cpus[0]}, set(cpus[1:])
    wanted = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(wanted) - {"bare", "real-open", "real-capped"}
    if unknown:
        p.error(f"unknown targets {sorted(unknown)}")
    args.target_list = ["bare"] + [t for t in ("real-open", "real-capped") if t in wanted]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.wrk = shutil.which("wrk")
    if args.wrk is None:
        print(
            "bench/registration.py needs wrk, which is not installed.\n"
            "Install it with: apt-get update && apt-get install -y wrk",
            file=sys.stderr,
        )
        return 2
    facts = machine_facts(args)
    results: list[RunResult] = []
    started = time.time()
    try:
        for rnd in range(1, args.rounds + 1):
            for target in args.target_list:
                print(f"round {rnd}/{args.rounds}: {target} ...", file=sys.stderr, flush=True)
                if target == "bare":
                    res = run_bare(args, rnd)
                else:
                    res = run_real(args, rnd, target, None if target == "real-open" else args.capacity)
                print(
                    f"  {res.rps:,.0f} req/s, p50 {res.p50_ms:.1f} ms, p99 {res.p99_ms:.1f} ms"
                    + (f"  PROBLEMS: {res.problems}" if res.problems else ""),
                    file=sys.stderr, flush=True,
                )
                results.append(res)
    except BenchError as exc:
        print(f"bench/registration.py: the run broke: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    summary = summarise(results, args.target_list)
    print_report(facts, args, results, summary, args.target_list)
    real = [t for t in args.target_list if t != "bare"]
    met = bool(real) and all(summary[t]["meets_ratio"] and summary[t]["meets_p99"] for t in real)
    problems = [p for r in results for p in r.problems]
    print(
        f"Target (ratio >= {TARGET_RATIO:.2f} and p99 < {TARGET_P99_MS:g} ms for every real target): "
        + ("MET" if met else "NOT MET")
    )
    out = {
        "benchmark": "registration",
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(),
        "elapsed_s": round(time.time() - started, 1),
        "machine": facts,
        "settings": {
            "duration_s": args.duration, "warmup_s": args.warmup, "connections": args.connections,
            "threads": args.threads, "rounds": args.rounds, "capacity": args.capacity,
            "wrk_timeout_s": args.timeout, "first_request_delay_ms": args.first_delay_ms, "server_cpus": sorted(args.server_cpus or []),
            "wrk_cpus": sorted(args.wrk_cpus or []), "host": HOST,
        },
        "targets": {"ratio_min": TARGET_RATIO, "p99_ms_max": TARGET_P99_MS, "met": met},
        "summary": summary,
        "runs": [r.__dict__ for r in results],
        "problems": problems,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"Results written to {args.output}")
    if args.json:
        import rows as rowfmt

        bare = summary["bare"]
        names = {"real-open": "unlimited capacity", "real-capped": "capacity enforced"}
        out_rows = []
        for target in real:
            s = summary[target]
            out_rows.append(rowfmt.row(
                f"registration POST, SQLite, {args.connections} clients, {names[target]} (req/s)", s["rps_median"],
                bare["rps_median"], "bare Litestar route", f">= {TARGET_RATIO:.2f}x", s["meets_ratio"],
                unit="req/s", ok=not problems,
                note=f"CPU ratio {s['cpu_ratio_to_bare']:.2f} (server {s['server_us_per_request_median']:.0f} us/req, "
                f"bare {bare['server_us_per_request_median']:.0f})"
                + (f", worker beside it {s['worker_us_per_request_median']:.0f} us/req" if args.worker else ""),
            ))
            out_rows.append(rowfmt.row(
                f"registration POST, SQLite, {args.connections} clients, {names[target]}: p99", s["p99_ms_median"],
                bare["p99_ms_median"], "bare Litestar route p99", f"< {TARGET_P99_MS:g} ms", s["meets_p99"],
                unit="ms", ok=not problems, note=f"p50 {s['p50_ms_median']:.1f} ms",
            ))
        rowfmt.emit(out_rows)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
