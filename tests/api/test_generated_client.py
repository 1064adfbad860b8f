"""A client generated from the live /schema/openapi.json works against a running server.

openapi-python-client (a `test` extra) writes a typed Python package from the document; the test
imports it and, as an integration would, creates and publishes an event with a staff token,
registers for it and subscribes to the bulletin. The answers come back as the generated models,
and the rows and queued emails are checked in the database. A document that drifted from what
the handlers take or answer breaks generation, the typed calls, or the parsing of the answers.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from factories import event_data
from server import running_server

from events_app import db
from events_app.domain import staff

PACKAGE = "events_api_client"


def _generator() -> str:
    found = Path(sys.executable).with_name("openapi-python-client")
    if found.exists():
        return str(found)
    found = shutil.which("openapi-python-client")
    if found is None:
        pytest.fail("openapi-python-client is not installed: `pip install -e '.[test]'`")
    return found


def _generate(base: str, into: Path):
    document = into / "openapi.json"
    document.write_bytes(httpx.get(f"{base}/schema/openapi.json", timeout=10).content)
    config = into / "generator.json"
    config.write_text('{"post_hooks": []}')  # no formatter run over the generated code
    run = subprocess.run(
        [_generator(), "generate", "--path", str(document), "--meta", "none", "--config", str(config),
         "--output-path", str(into / PACKAGE), "--overwrite"],
        capture_output=True, text=True, timeout=300, cwd=into,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Warning" not in run.stdout + run.stderr, run.stdout + run.stderr
    sys.path.insert(0, str(into))
    try:
        return importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(into))


async def test_a_generated_client_creates_publishes_registers_and_subscribes(tmp_path):
    await staff.create("integration@example.org", "correct horse battery", "Integration")
    token = await staff.new_token("integration@example.org", "generated client")
    with running_server() as base:
        client_package = _generate(base, tmp_path)
        api = importlib.import_module(f"{PACKAGE}.api")
        models = importlib.import_module(f"{PACKAGE}.models")
        events_api = {name: importlib.import_module(f"{PACKAGE}.api.events.{name}")
                      for name in ("events_create", "events_publish", "events_register")}
        subscribe = importlib.import_module(f"{PACKAGE}.api.subscribers.subscribers_subscribe")
        assert api is not None
        staff_client = client_package.AuthenticatedClient(base_url=base, token=token)
        anyone = client_package.Client(base_url=base)

        body = models.EventIn.from_dict(event_data(status="draft", slug="generated-client", capacity=1))
        created = events_api["events_create"].sync_detailed(client=staff_client, body=body)
        assert created.status_code == 201, created.content
        event = created.parsed
        assert isinstance(event, models.Event)
        assert (event.slug, event.status.value if hasattr(event.status, "value") else event.status) == (
            "generated-client", "draft")

        # Without the token the same call is refused, and the answer parses as the documented error.
        refused = events_api["events_create"].sync_detailed(client=anyone, body=body)
        assert refused.status_code == 401 and isinstance(refused.parsed, models.Problem)

        published = events_api["events_publish"].sync_detailed(event.id, client=staff_client)
        assert published.status_code == 200 and published.parsed.status.value == "published"

        register = events_api["events_register"]
        first = register.sync_detailed(event.id, client=anyone,
                                       body=models.RegistrationIn(name="Ada Lovelace", email="Ada@Example.org"))
        assert first.status_code == 201, first.content
        assert isinstance(first.parsed, models.Registration)
        assert (first.parsed.status.value, first.parsed.email, first.parsed.waitlist_position) == (
            "registered", "ada@example.org", None)
        second = register.sync_detailed(event.id, client=anyone,
                                        body=models.RegistrationIn(name="Grace Hopper", email="grace@example.org"))
        assert (second.parsed.status.value, second.parsed.waitlist_position) == ("waitlisted", 1)
        bad = register.sync_detailed(event.id, client=anyone, body=models.RegistrationIn(name="", email="nope"))
        assert bad.status_code == 400 and set(bad.parsed.errors.to_dict()) == {"name", "email"}

        subscribed = subscribe.sync_detailed(
            client=anyone, body=models.SubscribeIn(email="reader@example.org", name="Reader", topics=["bulletin"]))
        assert subscribed.status_code == 202, subscribed.content
        assert isinstance(subscribed.parsed, models.Subscribed)
        assert (subscribed.parsed.email, subscribed.parsed.topics) == ("reader@example.org", ["bulletin"])

    rows = await db.fetch("SELECT email, status FROM registration ORDER BY id")
    assert [(r["email"], r["status"]) for r in rows] == [("ada@example.org", "registered"),
                                                          ("grace@example.org", "waitlisted")]
    queued = await db.fetch("SELECT kind, recipient FROM outbox ORDER BY id")
    kinds = {(r["kind"], r["recipient"]) for r in queued}
    assert ("registration_confirmed", "ada@example.org") in kinds
    assert ("subscription_confirm", "reader@example.org") in kinds
    subscriber = await db.fetch("SELECT status FROM subscriber WHERE email = {}", "reader@example.org")
    assert [r["status"] for r in subscriber] == ["pending"]
