"""Issue 11, the sign-in door: hashing never stalls the event loop and runs in a small bounded
pool, failed attempts are claimed atomically in one shared table for every address (known or
not, in every process and after a restart), the answers for an unknown address and a wrong
password are the same, and the form carries a CSRF token that works without a session.

Runs through the HTTP app (and the domain where the race is the point) on SQLite and
PostgreSQL (tests/with_postgres.py). The per-client request limit in front of sign-in is in
tests/security/test_limits.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from conftest import IS_POSTGRES
from events_app import db
from events_app.domain import staff
from events_app.domain.errors import Unauthorized

EMAIL = "lead@example.org"
PASSWORD = "correct horse battery"
GHOST = "gone@example.org"  # same length as EMAIL: the answers can be compared byte for byte
ROOT = Path(__file__).resolve().parents[2]


def _token_of(html: str) -> str | None:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    return found.group(1) if found else None


async def post_login(client: httpx.AsyncClient, **data) -> httpx.Response:
    """Sign in the way a browser does: open the form, send it back with its hidden fields."""
    form = await client.get("/staff/login")
    token = _token_of(form.text)
    return await client.post("/staff/login", data={**({"csrf_token": token} if token else {}), **data})


@pytest.fixture
async def member():
    return await staff.create(EMAIL, PASSWORD, "Team Lead")


# 1. Hashing off the loop, in a bounded pool ---------------------------------------------------

class _ThreadSpy:
    """The real hasher, noting on which thread each password check or hash runs."""

    def __init__(self, real) -> None:
        self.real, self.threads = real, []

    def verify(self, *args):
        self.threads.append(threading.get_ident())
        return self.real.verify(*args)

    def hash(self, *args):
        self.threads.append(threading.get_ident())
        return self.real.hash(*args)

    def __getattr__(self, name):
        return getattr(self.real, name)


async def test_sign_ins_do_not_stall_everyone_else(client, member, monkeypatch):
    """Every password check runs off the event loop's thread, so other requests on the loop keep
    being served while sign-ins run. (Asserted on where the work runs, not on timings, which a
    loaded machine would make flaky; bench/abuse.py measures the effect.)"""
    spy = _ThreadSpy(staff._hasher)
    monkeypatch.setattr(staff, "_hasher", spy)
    loop_thread = threading.get_ident()
    form = await client.get("/staff/login")
    token = _token_of(form.text)
    extra = {"csrf_token": token} if token else {}
    answers = await asyncio.gather(*(
        client.post("/staff/login", data={**extra, "email": email, "password": "wrong guess"})
        for email in ("guess0@example.org", "guess1@example.org", member["email"], member["email"])
    ))
    assert {a.status_code for a in answers} <= {401, 503}
    assert len(spy.threads) >= 2, "no password was checked"
    assert loop_thread not in spy.threads, "a password check ran on the event loop"


async def test_a_flood_of_sign_ins_is_turned_away_not_queued_without_end(client, member):
    """Far more simultaneous attempts than the pool can take: the excess answers 503 with
    Retry-After at once (the same for every address) instead of piling up behind the hashes,
    and the real member can sign in as soon as the flood is over."""
    form = await client.get("/staff/login")
    token = _token_of(form.text)
    extra = {"csrf_token": token} if token else {}
    answers = await asyncio.gather(*(
        client.post("/staff/login", data={**extra, "email": f"flood{i}@example.org", "password": "wrong guess"})
        for i in range(40)
    ))
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {401, 503}, statuses
    busy = [a for a in answers if a.status_code == 503]
    assert busy, "every attempt was queued for a hash"
    assert statuses.count(401) >= 2
    assert all(a.headers.get("retry-after") == "1" for a in busy)
    assert "busy" in busy[0].text and 'name="password"' in busy[0].text
    # The refused ones were not counted as failures of those addresses.
    rows = await db.fetch("SELECT key FROM login_attempt")
    assert len(rows) == statuses.count(401)
    assert (await post_login(client, email=EMAIL, password=PASSWORD)).status_code == 303


# 2. One shared, atomic count for every address -------------------------------------------------

async def _parallel_attempts(address: str, count: int) -> list[str]:
    async def one() -> str:
        try:
            await staff.authenticate(address, "wrong password!")
        except staff.Throttled:
            return "throttled"
        except Unauthorized:
            return "checked"
        except Exception as exc:  # staff.Busy after the fix: refused before any check
            return type(exc).__name__
        return "signed in"

    return await asyncio.gather(*(one() for _ in range(count)))


@pytest.mark.parametrize("address", [EMAIL, GHOST])
async def test_parallel_wrong_attempts_get_at_most_the_free_checks(member, address):
    """Ten attempts at once for one address: at most FREE_ATTEMPTS of them reach a password
    check, for an account and for an address without one alike (on PostgreSQL the old
    read-hash-update let every one through)."""
    outcomes = await _parallel_attempts(address, staff.FREE_ATTEMPTS + 5)
    assert outcomes.count("checked") == staff.FREE_ATTEMPTS, outcomes
    assert "signed in" not in outcomes
    with pytest.raises(staff.Throttled):
        await staff.authenticate(EMAIL if address == EMAIL else GHOST, PASSWORD)


def _attempt_in_a_new_process(address: str, password: str) -> str:
    """One sign-in attempt from a fresh process (another server, or this one after a restart)."""
    code = (
        "import asyncio\n"
        "from events_app import db\n"
        "from events_app.domain import staff\n"
        "from events_app.domain.errors import Unauthorized\n"
        "async def main():\n"
        "    await db.start()\n"
        "    try:\n"
        f"        await staff.authenticate({address!r}, {password!r})\n"
        "        print('signed in')\n"
        "    except staff.Throttled as exc:\n"
        "        print('throttled', exc.message)\n"
        "    except Unauthorized as exc:\n"
        "        print('wrong', exc.message)\n"
        "    finally:\n"
        "        await db.stop()\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def test_throttle_holds_across_processes_for_every_address_alike(member):
    """Five failures here, then one more attempt from another process: an account and an
    address without one are both slowed down, with the same words (the per-process count of
    unknown addresses told them apart)."""
    for address in (EMAIL, GHOST):
        for _ in range(staff.FREE_ATTEMPTS):
            with pytest.raises(Unauthorized):
                await staff.authenticate(address, "wrong password!")
    known = _attempt_in_a_new_process(EMAIL, "wrong password!")
    unknown = _attempt_in_a_new_process(GHOST, "wrong password!")
    assert known.startswith("throttled") and known == unknown
    # The shared table holds digests only, one per address.
    keys = {r["key"] for r in await db.fetch("SELECT key FROM login_attempt")}
    assert keys == {hashlib.sha256(a.encode()).hexdigest() for a in (EMAIL, GHOST)}


async def test_unknown_address_and_wrong_password_answer_alike_through_the_throttle(client, member, monkeypatch):
    """Status, body and Retry-After are the same for both, from the first failure to the
    throttled ones; and both cost exactly one password check per free attempt (the same timing
    class; counted, not timed, so that a loaded machine cannot make it flaky)."""
    spy = _ThreadSpy(staff._hasher)
    monkeypatch.setattr(staff, "_hasher", spy)
    answers: dict[str, list[httpx.Response]] = {EMAIL: [], GHOST: []}
    checks: dict[str, list[int]] = {EMAIL: [], GHOST: []}
    for _ in range(staff.FREE_ATTEMPTS + 2):
        for address in (EMAIL, GHOST):
            before = len(spy.threads)
            answers[address].append(await post_login(client, email=address, password="wrong password!"))
            checks[address].append(len(spy.threads) - before)
    for mine, other in zip(answers[EMAIL], answers[GHOST]):
        assert mine.status_code == other.status_code
        assert mine.text.replace(EMAIL, "X") == other.text.replace(GHOST, "X")
        assert abs(int(mine.headers.get("retry-after", 0)) - int(other.headers.get("retry-after", 0))) <= 1
    assert [a.status_code for a in answers[EMAIL]] == [401] * staff.FREE_ATTEMPTS + [429, 429]
    assert checks[EMAIL] == checks[GHOST] == [1] * staff.FREE_ATTEMPTS + [0, 0], checks


async def test_signing_in_clears_the_count(client, member):
    for _ in range(staff.FREE_ATTEMPTS - 1):
        assert (await post_login(client, email=EMAIL, password="wrong password!")).status_code == 401
    assert (await post_login(client, email=EMAIL, password=PASSWORD)).status_code == 303
    assert await db.fetch("SELECT key FROM login_attempt") == []
    for _ in range(staff.FREE_ATTEMPTS):  # a fresh set of free attempts
        assert (await post_login(client, email=EMAIL, password="wrong password!")).status_code == 401


async def test_an_operator_password_reset_lifts_the_throttle_and_ends_sessions(client, member):
    assert (await post_login(client, email=EMAIL, password=PASSWORD)).status_code == 303
    for _ in range(staff.FREE_ATTEMPTS):
        with pytest.raises(Unauthorized):
            await staff.authenticate(EMAIL, "wrong password!")
    await staff.reset_password(EMAIL, "a brand new password")
    assert (await client.get("/staff")).status_code == 303  # the old session is over
    async with httpx.AsyncClient(transport=client._transport, base_url="http://testserver") as fresh:
        assert (await post_login(fresh, email=EMAIL, password="a brand new password")).status_code == 303


# 4. Login CSRF -------------------------------------------------------------------------------

async def test_sign_in_form_refuses_a_post_without_its_token(client, member):
    """Another site cannot sign a visitor in to an account of its choosing: a post without the
    form's token (or with a token of another browser) answers 403 with the form again, and
    signs nobody in, even with the right password."""
    bare = await client.post("/staff/login", data={"email": EMAIL, "password": PASSWORD})
    assert bare.status_code == 403
    assert "expired or did not come from this site" in bare.text and 'name="password"' in bare.text
    assert "events_staff" not in client.cookies and await db.fetch("SELECT id FROM staff_session") == []
    # The 403 page is a working form: sending it again signs in.
    token = _token_of(bare.text)
    assert token
    again = await client.post("/staff/login", data={"csrf_token": token, "email": EMAIL, "password": PASSWORD})
    assert again.status_code == 303 and "events_staff" in client.cookies

    async with httpx.AsyncClient(transport=client._transport, base_url="http://testserver") as other:
        await other.get("/staff/login")  # another browser, with its own cookie
        stolen = await other.post("/staff/login", data={"csrf_token": token, "email": EMAIL, "password": PASSWORD})
        assert stolen.status_code == 403 and "events_staff" not in other.cookies
        wrong = await other.post("/staff/login", data={"csrf_token": "0" * 64, "email": EMAIL, "password": PASSWORD})
        assert wrong.status_code == 403


async def test_sign_in_csrf_cookie_is_scoped_to_the_workspace(client):
    answer = await client.get("/staff/login")
    cookie = next(v for k, v in answer.headers.multi_items() if k == "set-cookie" and v.startswith("events_login="))
    lowered = cookie.lower()
    assert "path=/staff" in lowered and "httponly" in lowered and "samesite=lax" in lowered
    # A second visit keeps the same cookie and token (two open tabs both work).
    assert _token_of((await client.get("/staff/login")).text) == _token_of(answer.text)


@pytest.mark.skipif(not IS_POSTGRES, reason="the lost-update race needs parallel connections (PostgreSQL)")
async def test_control_without_the_claim_parallel_attempts_all_get_a_check(member):
    """Control: the old read, hash, update shape, run in parallel on PostgreSQL, lets more than
    FREE_ATTEMPTS attempts through; the claim is what holds the line."""
    async def old_shape() -> bool:
        rows = await db.fetch("SELECT failed_logins FROM staff_user WHERE email = {}", EMAIL)
        if rows[0]["failed_logins"] >= staff.FREE_ATTEMPTS:
            return False
        await asyncio.sleep(0.05)  # the password check
        await db.fetch("UPDATE staff_user SET failed_logins = failed_logins + 1 WHERE email = {}", EMAIL)
        return True

    through = await asyncio.gather(*(old_shape() for _ in range(staff.FREE_ATTEMPTS + 5)))
    assert sum(through) > staff.FREE_ATTEMPTS
