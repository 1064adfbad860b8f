"""The server's edge as an attacker and a clumsy client meet it: slow and stalled connections,
security headers, HEAD, request bodies (size and nesting), ids past the integer columns, and the
files and settings an operator starts the service with.

The slow-client tests and the CLI tests run a real `events-app` process; the rest go through the
app in this process.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from events_app import db, settings
from factories import published_event
from server import running_server
from staff.conftest import PASSWORD, sign_in

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

TOKEN_PAGES = ["/r/abc", "/j/abc", "/s/abc", "/s/confirm/abc"]


# --- Slow and stalled clients (a real server) -------------------------------------------------

def _stall(port: int, count: int) -> list[socket.socket]:
    """`count` connections that each send half a request head and then nothing."""
    stalled = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        stalled.append(sock)
    return stalled


def _closed_by_server(sock: socket.socket, wait: float) -> bool:
    sock.settimeout(wait)
    try:
        return sock.recv(1024) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_stalled_request_heads_are_cut_off_and_others_are_still_served():
    """Slowloris: hundreds of half-sent request heads neither lock others out nor stay open."""
    with running_server(env={"EVENTS_HEADER_TIMEOUT_SECONDS": "2"}) as base:
        port = int(base.rsplit(":", 1)[1])
        stalled = _stall(port, 300)
        try:
            started = time.monotonic()
            answer = httpx.get(base + "/health", timeout=5)
            assert answer.status_code == 200 and answer.json() == {"status": "ok"}
            assert time.monotonic() - started < 2
            # Each stalled connection is closed by the server once its head is 2 s late.
            time.sleep(2.5)
            still_open = [s for s in stalled if not _closed_by_server(s, 0.5 if s is stalled[0] else 0.01)]
            assert still_open == [], f"{len(still_open)} of 300 stalled connections are still open"
            # A complete request on a fresh connection is unaffected by the timeout.
            assert httpx.get(base + "/health", timeout=5).status_code == 200
        finally:
            for sock in stalled:
                sock.close()


def test_connections_past_the_cap_get_a_quick_503_not_a_hang():
    with running_server(env={"EVENTS_MAX_CONNECTIONS": "40", "EVENTS_HEADER_TIMEOUT_SECONDS": "30"}) as base:
        port = int(base.rsplit(":", 1)[1])
        stalled = _stall(port, 60)
        try:
            started = time.monotonic()
            answer = httpx.get(base + "/health", timeout=5)
            assert answer.status_code == 503
            assert time.monotonic() - started < 2
        finally:
            for sock in stalled:
                sock.close()
        # Once they are gone, everyone is served again.
        deadline = time.monotonic() + 5
        while httpx.get(base + "/health", timeout=5).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)


# --- Security headers -------------------------------------------------------------------------

def _csp(answer: httpx.Response) -> dict[str, list[str]]:
    policy = answer.headers.get("content-security-policy", "")
    return {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}


async def test_every_page_carries_the_security_headers(client):
    await published_event(slug="careers")
    for path in ["/events", "/events/careers", "/bulletin", "/staff/login", "/health", "/no-such-page", *TOKEN_PAGES]:
        answer = await client.get(path)
        assert answer.headers.get("x-content-type-options") == "nosniff", path
        policy = _csp(answer)
        assert policy.get("default-src") == ["'self'"], path
        assert "'unsafe-inline'" not in policy.get("script-src", ["'unsafe-inline'"]), path
        assert policy.get("frame-ancestors") == ["'none'"], path
        assert policy.get("object-src") == ["'none'"], path
        assert "strict-transport-security" not in answer.headers  # the base URL is http here
    staff = await client.get("/staff/login")
    assert staff.headers["x-frame-options"] == "DENY"


async def test_token_pages_send_no_referrer_and_other_pages_only_the_origin(client):
    for path in TOKEN_PAGES:
        assert (await client.get(path)).headers["referrer-policy"] == "no-referrer", path
        assert (await client.post(path + "/cancel")).headers["referrer-policy"] == "no-referrer", path
    for path in ["/events", "/bulletin", "/staff/login"]:
        assert (await client.get(path)).headers["referrer-policy"] == "strict-origin-when-cross-origin", path


async def test_inline_scripts_of_the_pages_are_the_ones_the_policy_allows(client):
    """The policy allows no inline script but the page's own (by hash): each inline script the
    templates write is among them, so pages keep working (the browser tests run them)."""
    await published_event(slug="careers")
    page = await client.post("/events/careers/register", data={"name": "", "email": "bad"})
    scripts = re.findall(r"<script>(.*?)</script>", page.text, re.S)
    assert len(scripts) == 2  # local times, and the focus on the error summary
    allowed = _csp(page)["script-src"]
    for script in scripts:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in allowed


async def test_hsts_when_the_base_url_is_https(monkeypatch):
    from events_app.app import create_app

    monkeypatch.setenv("EVENTS_BASE_URL", "https://events.example.org")
    settings.reset()
    try:
        app = create_app()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
            answer = await http.get("/events")
        assert answer.headers["strict-transport-security"].startswith("max-age=")
    finally:
        monkeypatch.undo()
        settings.reset()


async def test_api_docs_load_nothing_from_other_sites(client):
    page = await client.get("/schema/swagger")
    assert page.status_code == 200
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text), "the docs page loads from another site"
    assert "<script>" not in page.text and "<script type='text/javascript'>" not in page.text
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for asset in assets:
        answer = await client.get(asset)
        assert answer.status_code == 200 and len(answer.content) > 100, asset
    schema = await client.get("/schema/openapi.json")
    assert schema.status_code == 200 and schema.json()["openapi"].startswith("3.")


# --- HEAD -------------------------------------------------------------------------------------

def _filled(path: str, number: str = "1") -> str:
    path = re.sub(r"\{[^}:]+:int\}", number, path)
    path = re.sub(r"\{[^}:]+:path\}", "x", path)
    return re.sub(r"\{[^}:]+(:[a-z]+)?\}", "x", path)


async def test_every_get_route_answers_head_with_the_same_status_and_headers(app, client, auth):
    await published_event(slug="careers")
    for path in ["/events", "/events/careers", "/events/careers.ics", "/calendar.ics", "/health", "/schema/openapi.json"]:
        got, head = await client.get(path), await client.head(path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"], path
        assert head.headers.get("content-length") == got.headers.get("content-length"), path
    routes = [r for r in app.routes if "GET" in getattr(r, "methods", ())]
    assert len(routes) > 30
    for route in routes:
        path = _filled(route.path)
        answer = await client.head(path, headers=auth)
        assert answer.status_code not in (405, 500), (route.path, answer.status_code)
        assert answer.content == b"", path


# --- Bodies -----------------------------------------------------------------------------------

async def _counts() -> tuple[int, int]:
    subscribers = (await db.fetch("SELECT count(*) AS n FROM subscriber"))[0]["n"]
    registrations = (await db.fetch("SELECT count(*) AS n FROM registration"))[0]["n"]
    return subscribers, registrations


async def test_large_public_bodies_answer_413_with_a_reason_and_store_nothing(client):
    await published_event(slug="careers")
    big = "x" * 100_000
    answer = await client.post("/api/v1/subscribers", json={"email": "a@example.org", "name": big})
    assert answer.status_code == 413
    assert "64 KiB" in answer.json()["detail"]
    page = await client.post("/events/careers/register", data={"name": big, "email": "a@example.org"})
    assert page.status_code == 413 and "64 KiB" in page.text and "<html" in page.text.lower()

    async def chunks():  # no Content-Length: counted as it arrives
        for _ in range(100):
            yield b" " * 1024

    streamed = await client.post("/api/v1/subscribers", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    assert await _counts() == (0, 0)


async def test_staff_csv_import_may_be_larger_than_a_public_form(client, member):
    csrf = await sign_in(client)
    rows = "".join(f"person{i}@example.org,Person number {i}\n" for i in range(4000))
    content = ("email,name\n" + rows).encode()
    assert len(content) > 128 * 1024
    answer = await client.post(
        "/staff/subscribers/import", data={"csrf_token": csrf, "topics": "bulletin"},
        files={"file": ("people.csv", content, "text/csv")},
    )
    assert answer.status_code == 200, answer.text[:500]
    assert (await _counts())[0] == 4000


async def test_deeply_nested_json_answers_400_naming_the_body(client):
    for body in (b"[" * 50_000, b'{"a":' * 10_000):
        answer = await client.post("/api/v1/subscribers", content=body, headers={"content-type": "application/json"})
        assert answer.status_code == 400, answer.text[:200]
        assert "body" in answer.json()["errors"]
    assert await _counts() == (0, 0)


# --- Ids past the integer columns -------------------------------------------------------------

async def test_every_int_route_answers_404_for_ids_outside_the_columns(app, client, auth, member):
    csrf = await sign_in(client)
    routes = [r for r in app.routes if ":int}" in r.path]
    assert len(routes) >= 10
    for number in (str(2**63 + 7), "99999999999999999999", str(2**31), "0", "-1"):
        for route in routes:
            for method in sorted(set(route.methods) - {"HEAD", "OPTIONS"}):
                path = _filled(route.path, number)
                data = {"csrf_token": csrf} if method != "GET" else None
                answer = await client.request(method, path, headers=auth, data=data)
                assert answer.status_code == 404, (method, path, answer.status_code)
                assert "not found" in answer.text.lower() or "no such" in answer.text.lower()


# --- Files and settings (the real CLI) --------------------------------------------------------

def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "EVENTS_DATABASE_URL"}
    environment.pop("EVENTS_SECRET_KEY", None)
    environment.update(env)
    return subprocess.run([sys.executable, "-m", "events_app.cli", *args], env=environment,
                          capture_output=True, text=True, timeout=120)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_go_under_the_var_dir_readable_by_their_owner_only():
    var = Path(tempfile.mkdtemp(prefix="events-var-")) / "var"
    result = _cli("migrate", env={"EVENTS_VAR_DIR": str(var)})
    assert result.returncode == 0, result.stderr
    database = var / "events.sqlite3"
    assert database.exists(), sorted(p.name for p in var.parent.rglob("*"))
    assert _mode(var) == 0o700
    for path in [database, var / "secret_key", *var.glob("events.sqlite3-*")]:
        assert _mode(path) == 0o600, (path, oct(_mode(path)))


NUMERIC = ["EVENTS_RESEND_INTERVAL_SECONDS", "EVENTS_WORKER_POLL_SECONDS", "EVENTS_SCHEDULE_INTERVAL_SECONDS",
           "EVENTS_HEADER_TIMEOUT_SECONDS", "EVENTS_KEEPALIVE_SECONDS", "EVENTS_MAX_CONNECTIONS"]


@pytest.mark.parametrize("name", NUMERIC)
def test_bad_numeric_settings_end_with_one_line_and_status_2(name):
    var = tempfile.mkdtemp(prefix="events-var-")
    for value in ("abc", "-5"):
        result = _cli("migrate", env={"EVENTS_VAR_DIR": var, name: value})
        assert result.returncode == 2, (name, value, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and name in lines[0] and "Traceback" not in result.stderr, result.stderr


async def test_mail_written_as_files_is_readable_by_its_owner_only(tmp_path):
    """The .eml outbox of a server without SMTP: the directory and each message private."""
    var = tmp_path / "var"
    env = {"EVENTS_VAR_DIR": str(var), "EVENTS_WORKER_POLL_SECONDS": "0.1"}
    with running_server(worker=True, env=env) as base:
        await _register(base)
        deadline = time.monotonic() + 15
        while not list((var / "mail").glob("*.eml")):
            assert time.monotonic() < deadline, "no mail was written"
            time.sleep(0.1)
    assert _mode(var / "mail") == 0o700
    for path in (var / "mail").glob("*.eml"):
        assert _mode(path) == 0o600, oct(_mode(path))


async def _register(base: str) -> None:
    """Through a real server: a staff token from the database, an event, one registration."""
    from events_app.domain import staff

    await staff.create("files@example.org", PASSWORD, "Files")
    token = await staff.new_token("files@example.org", "files")
    from factories import event_data

    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        made = await http.post("/api/v1/events", json=event_data(), headers={"Authorization": f"Bearer {token}"})
        assert made.status_code == 201, made.text
        answer = await http.post(f"/api/v1/events/{made.json()['id']}/registrations",
                                 json={"name": "Ada", "email": "ada@example.org"})
        assert answer.status_code == 201, answer.text


# --- In a real browser: the policy blocks nothing the pages need ------------------------------

async def test_pages_and_api_docs_run_under_the_policy_in_a_real_browser():
    """Debian's Chromium against a real server: no Content-Security-Policy violation on the
    public pages, a token page, the staff sign-in and the API docs; the inline scripts run
    (times in the visitor's zone appear) and Swagger UI draws the operations from local files."""
    import shutil as _shutil

    from playwright.async_api import async_playwright

    chromium = _shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(chromium):
        pytest.fail("Debian's chromium is required: apt-get install chromium")
    await published_event(slug="careers")
    with running_server() as base:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = await browser.new_page()
            violations: list[str] = []
            outside: list[str] = []
            page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(base) else None)
            await page.goto(base + "/events/careers")
            await page.wait_for_selector("[data-local-range]:not([hidden])", state="attached", timeout=5000)
            await page.click("button[type=submit]")  # empty form: errors, and the focus script runs
            await page.wait_for_selector("#form-errors", timeout=5000)
            assert await page.evaluate("document.activeElement.id") == "form-errors"
            for path in ["/events", "/bulletin", "/staff/login", "/r/not-a-token"]:
                await page.goto(base + path)
            await page.goto(base + "/schema/swagger")
            await page.wait_for_selector(".opblock", timeout=15000)
            assert await page.locator(".opblock").count() > 20
            await browser.close()
    assert violations == [], violations
    assert outside == [], outside


async def test_a_nul_in_any_path_segment_is_an_unknown_page_not_a_500(client):
    """PostgreSQL refuses a NUL in a query's text (an error, not 'no row'); no stored slug or
    token holds one, so every route answers as for any unknown one. Found by
    test_every_form.py in the PostgreSQL run: POST /events/%00/register answered 500."""
    for method, path in [("GET", "/events/%00"), ("GET", "/events/a%00.ics"), ("POST", "/events/%00/register"),
                         ("GET", "/r/1.%00"), ("POST", "/r/%00/cancel"), ("GET", "/j/%00"), ("GET", "/s/%00"),
                         ("POST", "/s/%00/unsubscribe"), ("GET", "/s/confirm/%00"), ("GET", "/bulletin/%00")]:
        answer = await client.request(method, path)
        assert answer.status_code == 404 and "No such" in answer.text, (method, path, answer.status_code, answer.text[:200])
