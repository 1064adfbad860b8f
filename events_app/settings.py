"""Settings: one frozen object read from the environment (see the README's Configuration).

Everything configurable lives here so that the rest of the code never reads `os.environ`.
`load()` raises `SettingsError` with a one-line reason for a bad environment; the CLI turns it
into exit status 2.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit


class SettingsError(ValueError):
    """The environment holds a value we cannot use; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///var/events.sqlite3"
    smtp_url: str | None = None
    mail_from: str = "Events <events@localhost>"
    base_url: str = "http://127.0.0.1:8000"
    secret_key: str = ""
    redis_url: str | None = None
    rate_limits: bool = True
    env: str = "development"
    var_dir: Path = Path("var")
    # Minimum time between two re-sent confirmations for the same registration.
    resend_interval_seconds: int = 300
    # How long a claimed outbox row may stay in `sending` before it is retried.
    outbox_claim_timeout_seconds: int = 300
    outbox_max_attempts: int = 8
    worker_poll_seconds: float = 0.5
    # How often a worker looks for due reminders and follow-ups.
    schedule_interval_seconds: float = 30.0
    # Throttling per SMTP server, per worker process: parallel connections, and messages per
    # second over all of them (0: as fast as the server takes them).
    smtp_connections: int = 2
    smtp_rate: float = 0.0
    # How `events-app serve` runs its mail worker (mail/worker.py `run_beside`): "process", a
    # child `events-app worker` on its own core, database connection and event loop, so that a
    # rush of requests does not starve the confirmations; "task", on the server's own loop.
    serve_worker: str = "process"
    # Longest wait for the SMTP server at each step (connect, greeting, each command): a server
    # that accepts and never answers is a temporary failure after this long.
    smtp_timeout_seconds: float = 30.0
    # First retry after a temporary failure (4xx, server away); doubles per attempt, up to an hour.
    retry_base_seconds: float = 30.0
    # Bulk mail pauses itself after this many temporary failures in a row, for this long.
    bulk_pause_after: int = 50
    bulk_pause_minutes: float = 10.0
    # Registrants' personal data is purged this many days after an event ends (per event if staff
    # choose another figure).
    retention_days: int = 90
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (uvicorn's
    # forwarded_allow_ips): a comma-separated list of addresses; default only loopback.
    forwarded_allow_ips: str = "127.0.0.1"
    # The HTTP server (events_app/web/server.py): a connection whose request head is not complete
    # this long after it began is closed (slow clients); an idle keep-alive connection is closed
    # after keepalive_seconds; past max_connections open connections, new requests get a quick 503.
    header_timeout_seconds: float = 10.0
    keepalive_seconds: float = 5.0
    max_connections: int = 1000
    # Envelope sender of every message (default: the From address); bulk mail uses it VERP-style,
    # local+<tag>@domain, so that a bounce names the row it is about.
    return_path: str = ""
    # DKIM: a PEM private key file and its selector; unset: no signing.
    dkim_key_path: Path | None = None
    dkim_selector: str = ""
    # EVENTS_ORG_NAME: the organisation's name until staff set one in the workspace's Settings
    # (domain/identity.py keeps the identity in the database; this is only the first default).
    org_name: str = "Events"
    # EVENTS_LOG_LEVEL, lower case; "" when unset: each command its own default (`log_level_or`).
    log_level: str = ""

    def log_level_or(self, default: str) -> str:
        """The log level chosen in the environment, else `default` ("info", "warning", ...)."""
        return self.log_level or default

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def sqlite_path(self) -> str:
        return self.database_url.split("sqlite:///", 1)[1]

    @property
    def mail_dir(self) -> Path:
        return self.var_dir / "mail"

    @property
    def mail_from_address(self) -> str:
        return _address(self.mail_from)

    @property
    def host(self) -> str:
        return _hostname(self.base_url)


class Server(NamedTuple):
    """A server named by a URL (EVENTS_SMTP_URL, a PostgreSQL EVENTS_DATABASE_URL), split once:
    mail/transport.py and db.py connect with these parts, load() checks them."""

    scheme: str
    host: str | None
    port: int | None
    username: str | None
    password: str | None
    path: str


SMTP_SCHEMES = ("smtp", "smtp+starttls", "smtps")


def server(url: str, name: str) -> Server:
    """`url` in parts, user and password unquoted; SettingsError naming the variable `name` when
    its port is not a number (the message leaves out any password)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        where = parts.netloc.rpartition("@")[2]
        raise SettingsError(f"{name} must give the port as a number, not {where!r}") from None
    return Server(
        parts.scheme,
        parts.hostname,
        port,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
        parts.path,
    )


def smtp_server(url: str) -> Server:
    """EVENTS_SMTP_URL in parts; SettingsError (a ValueError) for a scheme we do not speak."""
    found = server(url, "EVENTS_SMTP_URL")
    if found.scheme not in SMTP_SCHEMES:
        raise SettingsError("EVENTS_SMTP_URL must start with smtp://, smtp+starttls:// or smtps://")
    return found


@lru_cache(maxsize=8)
def _address(mail_from: str) -> str:
    return parseaddr(mail_from)[1]


@lru_cache(maxsize=8)
def _hostname(url: str) -> str:
    return urlsplit(url).hostname or "localhost"


def _flag(name: str, default: str) -> bool:
    value = os.environ.get(name, default).strip().lower()
    if value in {"on", "true", "1", "yes"}:
        return True
    if value in {"off", "false", "0", "no"}:
        return False
    raise SettingsError(f"{name} must be 'on' or 'off', not {value!r}")


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _log_level() -> str:
    value = os.environ.get("EVENTS_LOG_LEVEL", "").strip().lower()
    if value and value not in LOG_LEVELS:
        raise SettingsError(f"EVENTS_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {value!r}")
    return value


def _number(name: str, default: str, kind: type, minimum: float) -> Any:
    raw = os.environ.get(name, default).strip()
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a {'whole ' if kind is int else ''}number, not {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")):  # nan and infinity pass float()
        raise SettingsError(f"{name} must be a finite number, not {raw!r}")
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, not {raw!r}")
    return value


def private_dir(path: Path) -> Path:
    """Create `path` (and its parents) readable by its owner only, if it is not there yet. An
    existing directory keeps its mode: the operator chose it."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
    return path


def _secret_key(env: str, var_dir: Path) -> str:
    key = os.environ.get("EVENTS_SECRET_KEY", "").strip()
    if key:
        if len(key) < 16:
            raise SettingsError("EVENTS_SECRET_KEY must be at least 16 characters")
        return key
    if env == "production":
        raise SettingsError("EVENTS_SECRET_KEY is required when EVENTS_ENV=production")
    path = var_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    private_dir(var_dir)
    key = secrets.token_urlsafe(48)
    # Written once and kept: links in emails already sent depend on it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


def _return_path(mail_from: str) -> str:
    value = os.environ.get("EVENTS_RETURN_PATH", "").strip()
    if not value:
        return _address(mail_from)
    address = parseaddr(value)[1]
    if "@" not in address or address != value:
        raise SettingsError("EVENTS_RETURN_PATH must be one plain address, e.g. bounces@example.org")
    return address


def _dkim() -> dict:
    key = os.environ.get("EVENTS_DKIM_KEY", "").strip()
    selector = os.environ.get("EVENTS_DKIM_SELECTOR", "").strip()
    if not key and not selector:
        return {}
    if not (key and selector):
        raise SettingsError("EVENTS_DKIM_KEY and EVENTS_DKIM_SELECTOR go together: set both or neither")
    path = Path(key)
    if not path.is_file():
        raise SettingsError(f"EVENTS_DKIM_KEY names no readable file: {key}")
    return {"dkim_key_path": path, "dkim_selector": selector}


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = os.environ.get(name, default).strip().lower() or default
    if value not in allowed:
        raise SettingsError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def load() -> Settings:
    """Read the environment; raise SettingsError naming the first bad variable."""
    var_dir = Path(os.environ.get("EVENTS_VAR_DIR", "var").strip() or "var")
    # Unset, the database is a SQLite file in the var dir, beside the secret key and the mail.
    database_url = os.environ.get("EVENTS_DATABASE_URL", "").strip() or f"sqlite:///{var_dir / 'events.sqlite3'}"
    scheme = urlsplit(database_url).scheme
    if scheme not in {"sqlite", "postgresql", "postgres"}:
        raise SettingsError(
            f"EVENTS_DATABASE_URL must start with sqlite:/// or postgresql://, not {database_url.split(':', 1)[0]!r}"
        )
    if scheme == "sqlite" and not database_url.startswith("sqlite:///"):
        raise SettingsError("EVENTS_DATABASE_URL must look like sqlite:///path/to/file")
    if scheme != "sqlite":
        server(database_url, "EVENTS_DATABASE_URL")
    smtp_url = os.environ.get("EVENTS_SMTP_URL", "").strip() or None
    if smtp_url:
        smtp_server(smtp_url)
    base_url = os.environ.get("EVENTS_BASE_URL", "http://127.0.0.1:8000").strip().rstrip("/")
    if urlsplit(base_url).scheme not in {"http", "https"}:
        raise SettingsError("EVENTS_BASE_URL must be an http:// or https:// URL")
    mail_from = os.environ.get("EVENTS_MAIL_FROM", "Events <events@localhost>").strip()
    if "@" not in parseaddr(mail_from)[1]:
        raise SettingsError("EVENTS_MAIL_FROM must hold an email address, e.g. 'Events <events@example.org>'")
    env = os.environ.get("EVENTS_ENV", "development").strip()
    return Settings(
        database_url=database_url,
        smtp_url=smtp_url,
        mail_from=mail_from,
        base_url=base_url,
        secret_key=_secret_key(env, var_dir),
        redis_url=os.environ.get("EVENTS_REDIS_URL", "").strip() or None,
        rate_limits=_flag("EVENTS_RATE_LIMITS", "on"),
        env=env,
        var_dir=var_dir,
        resend_interval_seconds=_number("EVENTS_RESEND_INTERVAL_SECONDS", "300", int, 0),
        worker_poll_seconds=_number("EVENTS_WORKER_POLL_SECONDS", "0.5", float, 0.01),
        schedule_interval_seconds=_number("EVENTS_SCHEDULE_INTERVAL_SECONDS", "30", float, 0.1),
        outbox_claim_timeout_seconds=_number("EVENTS_OUTBOX_CLAIM_TIMEOUT_SECONDS", "300", int, 1),
        smtp_connections=_number("EVENTS_SMTP_CONNECTIONS", "2", int, 1),
        smtp_rate=_number("EVENTS_SMTP_RATE", "0", float, 0),
        serve_worker=_choice("EVENTS_SERVE_WORKER", "process", ("process", "task")),
        retry_base_seconds=_number("EVENTS_RETRY_BASE_SECONDS", "30", float, 0),
        bulk_pause_after=_number("EVENTS_BULK_PAUSE_AFTER", "50", int, 1),
        bulk_pause_minutes=_number("EVENTS_BULK_PAUSE_MINUTES", "10", float, 0),
        retention_days=_number("EVENTS_RETENTION_DAYS", "90", int, 1),
        forwarded_allow_ips=os.environ.get("EVENTS_FORWARDED_ALLOW_IPS", "127.0.0.1").strip(),
        header_timeout_seconds=_number("EVENTS_HEADER_TIMEOUT_SECONDS", "10", float, 0.1),
        keepalive_seconds=_number("EVENTS_KEEPALIVE_SECONDS", "5", float, 0.1),
        max_connections=_number("EVENTS_MAX_CONNECTIONS", "1000", int, 1),
        return_path=_return_path(mail_from),
        org_name=" ".join(os.environ.get("EVENTS_ORG_NAME", "").split()) or "Events",
        log_level=_log_level(),
        **_dkim(),
    )


_current: Settings | None = None


def get() -> Settings:
    """The process-wide settings, loaded on first use."""
    global _current
    if _current is None:
        _current = load()
    return _current


def reset() -> None:
    """Forget the loaded settings (tests change the environment between apps)."""
    global _current
    _current = None
