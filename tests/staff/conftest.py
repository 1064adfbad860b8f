"""Fixtures for the staff workspace: a client signed in as the staff member (the `member`
fixture, tests/conftest.py), and helpers for signing in and checking refusals."""

from __future__ import annotations

import re

import pytest
from conftest import STAFF_EMAIL as EMAIL
from conftest import STAFF_PASSWORD as PASSWORD

from events_app import db


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def post_login(client, **data):
    """Post the sign-in form as a browser does: opened first, sent back with its CSRF token."""
    token = csrf_of((await client.get("/staff/login")).text)
    return await client.post("/staff/login", data={"csrf_token": token, **data})


async def sign_in(client, email: str = EMAIL, password: str = PASSWORD) -> str:
    """Sign in through the form; return the CSRF token of the session."""
    answer = await post_login(client, email=email, password=password)
    assert answer.status_code == 303, answer.text
    return csrf_of((await client.get("/staff")).text)


@pytest.fixture
async def csrf(client, member):
    """The client is signed in; this is its CSRF token."""
    return await sign_in(client)


async def audit_actions() -> list[str]:
    return [r["action"] for r in await db.fetch("SELECT action FROM audit_entry ORDER BY id")]


async def assert_refused(app, client, csrf: str, actions: dict[str, dict], files: dict | None = None) -> None:
    """Each changing action (path -> form data) is refused with no CSRF token and with a wrong
    one (403, from the signed-in `client`), and without a session even with a valid token (303
    to the sign-in form). The caller checks that the database did not change."""
    import httpx

    for path, data in actions.items():
        for token in (None, "0" * 64):
            sent = dict(data, **({"csrf_token": token} if token else {}))
            assert (await client.post(path, data=sent, files=files)).status_code == 403, path
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as stranger:
            answer = await stranger.post(path, data=dict(data, csrf_token=csrf), files=files)
            assert answer.status_code == 303 and answer.headers["location"].startswith("/staff/login"), path


async def assert_pages_need_a_session(app, client, pages) -> None:
    """Each page sends a stranger to the sign-in form (303) and shows itself to `client` (200)."""
    import httpx

    for page in pages:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as stranger:
            assert (await stranger.get(page)).status_code == 303, page
        assert (await client.get(page)).status_code == 200, page
