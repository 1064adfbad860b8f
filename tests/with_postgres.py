"""Run the suite against a throwaway PostgreSQL database: create it, run pytest with
EVENTS_DATABASE_URL pointing at it, drop it. A server that does not answer fails the run (exit 3);
it never turns into skipped tests."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    name = f"events_test_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_admin(args.admin_url, f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        print(f"PostgreSQL at {args.admin_url} is not usable: {exc}", file=sys.stderr)
        return 3
    parts = urlsplit(args.admin_url)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))
    print(f"Running the suite on PostgreSQL database {name}", flush=True)
    try:
        env = {**os.environ, "EVENTS_DATABASE_URL": url}
        return subprocess.call([sys.executable, "-m", "pytest", *args.pytest_args], env=env)
    finally:
        asyncio.run(_admin(args.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    sys.exit(main())
