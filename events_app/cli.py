"""The `events-app` command: migrate, serve, worker, demo, staff, subscribers, inbound.

Bad arguments or a bad environment end with exit status 2 and a one-line reason on stderr,
never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import io
import os
import sys
from contextlib import redirect_stdout
from typing import NoReturn
from urllib.parse import urlsplit

from . import settings as settings_module


class CliError(Exception):
    """A one-line reason; exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line and status 2, like every other bad input
        raise CliError(f"{self.prog}: {message}")


async def _migrations_ran() -> list[str]:
    """The ids of the migrations this database has run ([] before the first)."""
    from piccolo.apps.migrations.tables import Migration

    try:
        if not await Migration.table_exists():
            return []
        return await Migration.get_migrations_which_ran(app_name="events_app")
    except Exception:  # no migration table yet, in whatever way the engine says it
        return []


def migration_descriptions() -> dict[str, str]:
    """Each migration's id and what it does (its DESCRIPTION; the day when it has none)."""
    import importlib
    import pkgutil

    from . import migrations

    found = {}
    for info in pkgutil.iter_modules(migrations.__path__):
        module = importlib.import_module(f"{migrations.__name__}.{info.name}")
        ident = getattr(module, "ID", None)
        if isinstance(ident, str):
            found[ident] = (getattr(module, "DESCRIPTION", "") or "").strip() or "schema changes"
    return found


async def migrate(quiet: bool = False) -> list[str]:
    """Apply pending migrations (idempotent) and seed the standard topics; say what was done:
    each migration applied, by day and description, or that there was nothing to do. Returns the
    ids of the migrations applied."""
    from piccolo.apps.migrations.commands.forwards import run_forwards

    from . import db
    from .domain import seed

    db.engine()
    before = await _migrations_ran()
    out = io.StringIO()
    with redirect_stdout(out):
        result = await run_forwards("all")
    if not result.success:
        raise CliError(f"migration failed: {result.message}")
    await seed.topics()
    applied = [ident for ident in await _migrations_ran() if ident not in set(before)]
    if not quiet:
        if applied:
            described = migration_descriptions()
            print(f"Applied {len(applied)} migration{'s' if len(applied) != 1 else ''}:")
            for ident in applied:
                print(f"  {ident[:10]}  {described.get(ident, 'schema changes')}")
            print("Database is up to date.")
        else:
            count = len(before)
            print(f"Database is up to date ({count} migration{'s' if count != 1 else ''} applied before).")
    return applied


async def _with_db(coro_fn, *args):
    from . import db

    await db.start()
    try:
        return await coro_fn(*args)
    finally:
        await db.stop()


async def _demo() -> None:
    from .demo import load

    await migrate(quiet=True)
    await load(print)


def _read_password() -> str:
    """A new password: prompted for twice on a terminal, else one line of standard input."""
    if sys.stdin.isatty():
        password = getpass.getpass("Password (at least 10 characters): ")
        if getpass.getpass("Again: ") != password:
            raise CliError("the two passwords differ")
        return password
    return sys.stdin.readline().rstrip("\r\n")


async def _staff_create(email: str, name: str) -> None:
    from .domain import staff
    from .domain.errors import ValidationFailed

    password = _read_password()
    try:
        member = await staff.create(email, password, name)
    except ValidationFailed as exc:
        raise CliError(exc.message) from None
    print(f"Created staff account {member['email']}.")


async def _staff_password(email: str) -> None:
    """Set a member's password; their sessions end and the sign-in throttle of the address lifts."""
    from .domain import staff
    from .domain.errors import NotFound, ValidationFailed

    password = _read_password()
    try:
        member = await staff.reset_password(email, password)
    except (NotFound, ValidationFailed) as exc:
        raise CliError(exc.message) from None
    print(f"New password set for {member['email']}; their sessions have ended.")


async def _staff_token(email: str, label: str) -> None:
    from .domain import staff
    from .domain.errors import NotFound

    try:
        print(await staff.new_token(email, label))
    except NotFound as exc:
        raise CliError(exc.message) from None


async def _subscribers_import(path: str, topics: list[str] | None) -> None:
    """events_app/domain/importer.py does the work; this shows a progress bar (on a terminal),
    then each skipped row on stderr and the summary on stdout."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    from . import db
    from .domain import importer
    from .domain.errors import ValidationFailed

    try:
        await db.fetch("SELECT 1 FROM subscriber LIMIT 1")
    except Exception:  # no such table: an unmigrated database
        raise CliError(
            "events-app subscribers import: the database is not migrated; run `events-app migrate` first"
        ) from None
    console = Console(stderr=True)
    columns = (
        TextColumn("Importing"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rows]:,} rows"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task("import", total=None, rows=0)

        def progress(done: int, total: int, rows: int) -> None:
            bar.update(task, completed=done, total=total or None, rows=rows)

        try:
            report = await importer.import_csv(path, topics, progress)
        except ValidationFailed as exc:
            raise CliError(f"events-app subscribers import: {'; '.join(exc.fields.values())}") from None
    for line, reason in report.problems:
        print(f"line {line}: {reason}", file=sys.stderr)
    if report.problems_not_listed:
        print(f"... and {report.problems_not_listed:,} more skipped rows not listed", file=sys.stderr)
    print(f"Done: {report.summary()}.")


LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "::"}


def serve_banner(config, host: str, port: int, worker: bool) -> tuple[list[str], str | None]:
    """What `serve` tells a newcomer before it starts (where to look, where mail goes, who sends
    it), and a warning when EVENTS_BASE_URL points at another local port than this server's, so
    every link in every email would lead nowhere."""
    shown = f"[{host}]" if ":" in host else host
    where = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else shown}:{port}"
    mail = (
        f"sent through {urlsplit(config.smtp_url).hostname}:{urlsplit(config.smtp_url).port or 'default port'}"
        if config.smtp_url
        else f"written as .eml files to {config.mail_dir}/ (set EVENTS_SMTP_URL to send it)"
    )
    lines = [
        f"Open {where}/events (staff workspace: {where}/staff, API documents: {where}/schema).",
        f"Mail is {mail}; "
        + (
            (
                "a worker process started with this server sends it."
                if config.serve_worker == "process"
                else "this process sends it."
            )
            if worker
            else "an `events-app worker` must run to send it."
        ),
    ]
    base = urlsplit(config.base_url)
    base_port = base.port or (443 if base.scheme == "https" else 80)
    warning = None
    if (base.hostname or "") in LOCAL_HOSTS | {host} and base_port != port:
        warning = (
            f"warning: EVENTS_BASE_URL is {config.base_url} but this server listens on port {port}: links "
            f"in emails and calendar files will not reach it. Set EVENTS_BASE_URL={where}"
        )
    return lines, warning


def _serve(host: str, port: int, worker: bool) -> None:
    from .app import create_app
    from .web.server import serve

    config = settings_module.get()
    lines, warning = serve_banner(config, host, port, worker)
    print("\n".join(lines), flush=True)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    app = create_app(run_worker=worker)
    serve(app, config, host=host, port=port, log_level=config.log_level_or("info"))


def _worker(parent_pid: int | None = None) -> None:
    from .mail.worker import run_forever

    asyncio.run(run_forever(parent_pid))


def _listen_address(value: str) -> tuple[str, int]:
    """HOST:PORT (an IPv6 host in brackets) for `inbound --listen`."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, e.g. 127.0.0.1:2525, not {value!r}")
    return host, int(port)


def _inbound(listen: tuple[str, int] | None, recipients: list[str] | None) -> int:
    """Mail that comes back (events_app/inbound): one message on stdin, or an LMTP server."""
    import logging

    from .inbound import lmtp

    # One message on stdin prints its outcome; the listener logs each message (default info).
    level = settings_module.get().log_level_or("info" if listen is not None else "warning")
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if listen is not None:
        asyncio.run(lmtp.serve(*listen))
        return 0
    try:
        return asyncio.run(lmtp.from_stdin(recipients or []))
    except ValueError as exc:
        raise CliError(f"events-app inbound: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="events-app", description="Events, registrations, invites and a bulletin.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("migrate", help="apply pending database migrations")
    serve = sub.add_parser("serve", help="serve the web app (and the mail worker)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-worker", action="store_true", help="do not run the mail worker in this process")
    worker = sub.add_parser("worker", help="run the mail worker alone")
    # Given by `serve` to the worker it starts (mail/worker.py run_beside): stop when that is gone.
    worker.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    sub.add_parser("demo", help="load the demo content if it is not there yet")
    staff = sub.add_parser("staff", help="staff accounts").add_subparsers(
        dest="staff_command", required=True, parser_class=_Parser
    )
    create = staff.add_parser("create", help="create a staff account (password from the prompt or stdin)")
    create.add_argument("email")
    create.add_argument("--name", default="")
    password = staff.add_parser("password", help="set a new password (prompt or stdin) and end that member's sessions")
    password.add_argument("email")
    token = staff.add_parser("token", help="print a new API token")
    token.add_argument("email")
    token.add_argument("--label", default="")
    subscribers = sub.add_parser("subscribers", help="mailing-list subscribers").add_subparsers(
        dest="subscribers_command", required=True, parser_class=_Parser
    )
    imports = subscribers.add_parser("import", help="import already-consented subscribers from a CSV file")
    imports.add_argument("file", metavar="FILE.csv", help="header row with 'email' and optionally 'name'")
    imports.add_argument(
        "--topic",
        action="append",
        dest="topics",
        metavar="SLUG",
        help="a topic to subscribe them to; repeatable (default: bulletin)",
    )
    inbound = sub.add_parser(
        "inbound", help="act on returned mail: unsubscribes, bounces, complaints, calendar replies"
    )
    inbound.add_argument(
        "--listen",
        type=_listen_address,
        metavar="HOST:PORT",
        help="run an LMTP server instead of reading one message on standard input",
    )
    inbound.add_argument(
        "--recipient",
        action="append",
        dest="recipients",
        metavar="ADDRESS",
        help="the envelope recipient (e.g. Postfix pipe's ${recipient}); repeatable",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    # Everything this process creates (database and its -wal/-shm, secret key, .eml mail, the var
    # dir itself) is readable by its owner only, whatever the shell's umask.
    os.umask(0o077)
    try:
        args = build_parser().parse_args(argv)
        settings_module.get()  # a bad environment fails here, with its reason
        if args.command == "migrate":
            asyncio.run(_with_db(migrate))
        elif args.command == "serve":
            _serve(args.host, args.port, not args.no_worker)
        elif args.command == "worker":
            _worker(args.parent_pid)
        elif args.command == "demo":
            asyncio.run(_with_db(_demo))
        elif args.command == "staff" and args.staff_command == "create":
            asyncio.run(_with_db(_staff_create, args.email, args.name))
        elif args.command == "staff" and args.staff_command == "password":
            asyncio.run(_with_db(_staff_password, args.email))
        elif args.command == "staff" and args.staff_command == "token":
            asyncio.run(_with_db(_staff_token, args.email, args.label))
        elif args.command == "subscribers" and args.subscribers_command == "import":
            asyncio.run(_with_db(_subscribers_import, args.file, args.topics))
        elif args.command == "inbound":
            return _inbound(args.listen, args.recipients)
        return 0
    except CliError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except settings_module.SettingsError as exc:
        print(f"events-app: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # e.g. the database server is not reachable
        print(f"events-app: {exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
