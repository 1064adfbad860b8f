"""A registration's app-side CPU, in process: the real app and the bare route driven as ASGI apps.

    .venv/bin/python bench/profile_registration_inproc.py [--requests 4000] [--clients 64] [--profile]

No HTTP server and no sockets: `clients` tasks each send registrations one after another straight
into the app's ASGI callable (the scope uvicorn would build), on a fresh SQLite database with a
published event, as bench/registration.py sets it up. Prints CPU microseconds per request for the
real app and for bench/bare_app.py's route; their difference is what the registration itself
costs, without the HTTP parsing both share. `--profile` prints cProfile's top functions for the
real app (cProfile slows everything down; the shares are what matter). Process CPU time, not wall
time, is reported, but on a loaded 2-core machine it still moves by 10-15% between runs.

Instruction counts do not depend on the load: under callgrind only the measured run is
instrumented, so the count divided by --requests is the app's instructions per registration
(the driver's own work included, the same for every variant; --bare counts the bare route):

    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/cg.%p \
        .venv/bin/python bench/profile_registration_inproc.py --requests 640 --callgrind [--bare]
    callgrind_annotate /tmp/cg.<pid> | grep TOTALS
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import registration as bench  # noqa: E402  (bench/ is not a package)


def _scope(path: str, body_len: int, method: str = "POST", token: str | None = None) -> dict:
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"content-type", b"application/json"),
        (b"content-length", str(body_len).encode()),
    ]
    if token:
        headers.append((b"authorization", b"Bearer " + token.encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": method,
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "state": {},
    }


async def call(app, path: str, body: bytes, method: str = "POST", token: str | None = None) -> tuple[int, bytes]:
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    status, chunks = 0, []

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        else:
            chunks.append(message.get("body", b""))

    await app(_scope(path, len(body), method, token), receive, send)
    return status, b"".join(chunks)


async def lifespan(app):
    queue: asyncio.Queue = asyncio.Queue()
    out: asyncio.Queue = asyncio.Queue()
    await queue.put({"type": "lifespan.startup"})
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, queue.get, out.put))
    msg = await out.get()
    assert msg["type"] == "lifespan.startup.complete", msg

    async def stop() -> None:
        await queue.put({"type": "lifespan.shutdown"})
        await out.get()
        await task

    return stop


async def drive(app, path: str, requests: int, clients: int, prefix: str) -> float:
    per = requests // clients

    async def client(c: int) -> None:
        for n in range(per):
            body = json.dumps(
                {"name": f"Bench Person {n}", "email": f"{prefix}-t{c}-{n}@bench.example.org"}, separators=(",", ":")
            ).encode()
            status, answer = await call(app, path, body)
            if status != 201:
                raise SystemExit(f"{status}: {answer[:300]!r}")

    cpu0 = time.process_time()
    await asyncio.gather(*(client(c) for c in range(clients)))
    return (time.process_time() - cpu0) / (per * clients) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--capacity", type=int, default=None)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=45)
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs of each app (the median is shown)")
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="under valgrind --tool=callgrind "
        "--instr-atstart=no: instrument only the measured real-app run (callgrind_control)",
    )
    parser.add_argument("--bare", action="store_true", help="with --callgrind or --profile: the bare route instead")
    parser.add_argument("--gc-threshold", type=int, default=None, help="gc.set_threshold(N) after startup")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-inproc-") as tmp_name:
        tmp = Path(tmp_name)
        env = bench._real_env(tmp, 8000)
        bench._cli(env, "migrate")
        bench._cli(env, "staff", "create", bench.STAFF_EMAIL, "--name", "Bench", stdin=bench.STAFF_PASSWORD + "\n")
        token = bench._cli(env, "staff", "token", bench.STAFF_EMAIL, "--label", "bench").splitlines()[-1].strip()
        os.environ.update(env)
        import uvloop

        uvloop.install()
        asyncio.run(_run(args, token))


async def _run(args, token: str) -> None:
    from datetime import UTC, datetime, timedelta

    import bare_app

    from events_app.app import create_app

    app = create_app(run_worker=False)
    stop = await lifespan(app)
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    status, answer = await call(
        app,
        "/api/v1/events/",
        json.dumps(
            {
                "title": "Bench",
                "starts_at": starts.isoformat(),
                "ends_at": (starts + timedelta(hours=2)).isoformat(),
                "timezone": "UTC",
                "capacity": args.capacity,
            }
        ).encode(),
        token=token,
    )
    assert status == 201, answer
    event_id = json.loads(answer)["id"]
    status, answer = await call(app, f"/api/v1/events/{event_id}/publish", b"", token=token)
    assert status == 200, answer
    path = f"/api/v1/events/{event_id}/registrations"
    await drive(app, path, 1000, args.clients, "warm")
    await drive(bare_app.app, path, 1000, args.clients, "warm")
    if args.gc_threshold:
        import gc

        gc.set_threshold(args.gc_threshold, *gc.get_threshold()[1:])
    if args.callgrind:
        import subprocess

        # Blocking on purpose: nothing else may run until callgrind instruments (and stops).
        subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True, capture_output=True)  # noqa: ASYNC221
        await drive(bare_app.app if args.bare else app, path, args.requests, args.clients, "cg")
        subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True)  # noqa: ASYNC221
        print(f"callgrind: {args.requests} requests measured")
        await stop()
        return
    bares, reals = [], []
    for r in range(args.repeat):
        bares.append(await drive(bare_app.app, path, args.requests, args.clients, f"bare{r}"))
        reals.append(await drive(app, path, args.requests, args.clients, f"m{r}"))
    bare, real = sorted(bares)[len(bares) // 2], sorted(reals)[len(reals) // 2]
    print("real runs:", " ".join(f"{x:.0f}" for x in reals), "bare runs:", " ".join(f"{x:.0f}" for x in bares))
    print(f"in-process CPU per request: real {real:.1f} us, bare {bare:.1f} us, difference {real - bare:.1f} us")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        await drive(bare_app.app if args.bare else app, path, args.requests, args.clients, "p")
        prof.disable()
        stats = pstats.Stats(prof)
        stats.sort_stats(args.sort).print_stats(args.top)
    await stop()


if __name__ == "__main__":
    main()
