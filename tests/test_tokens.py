"""Link tokens: one purpose each, unguessable, verified without being stored."""

from __future__ import annotations

import pytest

from events_app import db
from events_app.domain import registrations
from events_app.domain.errors import NotFound
from factories import published_event


async def _row():
    event = await published_event()
    view = await registrations.register(event, {"name": "Ada", "email": "ada@example.org"})
    return (await db.fetch("SELECT * FROM registration WHERE id = {}", view["id"]))[0]


async def test_tokens_are_per_purpose_and_never_stored():
    row = await _row()
    manage, join = registrations.personal_token(row), registrations.join_token(row)
    assert manage != join
    assert len(manage.split(".", 1)[1]) == 43  # 256 bits, base64url
    assert (await registrations.by_token(manage))["id"] == row["id"]
    assert (await registrations.by_join_token(join))["id"] == row["id"]
    stored = " ".join(str(v) for v in row.values())
    assert manage.split(".")[1] not in stored and join.split(".")[1] not in stored
    with pytest.raises(NotFound):
        await registrations.by_token(join)  # a join link does not open the manage page
    with pytest.raises(NotFound):
        await registrations.by_join_token(manage)


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # one character of the MAC changed
    lambda t: str(int(t.split(".")[0]) + 1) + "." + t.split(".")[1],  # another row's id
    lambda t: t.split(".")[1],  # no id
    lambda t: "99999999999." + t.split(".")[1],
    lambda t: "4294967296." + t.split(".")[1],  # past PostgreSQL's integer range
    lambda t: "",
    lambda t: "1.short",
])
async def test_tampered_tokens_open_nothing(mangle):
    row = await _row()
    with pytest.raises(NotFound):
        await registrations.by_token(mangle(registrations.personal_token(row)))
