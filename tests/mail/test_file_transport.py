"""Without EVENTS_SMTP_URL every message becomes an .eml file in the mail directory."""

from __future__ import annotations

import dataclasses
from email import policy
from email.parser import BytesParser

from events_app import settings
from events_app.mail.transport import FileTransport, make_transport
from events_app.mail.worker import Worker

from .helpers import TITLE, invite_of, outbox_rows, published_webinar, register, registration_row, text_of


async def test_messages_land_as_eml_files_that_mail_clients_can_open(tmp_path):
    config = dataclasses.replace(settings.get(), smtp_url=None, var_dir=tmp_path)
    worker = Worker(config)
    assert isinstance(worker.transport, FileTransport)
    event = await published_webinar()
    reg = await register(event, "Ada Lovelace", "ada@example.com")

    assert await worker.run_once() == 1

    [row] = await outbox_rows()
    files = sorted((tmp_path / "mail").iterdir())
    assert [f.name.endswith(f"-{row['id']}.eml") for f in files] == [True]  # no temporary left over
    message = BytesParser(policy=policy.default).parsebytes(files[0].read_bytes())
    assert message["Subject"] == f"You're registered: {TITLE}"
    assert message["To"].addresses[0].addr_spec == "ada@example.com"
    assert "/r/" in text_of(message) and "/j/" in text_of(message)
    method, _, vevent = invite_of(message)
    assert method == "REQUEST" and str(vevent["UID"]) == (await registration_row(reg["id"]))["calendar_uid"]
    assert b"\r\n" in files[0].read_bytes()  # wire format, as an MTA would store it
    assert row["status"] == "sent"


def test_the_transport_follows_the_settings(tmp_path):
    config = dataclasses.replace(settings.get(), smtp_url=None, var_dir=tmp_path)
    assert make_transport(config).directory == tmp_path / "mail"
    smtp = make_transport(dataclasses.replace(config, smtp_url="smtp+starttls://me%40x.org:p%3Ass@mail.example.org"))
    assert (smtp.hostname, smtp.port, smtp.start_tls, smtp.use_tls) == ("mail.example.org", 587, True, False)
    assert (smtp.username, smtp.password) == ("me@x.org", "p:ss")
    smtps = make_transport(dataclasses.replace(config, smtp_url="smtps://u:p@mail.example.org"))
    assert (smtps.port, smtps.use_tls, smtps.start_tls) == (465, True, False)
    plain = make_transport(dataclasses.replace(config, smtp_url="smtp://127.0.0.1:2525"))
    assert (plain.port, plain.use_tls, plain.start_tls, plain.username) == (2525, False, False, None)
