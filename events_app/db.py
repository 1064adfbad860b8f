"""The database engine: one per process, SQLite or PostgreSQL, driven through Piccolo.

On SQLite, `FastSQLiteEngine` (events_app/sqlite_engine.py): one long-lived, tuned connection per
event loop, statements run on the loop, group commit, checkpoints off the loop. On PostgreSQL,
Piccolo's `PostgresEngine` with an asyncpg pool opened in the app's lifespan.

`fetch()` runs one SQL text with `{}` placeholders on either engine (`changes()` one that only
needs to tell how many rows it changed); `atomic()` runs a unit of work atomically (sharing a
commit on SQLite); `is_unique_violation()` recognises a
unique-constraint error from sqlite3 and from asyncpg alike, `is_outage()` an unreachable
database (web/errors.py answers it with 503).
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any, TypeVar

from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.querystring import QueryString

from .settings import Settings, server
from .sqlite_engine import FastSQLiteEngine, InsertPlan, insert_plan
from .sqlite_engine import datetime_text as sqlite_datetime  # noqa: F401  (seats.py binds it)

T = TypeVar("T")
log = logging.getLogger(__name__)


def postgres_config(url: str) -> dict:
    """asyncpg's connection settings from a postgresql:// URL (split by settings.server)."""
    parts = server(url, "EVENTS_DATABASE_URL")
    config: dict[str, Any] = {
        "host": parts.host or "localhost",
        "port": parts.port or 5432,
        "database": (parts.path or "/").lstrip("/") or "postgres",
    }
    if parts.username:
        config["user"] = parts.username
    if parts.password:
        config["password"] = parts.password
    return config


def make_engine(settings: Settings) -> Engine:
    if settings.is_sqlite:
        return FastSQLiteEngine(path=settings.sqlite_path)
    return PostgresEngine(config=postgres_config(settings.database_url))


_engine: Engine | None = None


def engine() -> Engine:
    """The process's engine, made from the settings on first use and bound to every table."""
    global _engine
    if _engine is None:
        from . import settings as settings_module
        from .tables import ALL_TABLES

        _engine = make_engine(settings_module.get())
        for table in ALL_TABLES:
            table._meta.db = _engine
    return _engine


def reset() -> None:
    """Drop the process's engine (tests switch databases)."""
    global _engine
    if isinstance(_engine, FastSQLiteEngine):
        _engine.close()
    _engine = None
    _statistics_known.clear()
    _statistics_next_check.clear()


async def start() -> None:
    """Open the PostgreSQL pool (no-op on SQLite). Called from the app's and worker's startup."""
    eng = engine()
    if isinstance(eng, PostgresEngine):
        await eng.start_connection_pool(min_size=2, max_size=20)


async def stop() -> None:
    eng = engine()
    if isinstance(eng, PostgresEngine):
        await eng.close_connection_pool()


@lru_cache(maxsize=1024)
def _compile(sql: str, postgres: bool) -> str:
    """`{}` placeholders to `?` (sqlite3) or `$1, $2...` (asyncpg), once per statement text."""
    if not postgres:
        return sql.replace("{}", "?")
    parts = sql.split("{}")
    return "".join(part + (f"${i + 1}" if i < len(parts) - 1 else "") for i, part in enumerate(parts))


@lru_cache(maxsize=1024)
def _sqlite_plan(sql: str) -> tuple[str, InsertPlan | None]:
    """The SQLite text of `sql`, and its InsertPlan when it is a one-row INSERT ... RETURNING id
    (run without the clause, sqlite_engine.py), once per statement text."""
    query = _compile(sql, False)
    return query, insert_plan(query)


async def fetch(sql: str, *args: Any) -> list[dict]:
    """Run one statement with `{}` placeholders on whichever engine is configured, inside the
    current Piccolo transaction when there is one. The SQL text is compiled once and reused:
    building a Piccolo QueryString per call cost more than running the statement (the hot
    paths issue several per request). Values are plain Python (str, int, bool, None, aware
    datetime); Piccolo's sqlite3 adapters store datetimes in UTC, asyncpg binds them natively."""
    eng = engine()
    current = eng.current_transaction.get()
    if isinstance(eng, FastSQLiteEngine):
        query, plan = _sqlite_plan(sql)
        if current is not None:
            return current.connection.fetch(query, args, plan)
        conn = eng.loop_connection()
        if not conn.lock.locked():
            # No transaction is open on the connection, and the statement runs to its end
            # without yielding to the loop: taking the lock would only cost time (a cached page
            # is one such statement).
            return conn.fetch(query, args, plan)
        async with conn.lock:
            return conn.fetch(query, args, plan)
    query = _compile(sql, True)
    if current is not None:
        rows = await current.connection.fetch(query, *args)
    elif isinstance(eng, PostgresEngine) and eng.pool is not None:
        rows = await eng.pool.fetch(query, *args)
    else:
        rows = await eng.run_querystring(QueryString(sql, *args))
    return [dict(row) for row in rows]


async def has_statistics(table: str, column: str) -> bool:
    """Whether PostgreSQL's planner has statistics of `table`.`column` (ANALYZE, by hand or by
    autovacuum, has sampled it); always True on SQLite, whose planner keeps none."""
    if not is_postgres():
        return True
    rows = await fetch(
        "SELECT EXISTS (SELECT 1 FROM pg_stats WHERE schemaname = ANY (current_schemas(false)) "
        "AND tablename = {} AND attname = {}) AS known",
        table,
        column,
    )
    return bool(rows[0]["known"])


async def analyze(table: str) -> None:
    """Have PostgreSQL's planner sample `table` now (ANALYZE; no-op on SQLite). Plans cached on
    every connection are made again from the new statistics at their next run."""
    if is_postgres():
        await fetch(f'ANALYZE "{table}"')


_clock: Callable[[], float] = time.monotonic  # paces ensure_statistics (tests set their own)
_statistics_known: set[tuple[str, str]] = set()
_statistics_next_check: dict[tuple[str, str], float] = {}


async def ensure_statistics(table: str, column: str) -> None:
    """Have `table` analysed while PostgreSQL's planner has no statistics of `table`.`column`,
    asking at most once a second, and never again once it has (a no-op on SQLite).

    On a new database the planner has none until autovacuum's first ANALYZE, up to a minute after
    the first rows (the length of a rush; never where autovacuum is off). Meanwhile it costs
    finding a registration's address through the event's (event, created_at) or (event, status)
    index, filtering on the address, the same as through (event, email), and took the first: each
    group claim read every registration of its event (measured on a fresh database: a group of 32
    in 3 ms at the start, 19 ms 10,000 rows later, generic and custom plans alike). After ANALYZE
    PostgreSQL makes every cached plan again. A failure is logged, never raised: the caller's
    work goes on, and the next check is a second away."""
    key = (table, column)
    if key in _statistics_known:
        return
    now = _clock()
    if now < _statistics_next_check.get(key, 0.0):
        return
    _statistics_next_check[key] = now + 1.0
    try:
        known = await has_statistics(table, column)
        if not known:
            await analyze(table)
            known = await has_statistics(table, column)
    except Exception as exc:
        log.warning("could not have the %s table analysed: %s", table, exc)
        return
    if known:
        _statistics_known.add(key)


async def changes(sql: str, *args: Any) -> int:
    """Run one INSERT, UPDATE or DELETE with `{}` placeholders, as `fetch` does, and return the
    number of rows it changed. Cheaper than asking for rows with RETURNING when only whether it
    changed anything matters: on SQLite a RETURNING clause costs about a third of the statement."""
    eng = engine()
    current = eng.current_transaction.get()
    if isinstance(eng, FastSQLiteEngine):
        query = _compile(sql, False)
        if current is not None:
            return current.connection.changes(query, args)
        conn = eng.loop_connection()
        if not conn.lock.locked():
            return conn.changes(query, args)
        async with conn.lock:
            return conn.changes(query, args)
    query = _compile(sql, True)
    if current is not None:
        status = await current.connection.execute(query, *args)
    elif isinstance(eng, PostgresEngine) and eng.pool is not None:
        status = await eng.pool.execute(query, *args)
    else:
        assert isinstance(eng, PostgresEngine)
        connection = await eng.get_new_connection()
        try:
            status = await connection.execute(query, *args)
        finally:
            await connection.close()
    # asyncpg answers the command tag: "UPDATE 3", "DELETE 0", "INSERT 0 1".
    return int(status.rsplit(" ", 1)[-1])


async def atomic(work: Callable[[], Awaitable[T]]) -> T:
    """Run `work` (an async callable issuing statements through `fetch`) atomically. On SQLite
    concurrent units share one commit (group commit); on PostgreSQL each is its own transaction.
    `work` may be run again by the caller's retry logic; on SQLite also by this function, once,
    when another unit sharing its transaction failed (that first run was rolled back, and its
    result never returned): `work` must act on the database only, through `fetch`."""
    eng = engine()
    if isinstance(eng, FastSQLiteEngine) and eng.current_transaction.get() is None:
        return await eng.batched(work)
    async with eng.transaction():
        return await work()


@asynccontextmanager
async def transaction() -> AsyncIterator[None]:
    """One atomic unit of work: BEGIN IMMEDIATE on SQLite, a READ COMMITTED transaction on
    PostgreSQL. Nested use joins the outer transaction."""
    async with engine().transaction():
        yield


def in_transaction() -> bool:
    """True inside a transaction (`transaction()`, or `atomic()` on PostgreSQL)."""
    return engine().current_transaction.get() is not None


def is_unique_violation(exc: BaseException) -> bool:
    """True for a unique-constraint violation from sqlite3 or asyncpg."""
    if isinstance(exc, sqlite3.IntegrityError):
        return "UNIQUE constraint failed" in str(exc)
    try:
        import asyncpg
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, asyncpg.exceptions.UniqueViolationError)


def is_outage(exc: BaseException) -> bool:
    """True when `exc` (or what caused it) means the database cannot be reached just now: a
    PostgreSQL server stopping, restarting or refusing connections, a connection lost mid-query,
    a connect that timed out, or SQLite still locked after its busy timeout. The statement did
    not take effect, or its transaction was rolled back with the connection: trying again later
    is right. asyncpg's pool replaces a broken connection on its next acquire, so the app
    recovers by itself once the server answers again."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_outage_error(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _is_outage_error(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.OperationalError):
        return "database is locked" in str(exc)
    if isinstance(exc, (ConnectionError, TimeoutError)):  # refused, reset; connect timed out
        return True
    if isinstance(exc, OSError) and (
        exc.errno in _NETWORK_ERRNOS or "Connect call failed" in str(exc)  # asyncloop, several addresses
    ):
        return True
    try:
        import asyncpg
    except ImportError:  # pragma: no cover
        return False
    if isinstance(exc, asyncpg.exceptions.InterfaceError):  # only a closed connection or pool
        return "closed" in str(exc) or "closing" in str(exc)
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        # A pooled connection the server ended while it sat idle: its protocol state is left
        # mid-message ("cannot switch to state 12; another operation (2) is in progress",
        # asyncpg issues #784 and #1069). The pool terminates it when it fails to reset.
        return "another operation" in str(exc)
    return isinstance(
        exc,
        (
            asyncpg.exceptions.PostgresConnectionError,  # connection lost or failed (08xxx)
            asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up (57xxx)
        ),
    )


_NETWORK_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ETIMEDOUT,
    errno.EPIPE,
}


async def while_away(work: Callable[[], Awaitable[T]], within: float = 60.0) -> T:
    """Run `work`, an idempotent write, again while the database is away (`is_outage`), with a
    growing pause, for up to `within` seconds; then let the error through. For recording what
    already happened outside the database (a message handed to the mail server): giving up at
    the first failure would have that done twice once the row is retried."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline, pause = loop.time() + within, 0.1
    while True:
        try:
            return await work()
        except Exception as exc:
            if not is_outage(exc) or loop.time() + pause > deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 2.0)


def is_postgres() -> bool:
    return isinstance(engine(), PostgresEngine)


def sql_in(column: str, values: list) -> tuple[str, list]:
    """`column IN (...)` as (SQL, arguments). On PostgreSQL it is `column = ANY({})` with one
    array parameter. With a thousand separate parameters (asyncpg prepares every statement), the
    lookup of known hashes went from about 5 ms to 2 s per batch once a fresh test database held
    some 70,000 subscribers (the server changed plan on the way, as statistics caught up), which
    made a 100,000-row import take 90 s instead of 10; with one array it stays an index lookup."""
    if is_postgres():
        return f"{column} = ANY({{}})", [list(values)]
    marks = ", ".join(["{}"] * len(values))
    return f"{column} IN ({marks})", list(values)
