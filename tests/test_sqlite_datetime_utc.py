"""SQLite's datetime adapter takes a value already in UTC (the clock's) as its own conversion,
isoformat(" "): the text must be exactly Piccolo's (to UTC, then str()) for every value, and
binding the text (db.sqlite_datetime, for a moment bound several times) stores the same."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from piccolo.engine.sqlite import convert_datetime_in

from events_app import db

ZONES = st.sampled_from(
    [UTC, timezone(timedelta(0)), timezone(timedelta(hours=-5)), ZoneInfo("Europe/Paris"), ZoneInfo("UTC"), None]
)


@pytest.fixture(autouse=True)
def _sqlite_only():
    if db.is_postgres():
        pytest.skip("SQLite's datetime adapter")


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    moment=st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(9999, 12, 30)),
    zone=ZONES,
    whole_second=st.booleans(),
)
async def test_the_text_stored_is_piccolos(moment, zone, whole_second):
    value = moment.replace(tzinfo=zone, microsecond=0 if whole_second else moment.microsecond)
    text = convert_datetime_in(value)
    rows = await db.fetch("SELECT {} AS bound, {} AS again, {} AS text", value, value, db.sqlite_datetime(value))
    assert rows[0] == {"bound": text, "again": text, "text": text}
