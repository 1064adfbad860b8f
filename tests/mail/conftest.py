"""Fixtures for the mail tests: the loopback SMTP server and a worker sending to it."""

from __future__ import annotations

import dataclasses

import pytest

from events_app import settings
from events_app.mail.worker import Worker
from smtp_server import smtp_server  # noqa: F401  (the fixture, from tests/smtp_server.py)


@pytest.fixture
def smtp_settings(smtp_server):  # noqa: F811
    return dataclasses.replace(settings.get(), smtp_url=smtp_server.url)


@pytest.fixture
async def worker(smtp_settings):
    w = Worker(smtp_settings)
    yield w
    await w.transport.close()
