"""The SQLite engine: Piccolo's `SQLiteEngine` on one long-lived, tuned connection per event loop.

Piccolo's stock engine opens a new aiosqlite connection (and thread) for every query and sets
neither WAL nor a busy timeout: about 260 inserts/s here. `FastSQLiteEngine` keeps one `sqlite3`
connection per event loop (WAL, synchronous=NORMAL, busy timeout) and runs statements directly on
the loop: an SQLite statement costs microseconds, far less than a hop to a thread. Statements of
one transaction are kept together by an asyncio lock; write transactions start with BEGIN
IMMEDIATE so that two processes never deadlock on a lock upgrade. Units of work arriving in one
turn of the loop share a commit (group commit); WAL checkpoints run on a thread of their own.
`events_app/db.py` chooses the engine and offers `fetch()` and `atomic()` on top.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from piccolo.engine.sqlite import SQLiteEngine, SQLiteTransaction, TransactionType
from piccolo.engine.sqlite import convert_datetime_in as _piccolo_datetime_in

T = TypeVar("T")


# Piccolo reads every INTEGER column through int(Decimal(value)); our integers are integers, and
# plain int() is four times cheaper on the hot paths.
sqlite3.register_converter("INTEGER", int)


# The last datetime stored and its text. A registration binds the same moment three times and
# the outbox's twice; Piccolo's adapter (to UTC, then str()) cost about 16,000 instructions per
# value, some 9% of a registration's server work (bench/profile_registration_inproc.py
# --callgrind). One (value, text) pair, replaced whole, so that threads never see a mismatch; the
# pair holds its datetime, so `is` never meets a new object at an old address.
_last_datetime: tuple[datetime | None, str] = (None, "")


def _datetime_in(value: datetime) -> str:
    """Piccolo's convert_datetime_in (aware values in UTC, then str()), remembering the last."""
    global _last_datetime
    last = _last_datetime
    if last[0] is value:
        return last[1]
    # A value in UTC already (the clock's) is its own conversion: str() is isoformat(" ").
    text = value.isoformat(" ") if value.tzinfo is UTC else _piccolo_datetime_in(value)
    _last_datetime = (value, text)
    return text


def datetime_text(value: datetime) -> str:
    """The text SQLite stores for `value` (what binding it stores), for a statement that binds
    one moment several times: binding the text skips the adapter's call per value."""
    return _datetime_in(value)


sqlite3.register_adapter(datetime, _datetime_in)


def _dict_factory(cursor: sqlite3.Cursor, row: tuple) -> dict:
    return {col[0]: row[idx] for idx, col in enumerate(cursor.description)}


class _LoopConnection:
    """One sqlite3 connection used by one event loop, with the lock that keeps a transaction's
    statements together. Offers the small async surface Piccolo's transaction code calls."""

    def __init__(self, path: str, timeout: float) -> None:
        self.raw = sqlite3.connect(
            path,
            timeout=timeout,
            isolation_level=None,
            check_same_thread=False,
            detect_types=sqlite3.PARSE_DECLTYPES | sqlite3.PARSE_COLNAMES,
        )
        self.raw.row_factory = _dict_factory
        self.raw.execute("PRAGMA journal_mode=WAL")
        self.raw.execute("PRAGMA synchronous=NORMAL")
        self.raw.execute("PRAGMA foreign_keys=ON")
        self.raw.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        # Checkpoints run on the engine's own thread (Checkpointer below); a commit that crossed
        # SQLite's default 1,000-page threshold copied the WAL back inside the commit, a stall of
        # up to ~9 ms for every request waiting behind it (p99 69 ms at 64 clients). The high
        # threshold stays as a safety net should that thread ever fall behind.
        self.raw.execute(f"PRAGMA wal_autocheckpoint={SAFETY_CHECKPOINT_PAGES}")
        self.raw.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        self.lock = asyncio.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.batch: dict | None = None

        # Tables whose `id` is SQLite's rowid (INTEGER PRIMARY KEY of a rowid table), by name.
        self.rowid_ids: dict[str, bool] = {}

    async def execute(self, query: str, args: Any = ()) -> list[dict]:
        return self.raw.execute(query, args or ()).fetchall()

    def run(self, query: str, args: Any = ()) -> list[dict]:
        return self.raw.execute(query, args or ()).fetchall()

    def changes(self, query: str, args: Any = ()) -> int:
        """Run one INSERT, UPDATE or DELETE; the number of rows it changed."""
        return self.raw.execute(query, args or ()).rowcount

    def fetch(self, query: str, args: Any, plan: InsertPlan | None) -> list[dict]:
        """Run `query`; with a `plan` (a one-row INSERT ... RETURNING id, see `insert_plan`) the
        same rows from the statement without its RETURNING clause, when the table's id is its
        rowid: SQLite runs a RETURNING clause through a temporary table of its own (a B-tree,
        a pager and a zeroed page opened and closed per statement), about a third of the
        statement's cost. [{"id": new id}], or [] when ON CONFLICT DO NOTHING inserted nothing."""
        if plan is not None and self.id_is_rowid(plan.table):
            cursor = self.raw.execute(plan.bare, args or ())
            return [{"id": cursor.lastrowid}] if cursor.rowcount == 1 else []
        return self.raw.execute(query, args or ()).fetchall()

    def id_is_rowid(self, table: str) -> bool:
        """Whether `table`'s `id` column is its rowid, so that sqlite3_last_insert_rowid() is the
        id of the row an INSERT wrote: its only primary key column, declared INTEGER, and no index
        made for the primary key (a WITHOUT ROWID table, or INTEGER PRIMARY KEY DESC, has one).
        Asked once per table and connection."""
        known = self.rowid_ids.get(table)
        if known is None:
            columns = self.raw.execute(f'PRAGMA table_info("{table}")').fetchall()
            if not columns:  # no such table (yet): the statement will say so; not remembered
                return False
            keys = [column for column in columns if column["pk"]]
            indexes = self.raw.execute(f'PRAGMA index_list("{table}")').fetchall()
            known = self.rowid_ids[table] = (
                len(keys) == 1
                and keys[0]["name"] == "id"
                and keys[0]["type"].upper() == "INTEGER"
                and not any(index["origin"] == "pk" for index in indexes)
            )
        return known

    async def close(self) -> None:  # the connection lives as long as the engine
        return None


class InsertPlan(NamedTuple):
    """A one-row INSERT ... RETURNING id: its table and its text without the RETURNING clause."""

    table: str
    bare: str


# One row of VALUES (no parentheses inside, so never two rows), optionally ON CONFLICT (...) DO
# NOTHING (never DO UPDATE: an update is no insert and leaves the last insert's rowid).
_ONE_ROW_INSERT = re.compile(
    r"\AINSERT INTO (\w+) \([^()]*\) VALUES \([^()]*\)(?: ON CONFLICT \([^()]*\) DO NOTHING)?( RETURNING id)\Z"
)


def insert_plan(query: str) -> InsertPlan | None:
    """The InsertPlan of `query` (compiled, `?` placeholders) when it is a one-row INSERT that
    returns only its id, else None."""
    match = _ONE_ROW_INSERT.match(query)
    if match is None:
        return None
    return InsertPlan(match.group(1), query[: match.start(2)])


SAFETY_CHECKPOINT_PAGES = 20_000
JOURNAL_SIZE_LIMIT = 64 * 2**20


class Checkpointer:
    """Copies the WAL back into the database from a thread of its own, on its own connection,
    so that no commit on the event loop pays for it. A PASSIVE checkpoint never blocks writers;
    the next writer restarts the WAL from its beginning once everything was copied. When writes
    never pause long enough for that, a RESTART (writers wait while it finishes the little that
    PASSIVE left) keeps the file bounded. sqlite3 releases the GIL while it works."""

    INTERVAL = 0.2
    RESTART_FRAMES = 4_000

    def __init__(self, path: str, timeout: float) -> None:
        self.path, self.timeout = path, timeout
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        try:
            while not self.stop_event.wait(self.INTERVAL):
                try:
                    _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if frames > self.RESTART_FRAMES:
                        conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                except sqlite3.Error:  # busy or the file went away: try again next time
                    continue
        finally:
            conn.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=5)


class FastSQLiteTransaction(SQLiteTransaction):
    """A Piccolo transaction on the loop's long-lived connection, holding its lock."""

    # What FastSQLiteEngine.transaction() makes: on our engine, inside one of ours, on our connection.
    engine: FastSQLiteEngine
    _parent: FastSQLiteTransaction | None
    connection: _LoopConnection

    async def __aenter__(self) -> FastSQLiteTransaction:
        if self._parent is not None:
            return self._parent
        self.connection = self.engine.loop_connection()
        await self.connection.lock.acquire()
        try:
            self.connection.run("BEGIN IMMEDIATE")
        except BaseException:
            self.connection.lock.release()
            raise
        self.context = self.engine.current_transaction.set(self)
        return self

    async def begin(self) -> None:  # pragma: no cover - done in __aenter__
        self.connection.run("BEGIN IMMEDIATE")

    async def __aexit__(self, exception_type, exception, traceback) -> bool:
        if self._parent:
            return exception is None
        try:
            if exception:
                # SQLite has already rolled back after some errors (a full disk, an interrupt).
                if not self._rolled_back and self.connection.raw.in_transaction:
                    self.connection.run("ROLLBACK")
                    self._rolled_back = True
            elif not self._committed and not self._rolled_back:
                try:
                    self.connection.run("COMMIT")
                    self._committed = True
                except BaseException:
                    if self.connection.raw.in_transaction:
                        self.connection.run("ROLLBACK")
                    raise
        finally:
            self.engine.current_transaction.reset(self.context)
            self.connection.lock.release()
        return exception is None


def create_private_file(path: str) -> None:
    """Create the database file (and its folder) readable by its owner only, before SQLite opens
    it: SQLite gives its -wal and -shm files the database file's permissions, and would otherwise
    create the database with whatever the umask allows (world-readable by default). An empty file
    is a valid, empty database. An existing file keeps its mode."""
    if path == ":memory:" or path.startswith("file:"):
        return
    folder = Path(path).parent
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(folder, 0o700)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


class FastSQLiteEngine(SQLiteEngine):
    """Piccolo's SQLite engine on one persistent, tuned connection per event loop."""

    def __init__(self, path: str, timeout: float = 10.0, **kwargs: Any) -> None:
        super().__init__(path=path, **kwargs)
        self.timeout = timeout
        self._local = threading.local()
        self._all: list[_LoopConnection] = []
        self._checkpointer: Checkpointer | None = None

    # Group commit -------------------------------------------------------------------------
    # A commit writes every page the transaction touched to the WAL (about ten for a
    # registration: the event row, the registration and outbox rows and their indexes). Units of
    # work that arrive in the same turn of the event loop therefore share one transaction; every
    # caller hears its result only after the shared COMMIT.
    #
    # One failing unit must roll back alone. Units run one after another without savepoints (a
    # SAVEPOINT and a RELEASE per unit cost about 2% of a registration, and nearly every unit
    # succeeds); when one raises, the whole transaction is rolled back and the batch runs again
    # in a new one, the units before it again and the rest for the first time, each inside its
    # own SAVEPOINT (`_careful`). The failed unit is not run again: its exception is its answer,
    # as it would have been in a savepoint (it saw the same state). A unit may so run twice, its
    # first run undone and never seen by anyone: `work` must act only on the database (db.atomic).
    BATCH_LIMIT = 64

    async def batched(self, work: Callable[[], Awaitable[T]]) -> T:
        state = self._batch_state()
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        state["pending"].append((work, future))
        if not state["scheduled"]:
            state["scheduled"] = True
            asyncio.get_running_loop().call_soon(self._start_flush, state)
        return await future

    def _start_flush(self, state: dict) -> None:
        # The loop keeps only weak references to tasks: hold the flush until it is done.
        task = asyncio.ensure_future(self._flush(state))
        state["tasks"].add(task)
        task.add_done_callback(state["tasks"].discard)

    def _batch_state(self) -> dict:
        conn = self.loop_connection()
        batch = conn.batch
        if batch is None or batch["loop"] is not conn.loop:
            batch = conn.batch = {"pending": [], "scheduled": False, "loop": conn.loop, "tasks": set()}
        return batch

    async def _flush(self, state: dict) -> None:
        batch = state["pending"][: self.BATCH_LIMIT]
        del state["pending"][: self.BATCH_LIMIT]
        if state["pending"]:
            asyncio.get_running_loop().call_soon(self._start_flush, state)
        else:
            state["scheduled"] = False
        outcomes: list[tuple[Any, Exception | None]]
        try:
            first = await self._optimistic(batch)
            if isinstance(first, tuple):  # a unit failed: everything was rolled back
                outcomes = await self._careful(batch, *first)
            else:
                outcomes = first
        except BaseException as exc:  # the shared commit failed: nobody's work happened
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), (result, error) in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    async def _optimistic(self, batch: list) -> list[tuple[Any, Exception | None]] | tuple[int, Exception]:
        """Every unit in one transaction, committed: their results; or, when a unit raised, the
        transaction rolled back whole and (the failed unit's place, its exception)."""
        results: list[tuple[Any, Exception | None]] = []
        async with self.transaction() as tx:
            for place, (work, _) in enumerate(batch):
                try:
                    results.append((await work(), None))
                except Exception as exc:
                    if tx.connection.raw.in_transaction:  # SQLite may have rolled back already
                        tx.connection.run("ROLLBACK")
                    tx._rolled_back = True  # so the transaction's exit does not commit
                    return place, exc
        return results

    async def _careful(self, batch: list, failed: int, error: Exception) -> list[tuple[Any, Exception | None]]:
        """The batch again after unit `failed` raised `error`, each other unit in a savepoint of
        one transaction (committed); the failed one keeps its error."""
        outcomes: list[tuple[Any, Exception | None]] = []
        async with self.transaction() as tx:
            for place, (work, _) in enumerate(batch):
                if place == failed:
                    outcomes.append((None, error))
                    continue
                tx.connection.run("SAVEPOINT unit")
                try:
                    result = await work()
                except Exception as exc:  # this unit only: undo it, keep the others
                    tx.connection.run("ROLLBACK TO unit")
                    tx.connection.run("RELEASE unit")
                    outcomes.append((None, exc))
                else:
                    tx.connection.run("RELEASE unit")
                    outcomes.append((result, None))
        return outcomes

    def loop_connection(self) -> _LoopConnection:
        # One connection per thread; each thread runs at most one event loop. Tests run the app in
        # a second thread and loop, and sqlite coordinates the two connections with its own locks.
        conn = getattr(self._local, "conn", None)
        if conn is None:
            create_private_file(self.path)
            conn = _LoopConnection(self.path, self.timeout)
            self._local.conn = conn
            self._all.append(conn)
            if self._checkpointer is None:
                self._checkpointer = Checkpointer(self.path, self.timeout)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None and conn.loop is not loop:
            # A thread that runs a second loop (asyncio.run twice) needs a lock of that loop.
            conn.loop, conn.lock = loop, asyncio.Lock()
        return conn

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        for conn in self._all:
            conn.raw.close()
        self._all.clear()
        self._local = threading.local()

    async def _run(self, query: str, args: list | None) -> list[dict]:
        current = self.current_transaction.get()
        if current is not None:
            return current.connection.run(query, args)
        conn = self.loop_connection()
        async with conn.lock:
            return conn.run(query, args)

    async def _run_in_new_connection(self, query, args=None, query_type="generic", table=None):
        return await self._run(query, args)

    async def _run_in_existing_connection(self, connection, query, args=None, query_type="generic", table=None):
        return connection.run(query, args)

    async def get_connection(self):  # used by Piccolo's batch(); our callers page instead
        return self.loop_connection()

    def transaction(
        self,
        transaction_type: TransactionType = TransactionType.immediate,
        allow_nested: bool = True,
    ) -> FastSQLiteTransaction:
        return FastSQLiteTransaction(engine=self, transaction_type=TransactionType.immediate, allow_nested=allow_nested)
