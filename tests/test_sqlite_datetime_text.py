"""The text SQLite stores for a datetime: events_app/sqlite_engine.py remembers the last value it
converted (a registration binds the same moment several times), and must give exactly what
Piccolo's adapter gives, for every value, in any order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from piccolo.engine.sqlite import convert_datetime_in

from events_app import db


@pytest.fixture(autouse=True)
def _sqlite_only():
    if db.is_postgres():
        pytest.skip("SQLite's datetime adapter")


async def _stored(value: datetime) -> str:
    return (await db.fetch("SELECT {} AS t", value))[0]["t"]


async def test_every_value_is_stored_as_piccolo_stores_it():
    toronto = datetime(2026, 11, 30, 14, 5, 6, 789, tzinfo=ZoneInfo("America/Toronto"))
    utc = datetime(2026, 11, 30, 19, 5, 6, tzinfo=UTC)
    values = [
        toronto,
        toronto,  # the same object again
        toronto + timedelta(microseconds=1),
        toronto,  # back to an earlier one
        datetime(2026, 11, 30, 19, 5, 6, 789, tzinfo=UTC),  # equal to toronto, another object
        utc,
        utc.replace(tzinfo=None),  # naive: stored as it is
        datetime.min,
        datetime.min,
        utc,
    ]
    for value in values:
        assert await _stored(value) == convert_datetime_in(value), value
    assert await _stored(toronto) == "2026-11-30 19:05:06.000789+00:00"
    assert await _stored(datetime.min) == "0001-01-01 00:00:00"


async def test_a_moment_written_then_read_is_the_same_moment():
    moment = datetime.now(UTC)
    rows = await db.fetch("SELECT {} AS a, {} AS b, {} AS c", moment, moment, moment + timedelta(seconds=1))
    assert rows[0]["a"] == rows[0]["b"] == convert_datetime_in(moment)
    assert rows[0]["c"] == convert_datetime_in(moment + timedelta(seconds=1))
