"""Fixtures for the mail tests: the loopback SMTP server and a worker sending to it (defined
once, in tests/mail/sending.py, which tests outside this folder import too)."""

from __future__ import annotations

from mail.sending import smtp_server, smtp_settings, worker  # noqa: F401  (fixtures)
