"""Where a registration's server time goes: py-spy samples `events-app serve` under wrk load.

    .venv/bin/pip install py-spy        # once
    .venv/bin/python bench/profile_registration.py [--duration 10] [--rate 100] [--capacity N]

Same setup as bench/registration.py (fresh SQLite database, published event, unique emails, wrk
on 127.0.0.1 pinned to CPU 1, server pinned to CPU 0). After a warm-up, py-spy records the
server's main thread while wrk runs. Prints:
  - the server CPU time per request (from /proc, during the profiled run);
  - a partition of the samples into buckets (SQLite, Piccolo, JSON, Litestar, uvicorn, ...),
    each sample given to the innermost frame that names a bucket;
  - the top functions by inclusive and by self time, with an estimate in microseconds per request.
Writes the raw collapsed stacks to bench/results/registration-profile-TARGET.txt (feed them to
flamegraph.pl or speedscope) and the summary to bench/results/registration-profile-TARGET.json. `--target bare` profiles
the baseline the same way, to see which costs the real app adds.

py-spy pauses the server for each sample (its non-blocking mode loses stacks here), so req/s is
lower while profiling; the shares are what matter.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import registration as bench  # noqa: E402  (bench/ is not a package)

RESULTS = HERE / "results"

# (bucket, predicate on "function (file)") checked from the innermost frame outwards: a sample
# belongs to the bucket of the innermost frame that any bucket names, so a stdlib leaf (email
# parsing, os.urandom, abc checks) counts for the code that called it. Time spent in C (SQLite,
# socket writes, the uvloop loop) is charged by py-spy to the Python frame that called into it.
BUCKETS: list[tuple[str, callable]] = [
    ("rows -> dicts (_dict_factory, timestamp converters)",
     lambda f: "_dict_factory" in f or "convert_timestamptz_out" in f or "convert_" in f and "piccolo/engine/sqlite" in f),
    ("SQLite execute + fetchall (C, in _LoopConnection.run)", lambda f: f.startswith("_LoopConnection.run ")),
    ("Piccolo QueryString build + compile", lambda f: "piccolo/querystring.py" in f),
    ("Piccolo engine + events_app.db plumbing (locks, transaction)",
     lambda f: "piccolo/" in f or "events_app/db.py" in f or "asyncio/locks.py" in f),
    ("json.dumps / json.loads", lambda f: "(json/" in f),
    ("tokens (HMAC, SHA-256, salt)", lambda f: "events_app/tokens.py" in f or "(hmac.py" in f or "(secrets.py" in f),
    ("datetime / isoformat / zoneinfo", lambda f: "timefmt.py" in f or "(datetime.py" in f or "zoneinfo" in f),
    ("events_app domain + web code (own time)", lambda f: "events_app/" in f),
    ("Litestar response serialisation", lambda f: "litestar/serialization" in f or "litestar/response" in f),
    ("Litestar request, kwargs, body parsing", lambda f: "litestar/_kwargs" in f or "litestar/connection" in f
     or "litestar/datastructures" in f or "litestar/_parsers" in f),
    ("Litestar routing, middleware, handler plumbing", lambda f: "litestar/" in f),
    ("uvicorn, httptools, uvloop (socket I/O, event loop)", lambda f: "uvicorn/" in f or "httptools" in f),
]
OTHER = "other (stdlib frames with no caller above)"


def frame_key(frame: str) -> str:
    """'func (path/file.py:123)' -> 'func (path/file.py)'."""
    head, _, rest = frame.rpartition(":")
    return head + ")" if rest.endswith(")") and rest[:-1].isdigit() else frame


def load_stacks(path: Path, main_marker: str) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [frame_key(f) for f in stack.split(";")]
        if not any(main_marker in f for f in frames[:12]):
            continue  # another thread (Litestar's logging queue listener sits idle)
        stacks.append((frames, int(count)))
    return stacks


def analyse(stacks: list[tuple[list[str], int]], us_per_request: float, top: int) -> dict:
    total = sum(n for _, n in stacks) or 1
    buckets: Counter = Counter()
    inclusive: Counter = Counter()
    own: Counter = Counter()
    for frames, n in stacks:
        for frame in reversed(frames):
            name = next((b for b, pred in BUCKETS if pred(frame)), None)
            if name:
                buckets[name] += n
                break
        else:
            buckets[OTHER] += n
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n

    def rows(counter: Counter, keep=lambda f: True) -> list[dict]:
        return [
            {"function": f, "share": n / total, "us_per_request": n / total * us_per_request}
            for f, n in counter.most_common() if keep(f)
        ][:top]

    interesting = lambda f: any(s in f for s in ("events_app/", "piccolo/", "litestar/", "json/"))  # noqa: E731
    return {
        "samples": total,
        "server_us_per_request": us_per_request,
        "buckets": [
            {"bucket": b, "share": buckets[b] / total, "us_per_request": buckets[b] / total * us_per_request}
            for b in [name for name, _ in BUCKETS] + [OTHER] if buckets[b]
        ],
        "inclusive": rows(inclusive, interesting),
        "self": rows(own),
    }


def print_analysis(result: dict, load: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    cpu = load["cpu"]
    console.print(
        f"[bold]Profile of the {result['target']} server under load[/]: {load['requests_per_s']:,.0f} req/s while sampled, "
        f"server CPU {cpu['server_us_per_request']:.0f} us/request, {result['samples']} samples"
    )
    for title, key, label in (
        ("Where the time goes (each sample to its innermost bucket)", "buckets", "bucket"),
        ("Top functions, inclusive (events_app, piccolo, litestar, json)", "inclusive", "function"),
        ("Top functions, self", "self", "function"),
    ):
        table = Table(title=title)
        table.add_column(label)
        table.add_column("share", justify="right")
        table.add_column("us/request", justify="right")
        for row in result[key]:
            table.add_row(row[label], f"{row['share']:.1%}", f"{row['us_per_request']:.0f}")
        console.print(table)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="py-spy profile of the registration endpoint under wrk load.")
    p.add_argument("--duration", type=int, default=10, help="profiled seconds (default 10)")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--rate", type=int, default=100, help="py-spy samples per second (default 100)")
    p.add_argument("--capacity", type=int, default=None, help="event capacity (default: unlimited)")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--target", choices=("real", "bare"), default="real",
                   help="profile the real app (default) or the bare baseline, for comparison")
    opts = p.parse_args(argv)
    if not 1 <= opts.duration <= 120 or not 1 <= opts.rate <= 1000:
        p.error("--duration must be in [1, 120] and --rate in [1, 1000]")
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    wrk = shutil.which("wrk")
    if spy is None or wrk is None:
        print(
            "needs py-spy (.venv/bin/pip install py-spy) and wrk (apt-get install -y wrk)", file=sys.stderr
        )
        return 2
    args = bench.parse_args(["--warmup", str(opts.warmup), "--connections", str(opts.connections)])
    args.wrk = wrk
    RESULTS.mkdir(parents=True, exist_ok=True)
    raw = RESULTS / f"registration-profile-{opts.target}.txt"
    server_cm = bench.real_server(args, "profile", opts.capacity) if opts.target == "real" else bench.bare_server(args)
    try:
        with server_cm as srv:
            server = srv["server"]
            if opts.warmup:
                bench.run_wrk(args, srv["base"], srv["path"], "prof-w", opts.warmup, args.wrk_cpus, server.pid)
            # py-spy starts first and samples a little longer than wrk's load lasts.
            recorder = subprocess.Popen(
                [spy, "record", "--pid", str(server.pid), "--rate", str(opts.rate),
                 "--duration", str(opts.duration), "--format", "raw", "-o", str(raw)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=bench._pin(args.wrk_cpus),
            )
            try:
                time.sleep(0.3)
                load = bench.run_wrk(args, srv["base"], srv["path"], "prof-m", opts.duration, args.wrk_cpus, server.pid)
                spy_out = recorder.communicate(timeout=opts.duration + 60)[0].decode(errors="replace")
            finally:
                if recorder.poll() is None:
                    recorder.kill()
                    recorder.wait(timeout=10)
            if recorder.returncode != 0 or not raw.exists():
                raise bench.BenchError(f"py-spy failed ({recorder.returncode}):\n{spy_out}")
            problems = bench.check_load(load, "profiled run")
            if problems:
                raise bench.BenchError("; ".join(problems))
    except bench.BenchError as exc:
        print(f"bench/profile_registration.py: the run broke: {exc}", file=sys.stderr)
        return 1
    stacks = load_stacks(raw, "Runner.run (asyncio/runners.py")
    if not stacks:
        print(f"no samples of the server's main thread in {raw}", file=sys.stderr)
        return 1
    result = analyse(stacks, load["cpu"]["server_us_per_request"], opts.top)
    result["target"] = opts.target
    print_analysis(result, load)
    summary = {**result, "requests_per_s": load["requests_per_s"], "latency_us": load["latency_us"],
               "cpu": load["cpu"], "settings": vars(opts), "raw_stacks": str(raw)}
    summary_path = RESULTS / f"registration-profile-{opts.target}.json"
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"Raw stacks: {raw}; summary: {summary_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
