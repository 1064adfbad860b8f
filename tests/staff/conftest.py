"""Fixtures for the staff workspace: a staff member, and a client signed in as them."""

from __future__ import annotations

import re

import pytest

from events_app import db
from events_app.domain import staff

EMAIL = "lead@example.org"
PASSWORD = "correct horse battery"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def sign_in(client, email: str = EMAIL, password: str = PASSWORD) -> str:
    """Sign in through the form; return the CSRF token of the session."""
    answer = await client.post("/staff/login", data={"email": email, "password": password})
    assert answer.status_code == 303, answer.text
    return csrf_of((await client.get("/staff")).text)


@pytest.fixture
async def member():
    return await staff.create(EMAIL, PASSWORD, "Team Lead")


@pytest.fixture
async def csrf(client, member):
    """The client is signed in; this is its CSRF token."""
    return await sign_in(client)


async def audit_actions() -> list[str]:
    return [r["action"] for r in await db.fetch("SELECT action FROM audit_entry ORDER BY id")]
