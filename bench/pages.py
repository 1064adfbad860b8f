"""Public pages from the cache against a bare Litestar route serving the same bytes.

    .venv/bin/python bench/pages.py [--duration 5] [--connections 64] [--rounds 2] [--json]

A fresh SQLite database with one published event (a description of a few paragraphs, like the
demo's) served by `events-app serve --no-worker`; the page and its .ics are fetched once and
written to files, and bench/bare_app.py --static serves those bytes from memory on one
GET /events/{slug} route (the baseline). Targets, alternated round by round:
  bare-page / bare-ics   the baseline, for the HTML page and the .ics (a Litestar Response)
  bare-raw-page          the same bytes as a pre-encoded ASGI app, the way the page cache answers:
                         a stricter floor, reported for the record
  page-cached            GET /events/{slug}: the key query, then the kept answer (200)
  page-304               the same with If-None-Match: the key query, then 304 without a body
  ics-cached             GET /events/{slug}.ics from the cache (200)
  page-uncached          bench/serve_uncached.py: every GET renders the page again, as a cache
                         miss does (the badge and count rendered, joined with the page's frame)
  page-uncached-whole    bench/serve_uncached.py --whole: every GET renders the whole template
                         (what the first request of a new event version costs), for the record
wrk -t1 -c64 (register.lua's hold-back of first requests, get.lua), server pinned to CPU 0 and
wrk to CPU 1. Targets (issue 15): cached >= 0.95x the bare route (page and .ics), uncached >= 0.4x.
Exit status 0 when the run worked, 1 when it broke (a non-2xx/304 answer, a changed body).
`--json` also prints one `BENCH_ROWS [...]` line (bench/README.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import registration as bench  # noqa: E402
import rows as rowfmt  # noqa: E402

GET_LUA = HERE / "get.lua"
SLUG = "bench-careers"
DESCRIPTION = "\n\n".join([
    "Hear from **practitioners** who moved from research into implementation roles in "
    "government, health systems, non-profits and industry.",
    "- What the jobs are called\n- What a day looks like\n- How to show your skills",
    "Bring your questions: the panel answers as many as time allows, and the recording goes "
    "to everyone who registered.",
] * 3)


TARGETS = ("bare-page", "bare-raw-page", "page-cached", "page-304", "page-uncached", "page-uncached-whole",
           "bare-ics", "ics-cached")


def fetch(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def measure(args, rnd: int, target: str, files: dict) -> bench.RunResult:
    page_path, ics_path = f"/events/{SLUG}", f"/events/{SLUG}.ics"
    if target.startswith("bare"):
        kind = "ics" if target == "bare-ics" else "page"
        port = bench.free_port()
        server = bench.Server(
            target, [sys.executable, str(HERE / "bare_app.py"), "--host", bench.HOST, "--port", str(port),
                     "--static", str(files[kind]), "--media-type", files[kind + "_type"],
                     *(["--raw"] if target == "bare-raw-page" else [])],
            dict(os.environ), Path(files["dir"]) / f"{target}.log", args.server_cpus,
        )
        base = f"http://{bench.HOST}:{port}"
        try:
            bench.wait_ready(server, "GET", base + page_path, None, 200, args.ready_timeout)
            return _load(args, rnd, target, server, base, page_path, "-", 200, files[kind])
        finally:
            server.stop()
    uncached = [sys.executable, str(HERE / "serve_uncached.py")]
    prefix = {"page-uncached": uncached, "page-uncached-whole": [*uncached, "--whole"]}.get(target)
    with bench.real_server(args, target, 500, server_prefix=prefix) as srv:
        _prepare(srv)
        path = ics_path if target == "ics-cached" else page_path
        # ETags differ between servers here (each has its own base URL, which pages show).
        etag = fetch(srv["base"] + path)[1]["ETag"] if target == "page-304" else "-"
        expect = 304 if target == "page-304" else 200
        reference = files["ics"] if target == "ics-cached" else files["page"]
        return _load(args, rnd, target, srv["server"], srv["base"], path, etag, expect, reference)


def _prepare(srv) -> None:
    """Give real_server's event the bench slug and description (the same content every time,
    so every server renders the same page)."""
    import sqlite3

    conn = sqlite3.connect(srv["db"])
    try:
        conn.execute("UPDATE event SET slug = ?, description = ?, title = ?, version = version + 1 WHERE id = ?",
                     (SLUG, DESCRIPTION, "Non-Academic Careers with Impact", srv["event_id"]))
        conn.commit()
    finally:
        conn.close()


def _load(args, rnd, target, server, base, path, etag, expect, reference) -> bench.RunResult:
    status, _, body = fetch(base + path, {} if etag == "-" else {"If-None-Match": etag})
    problems = []
    ref = reference.read_bytes()
    # Each server shows its own base URL and times of its own event row: the same page, within
    # a few bytes.
    if status != expect or (expect == 200 and abs(len(body) - len(ref)) > 0.02 * len(ref)):
        problems.append(f"{target}: first answer {status}, {len(body)} bytes against {len(ref)}")
    runs = []
    if args.warmup:
        runs.append(bench.run_wrk(args, base, path, etag, args.warmup, args.wrk_cpus, server.pid, lua=GET_LUA))
    measured = bench.run_wrk(args, base, path, etag, args.duration, args.wrk_cpus, server.pid, lua=GET_LUA)
    runs.append(measured)
    for run in runs:
        bad = {code: n for code, n in run["statuses"].items() if code != expect}
        if bad:
            problems.append(f"{target}: unexpected answers {bad}")
        if run["requests"] == 0:
            problems.append(f"{target}: no request completed")
    return bench._result(target, rnd, measured, problems)


def reference_files(args, tmp: Path) -> dict:
    with bench.real_server(args, "reference", 500) as srv:
        _prepare(srv)
        status, headers, page = fetch(srv["base"] + f"/events/{SLUG}")
        status2, headers2, ics = fetch(srv["base"] + f"/events/{SLUG}.ics")
        if status != 200 or status2 != 200:
            raise bench.BenchError(f"the reference pages answered {status} and {status2}")
    (tmp / "page.html").write_bytes(page)
    (tmp / "event.ics").write_bytes(ics)
    return {"dir": str(tmp), "page": tmp / "page.html", "ics": tmp / "event.ics",
            "page_type": headers["Content-Type"], "ics_type": headers2["Content-Type"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Cached public pages vs a bare Litestar route with the same bytes.")
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--first-delay-ms", type=int, default=250)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--ready-timeout", type=float, default=30.0)
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--targets", default=",".join(TARGETS),
                   help="a comma-separated subset, while iterating (with their baselines)")
    args = p.parse_args(argv)
    args.wrk = shutil.which("wrk")
    if args.wrk is None:
        print("bench/pages.py needs wrk: apt-get install -y wrk", file=sys.stderr)
        return 2
    cpus = sorted(os.sched_getaffinity(0))
    args.server_cpus, args.wrk_cpus = (None, None) if args.no_pin or len(cpus) < 2 else ({cpus[0]}, set(cpus[1:]))
    wanted = set(args.targets.split(",")) | {"bare-page"}
    unknown = wanted - set(TARGETS)
    if unknown:
        p.error(f"unknown targets: {sorted(unknown)}")
    if "ics-cached" in wanted:
        wanted.add("bare-ics")
    if args.json and wanted != set(TARGETS):
        p.error("--json needs every target")
    targets = tuple(t for t in TARGETS if t in wanted)
    results: list[bench.RunResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as tmp_name:
        try:
            files = reference_files(args, Path(tmp_name))
            for rnd in range(1, args.rounds + 1):
                for target in targets:
                    print(f"round {rnd}/{args.rounds}: {target} ...", file=sys.stderr, flush=True)
                    res = measure(args, rnd, target, files)
                    print(f"  {res.rps:,.0f} req/s, p99 {res.p99_ms:.1f} ms"
                          + (f"  PROBLEMS: {res.problems}" if res.problems else ""), file=sys.stderr, flush=True)
                    results.append(res)
        except bench.BenchError as exc:
            print(f"bench/pages.py: the run broke: {exc}", file=sys.stderr)
            return 1
    med = {t: statistics.median(r.rps for r in results if r.target == t) for t in targets}
    cpu = {t: statistics.median(r.cpu["server_us_per_request"] or 0 for r in results if r.target == t) for t in targets}
    print(f"Public pages vs a bare route with the same bytes, wrk -t{args.threads} -c{args.connections} "
          f"-d{args.duration:g}s, {args.rounds} round(s), medians")
    print(f"{'target':<20}{'req/s':>9}{'ratio':>7}{'srv us/req':>11}")
    for t in targets:
        base = med["bare-ics" if "ics" in t else "bare-page"]
        print(f"{t:<20}{med[t]:>9,.0f}{med[t] / base:>7.2f}{cpu[t]:>11.0f}")
    problems = [p for r in results for p in r.problems]
    for problem in problems:
        print(f"problem: {problem}")
    if args.json:
        ok = not problems
        page, ics = med["bare-page"], med["bare-ics"]
        rowfmt.emit([
            rowfmt.row("event page, cached (200)", med["page-cached"], page, "bare route, same bytes", ">= 0.95x",
                       med["page-cached"] / page >= 0.95, unit="req/s", ok=ok),
            rowfmt.row("event page, If-None-Match (304)", med["page-304"], page, "bare route, same bytes (200)", ">= 0.95x",
                       med["page-304"] / page >= 0.95, unit="req/s", ok=ok),
            rowfmt.row("event .ics, cached (200)", med["ics-cached"], ics, "bare route, same bytes", ">= 0.95x",
                       med["ics-cached"] / ics >= 0.95, unit="req/s", ok=ok),
            rowfmt.row("event page, uncached", med["page-uncached"], page, "bare route, same bytes", ">= 0.4x",
                       med["page-uncached"] / page >= 0.4, unit="req/s", ok=ok),
            rowfmt.row("event page, uncached, whole template (a new version's first render)",
                       med["page-uncached-whole"], page, "bare route, same bytes", "none (for the record)", None,
                       unit="req/s", ok=ok),
            rowfmt.row("event page, cached (200), against a stricter floor", med["page-cached"], med["bare-raw-page"],
                       "bare route answering a pre-encoded ASGI app, as the cache does", "none (for the record)",
                       None, unit="req/s", ok=ok),
        ])
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
