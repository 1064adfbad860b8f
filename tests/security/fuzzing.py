"""Helpers shared by the searching tests: a database fingerprint and a biased choice."""

from __future__ import annotations

import hashlib

from hypothesis import strategies as st

from events_app import db
from events_app.tables import ALL_TABLES

# What a refused request may still write: the sign-in throttle counts failures, sessions note
# when they were last used.
MAY_CHANGE_ON_REFUSAL = {"login_attempt", "staff_session"}


async def snapshot() -> str:
    """A digest of every row of every table (but those above): equal before and after means the
    request changed nothing."""
    digest = hashlib.sha256()
    for table in ALL_TABLES:
        name = table._meta.tablename
        if name in MAY_CHANGE_ON_REFUSAL:
            continue
        for row in await db.fetch(f"SELECT * FROM {name} ORDER BY id"):
            digest.update(repr(sorted(row.items())).encode())
    return digest.hexdigest()


def mostly(usual: st.SearchStrategy, odd: st.SearchStrategy) -> st.SearchStrategy:
    """Three draws in four from `usual`: real tokens, ids and fields reach the handlers' logic,
    garbage still reaches their edges."""
    return st.integers(0, 3).flatmap(lambda n: odd if n == 0 else usual)
