"""Importing already-consented subscribers from a CSV file (`events-app subscribers import`).

The file needs a header row naming an `email` column (or `E-mail`, `Email address`) and optionally
a `name` column (header names are case-insensitive; other columns are ignored). Cells are separated
by commas, semicolons (as Excel writes CSV where the decimal mark is a comma) or tabs: the header
row tells which; a UTF-8 byte-order mark is ignored. It is read as a stream, a batch of `BATCH_SIZE`
rows per transaction, so neither the file nor the report's counts depend on memory.

What each row does:
  - a bad row (missing or invalid email, overlong name, control characters, undecodable bytes)
    is skipped and reported with the line it starts on;
  - an unknown address becomes a `confirmed` subscriber (source `import`, confirmed now) with the
    given topics: the list owner vouches for the consent;
  - an existing `pending` subscriber becomes `confirmed` (the list owner vouches for consent,
    which is what a confirmation would have shown) and gains the topics; a confirmation email
    still queued for them is dropped by the worker, which re-checks the status at send time;
  - an existing `confirmed` subscriber only gains the topics (paused stays paused);
  - an address whose hash belongs to an `unsubscribed` or `erased` subscriber is skipped and
    reported: only its owner can come back, by a new double opt-in. This holds while someone
    has asked to subscribe it again: that request keeps the status (domain/subscriptions.py), so
    the list owner's vouching never stands in for the owner's own confirmation;
  - names of existing subscribers are never changed (the person's own choice wins).

The import writes one audit entry (`subscribers.import` by `actor`; None: the CLI), with the
report's summary, in the transaction of its last batch: an import that fails half-way leaves the
batches already stored, and no entry claiming it finished.

Importing the same file again writes nothing: addresses already known are read per batch with
one SELECT by `email_hash`, and only missing subscribers and (subscriber, topic) pairs are
inserted (`ON CONFLICT DO NOTHING` covers a concurrent sign-up), so no row, timestamp or, on
PostgreSQL, sequence value changes.
"""

from __future__ import annotations

import csv
import itertools
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .. import clock, db, tokens
from . import audit
from . import validation as v
from .errors import ValidationFailed
from .subscriptions import topic_ids

BATCH_SIZE = 1000
MAX_NAME = 200
MAX_LISTED_PROBLEMS = 100_000  # beyond this, problems are counted but not listed
# Multi-row statements stay well below SQLite's (32766) and PostgreSQL's (32767) parameter limits.
MAX_PARAMS = 6000

# Reasons for skipped rows that are not invalid input.
ERASED = "the address was erased at its owner's request; not re-added"
UNSUBSCRIBED = "the address unsubscribed; not re-added (only its owner can subscribe again)"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Progress = Callable[[int, int, int], None]
"""progress(bytes_read, bytes_total, rows_read), called after every batch."""


@dataclass
class ImportReport:
    topics: list[str]
    rows: int = 0  # data rows read (blank lines not counted)
    imported: int = 0  # new subscribers
    updated: int = 0  # existing subscribers confirmed or given new topics
    unchanged: int = 0  # already confirmed with every topic (including repeats within the file)
    invalid: int = 0
    erased: int = 0
    unsubscribed: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line, reason), in file order
    problems_not_listed: int = 0

    @property
    def skipped(self) -> int:
        return self.invalid + self.erased + self.unsubscribed

    def problem(self, line: int, reason: str) -> None:
        if len(self.problems) < MAX_LISTED_PROBLEMS:
            self.problems.append((line, reason))
        else:
            self.problems_not_listed += 1

    def summary(self) -> str:
        return (
            f"imported {self.imported:,}, updated {self.updated:,}, unchanged {self.unchanged:,}, "
            f"skipped {self.skipped:,} (invalid {self.invalid:,}, erased {self.erased:,}, "
            f"unsubscribed {self.unsubscribed:,}) of {self.rows:,} rows; topics: {', '.join(self.topics)}"
        )


@dataclass
class _Row:
    line: int
    email: str
    name: str
    hash: str


class _CountingLines:
    """The file's lines as text for csv.reader, counting the bytes read (for the progress bar).
    Bytes that are not UTF-8 become U+FFFD, and the row holding them is reported, not guessed at."""

    def __init__(self, raw: Iterable[bytes]) -> None:
        self.raw = raw
        self.bytes_read = 0

    def __iter__(self) -> Iterator[str]:
        first = True
        for chunk in self.raw:
            self.bytes_read += len(chunk)
            text = chunk.decode("utf-8", errors="replace")
            if first:
                text = text.removeprefix("\ufeff")  # spreadsheets write a byte-order mark
                first = False
            yield text


def _fail(reason: str) -> ValidationFailed:
    return ValidationFailed({"file": reason})


# Header names accepted for each column, compared case-insensitively (spreadsheet and mailing
# tools' exports name them so).
EMAIL_HEADERS = ("email", "e-mail", "email address", "e-mail address")
NAME_HEADERS = ("name", "full name")
# What spreadsheets write between cells: commas, semicolons (Excel where the decimal mark is a
# comma), tabs ("Text (tab delimited)").
DELIMITERS = (",", ";", "\t")


def sniff_delimiter(header_line: str) -> str:
    """The delimiter of a file whose first line is `header_line`: the one that splits it into
    the most cells with one of them an email header; a comma when none does."""
    best, best_cells = ",", 0
    for delimiter in DELIMITERS:
        try:
            cells = next(csv.reader([header_line], delimiter=delimiter), [])
        except csv.Error:
            continue
        names = [c.strip().lower() for c in cells]
        if any(n in EMAIL_HEADERS for n in names) and len(cells) > best_cells:
            best, best_cells = delimiter, len(cells)
    return best


def _column(names: list[str], accepted: tuple[str, ...]) -> int | None:
    return next((i for i, n in enumerate(names) if n in accepted), None)


def _header(reader: Iterator[list[str]], path: Path) -> tuple[int, int | None]:
    """(index of the email column, index of the name column or None)."""
    try:
        header = next(reader)
    except StopIteration:
        raise _fail(f"{path} is empty; it needs a header row with an 'email' column") from None
    except csv.Error as exc:
        raise _fail(f"{path}: line 1: {exc}") from None
    names = [h.strip().lower() for h in header]
    email_at = _column(names, EMAIL_HEADERS)
    if email_at is None:
        found = ", ".join(repr(h) for h in header[:10] if h.strip()) or "nothing"
        raise _fail(f"{path} has no 'email' column in its header row (found {found})")
    return email_at, _column(names, NAME_HEADERS)


def _clean(cells: list[str], email_at: int, name_at: int | None) -> tuple[str, str]:
    """(email, name) of one data row, or ValidationFailed naming the field."""
    raw_email = cells[email_at] if email_at < len(cells) else ""
    raw_name = cells[name_at] if name_at is not None and name_at < len(cells) else ""
    if "\ufffd" in raw_email or "\ufffd" in raw_name:
        raise ValidationFailed({"row": "is not valid UTF-8"})
    email = v.email(raw_email)
    name = raw_name.strip()
    if len(name) > MAX_NAME:
        raise ValidationFailed({"name": f"must be at most {MAX_NAME} characters"})
    if _CONTROL.search(name):
        raise ValidationFailed({"name": "must be one line without control characters"})
    return email, name


def _reason(exc: ValidationFailed) -> str:
    return "; ".join(f"{k}: {r}" for k, r in exc.fields.items())


def _placeholders(count: int, width: int = 1) -> str:
    one = "(" + ", ".join(["{}"] * width) + ")" if width > 1 else "{}"
    return ", ".join([one] * count)


def _chunks(items: list, width: int) -> Iterator[list]:
    size = max(1, MAX_PARAMS // width)
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def import_csv(
    path: str | os.PathLike,
    topics: list[str] | None,
    progress: Progress | None = None,
    *,
    actor: int | None = None,
    file_name: str | None = None,
) -> ImportReport:
    """Import the CSV file at `path` into `topics` (slugs; default: the bulletin). Raises
    ValidationFailed (field `topics` or `file`) before writing anything for an unknown topic, a
    missing or unreadable file or a header without `email`; bad rows are reported, not raised.
    Audit: `subscribers.import` by `actor`, "<file_name (default: the path's name)>: <summary>"."""
    ids = await topic_ids(list(topics) if topics else None, "topic")
    path = Path(path)
    try:
        # The CLI reads one local file, once, before any concurrent work starts.
        handle = open(path, "rb")  # noqa: ASYNC230
    except FileNotFoundError:
        raise _fail(f"{path} does not exist") from None
    except IsADirectoryError:
        raise _fail(f"{path} is a directory, not a CSV file") from None
    except OSError as exc:
        raise _fail(f"{path} cannot be read: {exc.strerror or exc}") from None
    report = ImportReport(topics=list(ids))

    async def record() -> None:
        name = file_name or path.name
        await audit.record(actor, "subscribers.import", "topic", None, f"{name}: {report.summary()}")

    with handle:
        try:
            total = os.fstat(handle.fileno()).st_size
        except OSError:  # pragma: no cover - a pipe or similar
            total = 0
        lines = _CountingLines(handle)
        text = iter(lines)
        first = next(text, "")
        reader = csv.reader(itertools.chain([first] if first else [], text), delimiter=sniff_delimiter(first))
        email_at, name_at = _header(reader, path)
        batch: list[_Row] = []
        previous_end = reader.line_num
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:  # e.g. a field over the csv module's size limit
                report.rows += 1
                report.invalid += 1
                report.problem(previous_end + 1, f"row: {exc}")
                previous_end = reader.line_num
                continue
            line, previous_end = previous_end + 1, reader.line_num
            if not cells or not any(c.strip() for c in cells):
                continue  # blank lines are not rows
            report.rows += 1
            try:
                email, name = _clean(cells, email_at, name_at)
            except ValidationFailed as exc:
                report.invalid += 1
                report.problem(line, _reason(exc))
                continue
            batch.append(_Row(line, email, name, tokens.email_hash(email)))
            if len(batch) >= BATCH_SIZE:
                await _store(batch, list(ids.values()), report)
                batch = []
                if progress is not None:
                    progress(lines.bytes_read, total, report.rows)
        await _store(batch, list(ids.values()), report, finish=record)
        if progress is not None:
            progress(lines.bytes_read, max(total, lines.bytes_read), report.rows)
    report.problems.sort(key=lambda p: p[0])  # refusals are found per batch, after bad rows
    return report


def _stored_time(moment: datetime) -> datetime | str:
    """The moment as the engine stores it. On SQLite that is the text Piccolo's sqlite3 adapter
    makes of an aware datetime (UTC, `str()`); passing it ready-made saves converting the same
    value twice per row (0.6 s of a 100,000-row import). asyncpg takes the datetime itself."""
    return moment if db.is_postgres() else str(moment.astimezone(UTC))


async def _store(
    batch: list[_Row], topic_ids_: list[int], report: ImportReport, finish: Callable[[], Awaitable[None]] | None = None
) -> None:
    """One batch in one transaction: read what is known, insert what is missing; then `finish`
    (the last batch's audit entry), in the same transaction."""
    if not batch:
        if finish is not None:
            async with db.transaction():
                await finish()
        return
    moment = _stored_time(clock.now())
    first: dict[str, _Row] = {}
    for row in batch:
        if row.hash in first:
            report.unchanged += 1  # a repeat within the file: the first occurrence decides
        else:
            first[row.hash] = row
    async with db.transaction():
        known = await _known(list(first))
        new = [row for h, row in first.items() if h not in known]
        if new:
            created = await _insert_subscribers(new, moment)
            report.imported += len(created)
            known.update(created)
            missed = [row.hash for row in new if row.hash not in created]
            if missed:  # signed up meanwhile (PostgreSQL, READ COMMITTED): treat as known
                known.update(await _known(missed))
        fresh = {known[row.hash][0] for row in new if row.hash in known and known[row.hash][1] == "new"}
        keep: list[int] = []  # subscriber ids that get the topics
        pending: list[int] = []
        for h, row in first.items():
            if h not in known:  # inserted by someone else and gone again before we looked
                report.unchanged += 1
                continue
            sid, status = known[h]
            if status == "erased":
                report.erased += 1
                report.problem(row.line, ERASED)
            elif status == "unsubscribed":
                report.unsubscribed += 1
                report.problem(row.line, UNSUBSCRIBED)
            else:
                keep.append(sid)
                if status == "pending":
                    pending.append(sid)
        for chunk in _chunks(pending, 1):
            ids_sql, ids_args = db.sql_in("id", chunk)
            await db.fetch(
                f"UPDATE subscriber SET status = 'confirmed', confirmed_at = {{}} WHERE status = 'pending' AND {ids_sql}",
                moment,
                *ids_args,
            )
        gained = await _add_topics([sid for sid in keep if sid not in fresh], fresh, topic_ids_, moment)
        pending_set = set(pending)
        for sid in keep:
            if sid in fresh:
                continue
            if sid in pending_set or sid in gained:
                report.updated += 1
            else:
                report.unchanged += 1
        if finish is not None:
            await finish()


async def _known(hashes: list[str]) -> dict[str, tuple[int, str]]:
    """email_hash -> (id, status) for the hashes that belong to a subscriber."""
    found: dict[str, tuple[int, str]] = {}
    for chunk in _chunks(hashes, 1):
        hashes_sql, args = db.sql_in("email_hash", chunk)
        rows = await db.fetch(f"SELECT id, email_hash, status FROM subscriber WHERE {hashes_sql}", *args)
        found.update({r["email_hash"]: (r["id"], r["status"]) for r in rows})
    return found


async def _insert_subscribers(rows: list[_Row], moment: datetime | str) -> dict[str, tuple[int, str]]:
    """Insert new confirmed subscribers; email_hash -> (id, "new") for those actually inserted
    (an address that signed up meanwhile is left to the conflict clause)."""
    created: dict[str, tuple[int, str]] = {}
    for chunk in _chunks(rows, 6):
        args: list = []
        for row in chunk:
            args += (row.email, row.hash, row.name, tokens.new_salt(), moment, moment)
        values = ", ".join(["({}, {}, {}, 'confirmed', {}, 'import', {}, {})"] * len(chunk))
        inserted = await db.fetch(
            "INSERT INTO subscriber (email, email_hash, name, status, token_salt, source, created_at, confirmed_at) "
            f"VALUES {values} ON CONFLICT DO NOTHING RETURNING id, email_hash",
            *args,
        )
        created.update({r["email_hash"]: (r["id"], "new") for r in inserted})
    return created


async def _add_topics(existing: list[int], fresh: set[int], topic_ids_: list[int], moment: datetime | str) -> set[int]:
    """Give every subscriber the topics, inserting only missing pairs. Returns the existing
    subscribers that gained at least one topic."""
    have: set[tuple[int, int]] = set()
    for chunk in _chunks(existing, 1 + len(topic_ids_)):
        subscribers_sql, subscriber_args = db.sql_in("subscriber", chunk)
        topics_sql, topic_args = db.sql_in("topic", topic_ids_)
        rows = await db.fetch(
            f"SELECT subscriber, topic FROM subscription WHERE {subscribers_sql} AND {topics_sql}",
            *subscriber_args,
            *topic_args,
        )
        have.update((r["subscriber"], r["topic"]) for r in rows)
    missing = [(sid, tid) for sid in [*existing, *sorted(fresh)] for tid in topic_ids_ if (sid, tid) not in have]
    gained: set[int] = set()
    for chunk in _chunks(missing, 3):
        args: list = []
        for sid, tid in chunk:
            args += (sid, tid, moment)
        rows = await db.fetch(
            f"INSERT INTO subscription (subscriber, topic, created_at) VALUES {_placeholders(len(chunk), 3)} "
            "ON CONFLICT DO NOTHING RETURNING subscriber",
            *args,
        )
        gained.update(r["subscriber"] for r in rows)
    return gained - fresh
