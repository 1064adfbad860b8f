"""Signing in and out, sessions, CSRF, slowed-down sign-ins, password change, API tokens and
colleagues' accounts, through the HTTP app."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import httpx

from events_app import db, tokens
from events_app.domain import staff

from .conftest import EMAIL, PASSWORD, assert_refused, audit_actions, post_login, sign_in


async def test_workspace_sends_strangers_to_the_sign_in_form(client):
    answer = await client.get("/staff")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/staff/login?next=/staff"
    form = await client.get("/staff/login")
    assert 'name="email"' in form.text and 'name="password"' in form.text
    assert 'autocomplete="current-password"' in form.text


async def test_sign_in_sets_a_safe_cookie_and_stores_only_its_hash(client, member):
    answer = await post_login(client, email=EMAIL.upper(), password=PASSWORD)
    assert answer.status_code == 303 and answer.headers["location"] == "/staff"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax") and "Path=/staff" in cookie
    assert "Secure" not in cookie  # the test site is http://; under https it is Secure
    value = client.cookies.get("events_staff")
    stored = await db.fetch("SELECT token_hash FROM staff_session")
    assert [r["token_hash"] for r in stored] == [tokens.digest(value)]
    dashboard = await client.get("/staff")
    assert dashboard.status_code == 200 and EMAIL in dashboard.text and "Dashboard" in dashboard.text
    assert "staff.login" in await audit_actions()


async def test_cookie_is_secure_under_https(client, member, monkeypatch):
    from events_app import settings

    monkeypatch.setattr(settings, "_current", settings.Settings(**{**settings.get().__dict__, "base_url": "https://events.example.org"}))
    answer = await post_login(client, email=EMAIL, password=PASSWORD)
    assert "Secure" in answer.headers["set-cookie"]


async def test_sign_in_returns_to_the_page_asked_for_but_never_off_site(client, member):
    answer = await post_login(client, email=EMAIL, password=PASSWORD, next="/staff/mail")
    assert answer.headers["location"] == "/staff/mail"
    answer = await post_login(client, email=EMAIL, password=PASSWORD, next="https://evil.example")
    assert answer.headers["location"] == "/staff"
    answer = await post_login(client, email=EMAIL, password=PASSWORD, next="/staff//evil.example")
    assert answer.headers["location"] == "/staff"


async def test_wrong_password_and_unknown_address_answer_alike(client, member):
    wrong = await post_login(client, email=EMAIL, password="not the password")
    unknown = await post_login(client, email="nobody@example.org", password="whatever it is")
    assert wrong.status_code == unknown.status_code == 401
    assert "do not match a staff account" in wrong.text
    assert wrong.text.replace(EMAIL, "X") == unknown.text.replace("nobody@example.org", "X")
    assert "events_staff" not in client.cookies


async def test_failed_sign_ins_slow_down_then_refuse_with_429_even_the_right_password(client, member):
    for _ in range(staff.FREE_ATTEMPTS):
        assert (await post_login(client, email=EMAIL, password="guess guess")).status_code == 401
    refused = await post_login(client, email=EMAIL, password=PASSWORD)
    assert refused.status_code == 429
    assert "wait 1 minute" in refused.text and int(refused.headers["retry-after"]) <= 30
    assert "events_staff" not in client.cookies
    # Unknown addresses are slowed down the same way, so a 429 says nothing about an account.
    for _ in range(staff.FREE_ATTEMPTS):
        await post_login(client, email="ghost@example.org", password="guess guess")
    assert (await post_login(client, email="ghost@example.org", password="x")).status_code == 429
    # The wait doubles with every further failure: after the pause, one more failure waits 60 s.
    past = datetime.now(timezone.utc) - timedelta(seconds=31)
    key = hashlib.sha256(EMAIL.encode()).hexdigest()
    await db.fetch("UPDATE login_attempt SET last_failed_at = {} WHERE key = {}", past, key)
    assert (await post_login(client, email=EMAIL, password="guess again")).status_code == 401
    again = await post_login(client, email=EMAIL, password=PASSWORD)
    assert again.status_code == 429 and 30 < int(again.headers["retry-after"]) <= 60
    # Once the wait is over, the right password works and the count starts again.
    await db.fetch("UPDATE login_attempt SET last_failed_at = {} WHERE key = {}", past - timedelta(seconds=60), key)
    assert (await post_login(client, email=EMAIL, password=PASSWORD)).status_code == 303
    assert await db.fetch("SELECT key FROM login_attempt WHERE key = {}", key) == []


async def test_sign_out_ends_the_session_on_the_server(client, csrf):
    value = client.cookies.get("events_staff")
    refused = await client.post("/staff/logout", data={})
    assert refused.status_code == 403 and await db.fetch("SELECT id FROM staff_session")
    answer = await client.post("/staff/logout", data={"csrf_token": csrf})
    assert answer.status_code == 303 and answer.headers["location"] == "/staff/login"
    assert await db.fetch("SELECT id FROM staff_session") == []
    # The old cookie, replayed, opens nothing.
    client.cookies.set("events_staff", value, path="/staff")
    assert (await client.get("/staff")).status_code == 303


async def test_expired_session_is_refused(client, csrf):
    await db.fetch("UPDATE staff_session SET expires_at = {}", datetime.now(timezone.utc) - timedelta(seconds=1))
    assert (await client.get("/staff")).status_code == 303


async def test_changing_the_password_signs_out_other_browsers(app, client, csrf, member):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as other:
        await sign_in(other)
        bad = await client.post("/staff/account/password", data={
            "csrf_token": csrf, "current_password": "wrong one!!", "new_password": "a new long password",
            "new_password_again": "a new long password"})
        assert bad.status_code == 400 and "is not your current password" in bad.text
        answer = await client.post("/staff/account/password", data={
            "csrf_token": csrf, "current_password": PASSWORD, "new_password": "a new long password",
            "new_password_again": "a new long password"})
        assert answer.status_code == 303
        assert "Every other session" in (await client.get(answer.headers["location"])).text
        assert (await other.get("/staff")).status_code == 303  # the other browser is signed out
    await staff.authenticate(EMAIL, "a new long password")
    assert "staff.password" in await audit_actions()


async def test_api_tokens_created_shown_once_listed_and_revoked(client, csrf, member):
    answer = await client.post("/staff/account/tokens", data={"csrf_token": csrf, "label": "website sync"})
    assert answer.status_code == 201
    token = answer.text.split('<code id="new-token">')[1].split("</code>")[0]
    assert (await client.get("/api/v1/events", headers={"Authorization": f"Bearer {token}"})).status_code == 200
    listing = await client.get("/staff/account")
    assert "website sync" in listing.text and token not in listing.text  # shown only once
    row = (await db.fetch("SELECT id FROM api_token WHERE label = 'website sync'"))[0]
    revoked = await client.post(f"/staff/account/tokens/{row['id']}/revoke", data={"csrf_token": csrf})
    assert revoked.status_code == 303
    assert "Revoked" in (await client.get("/staff/account")).text
    answer = await client.post("/api/v1/events", json={}, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401
    assert {"token.create", "token.revoke"} <= set(await audit_actions())


async def test_staff_member_creates_a_colleague_who_can_sign_in(app, client, csrf):
    bad = await client.post("/staff/account/members", data={"csrf_token": csrf, "email": "x", "password": "short"})
    assert bad.status_code == 400 and "email address" in bad.text
    answer = await client.post("/staff/account/members", data={
        "csrf_token": csrf, "email": "new@example.org", "name": "New Colleague", "password": "their first password"})
    assert answer.status_code == 201 and "new@example.org" in answer.text
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as other:
        await sign_in(other, "new@example.org", "their first password")
    assert "staff.create" in await audit_actions()


async def test_every_account_action_needs_a_session_and_a_csrf_token(app, client, csrf, member):
    actions = {
        "/staff/account/password": {"current_password": PASSWORD, "new_password": "hijacked password",
                                    "new_password_again": "hijacked password"},
        "/staff/account/tokens": {"label": "attacker"},
        "/staff/account/members": {"email": "evil@example.org", "password": "evil password!"},
        "/staff/logout": {},
    }
    await staff.create_token(member["id"], "keep")
    token_id = (await db.fetch("SELECT id FROM api_token"))[0]["id"]
    actions[f"/staff/account/tokens/{token_id}/revoke"] = {}
    before = await _snapshot()
    await assert_refused(app, client, csrf, actions)
    assert await _snapshot() == before


async def _snapshot() -> tuple:
    return (
        await db.fetch("SELECT id, password_hash FROM staff_user ORDER BY id"),
        await db.fetch("SELECT id, revoked_at FROM api_token ORDER BY id"),
        await db.fetch("SELECT id FROM staff_session ORDER BY id"),
    )
