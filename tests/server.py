"""Start the real `events-app serve` in a subprocess on a free loopback port, for tests that
must go through a real HTTP server (concurrency, lifespan, the CLI)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(*, worker: bool = False, env: dict | None = None, timeout: float = 30.0):
    """Yield the base URL of a running server using the suite's database and settings."""
    port = free_port()
    args = [sys.executable, "-m", "events_app.cli", "serve", "--port", str(port)]
    if not worker:
        args.append("--no-worker")
    environment = {**os.environ, "EVENTS_LOG_LEVEL": "warning", **(env or {})}
    proc = subprocess.Popen(args, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stdout.read().decode(errors='replace')}")
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become healthy in time")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
