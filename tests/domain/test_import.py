"""Importing consented subscribers from CSV (`events-app subscribers import`): bad rows reported by
line, idempotence down to timestamps, erasures and unsubscribes respected, topics, the command
itself, and a large file in batches."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from events_app import db
from events_app.domain import importer, subscriptions
from events_app.domain.errors import ValidationFailed

INVALID = "email: must be an email address like name@example.org"
LARGE_ROWS = 100_000


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


async def snapshot() -> dict:
    """Every row of every table the import could touch, in id order."""
    return {
        table: await db.fetch(f"SELECT * FROM {table} ORDER BY id")
        for table in ("subscriber", "subscription", "outbox", "topic")
    }


async def people() -> dict[str, dict]:
    """email -> subscriber with its topic slugs (erased ones keyed by their hash)."""
    out = {}
    for row in await db.fetch("SELECT id FROM subscriber ORDER BY id"):
        sub = await subscriptions.get(row["id"])
        out[sub["email"] or sub["email_hash"]] = sub
    return out


async def pending(email: str, name: str = "", topics=("bulletin",)) -> dict:
    await subscriptions.subscribe(email, name, await subscriptions.topic_ids(list(topics)))
    return (await db.fetch("SELECT * FROM subscriber WHERE email = {}", email))[0]


async def confirmed(email: str, name: str = "", topics=("bulletin",)) -> dict:
    row = await pending(email, name, topics)
    return await subscriptions.confirm(subscriptions.confirm_token(row))


async def test_bad_rows_are_reported_by_line_and_the_rest_imported(tmp_path):
    long_name = "x" * 201
    csv_file = write(tmp_path / "list.csv", (
        "Name,EMAIL,Notes\r\n"                       # 1: any case, any order, extra columns
        "Ann Example,ann@example.org,vip\r\n"        # 2
        "Bob,not-an-address,\r\n"                    # 3: invalid
        "Carl,,no email\r\n"                         # 4: missing
        "\r\n"                                       # 5: blank, not a row
        'Dora,dora@example.org,"two\r\nlines"\r\n'   # 6-7: one row over two lines
        f"{long_name},long@example.org,\r\n"         # 8: overlong name
        "Eve,EVE@Example.ORG,\r\n"                   # 9: lower-cased
        "Ann Again,ann@example.org,\r\n"             # 10: repeat: the first occurrence decides
        "Fay,fay@example.org\r\n"                    # 11: short row
        "Gus\r\n"                                    # 12: no email cell
    ).encode() + "H\xe9l\xe8ne,helene@example.org\r\n".encode("latin-1")  # 13: not UTF-8
      + b"Tab\tName,tab@example.org\r\n")             # 14: control character in the name

    report = await importer.import_csv(csv_file, None)

    assert report.problems == [
        (3, INVALID),
        (4, "email: is required"),
        (8, "name: must be at most 200 characters"),
        (12, "email: is required"),
        (13, "row: is not valid UTF-8"),
        (14, "name: must be one line without control characters"),
    ]
    assert (report.rows, report.imported, report.updated, report.unchanged, report.skipped) == (11, 4, 0, 1, 6)
    assert report.invalid == 6 and report.topics == ["bulletin"]
    assert "imported 4, updated 0, unchanged 1, skipped 6" in report.summary()
    found = await people()
    assert sorted(found) == ["ann@example.org", "dora@example.org", "eve@example.org", "fay@example.org"]
    assert found["ann@example.org"]["name"] == "Ann Example"
    for sub in found.values():
        assert sub["status"] == "confirmed" and sub["source"] == "import"
        assert sub["confirmed_at"] is not None and sub["confirmed_at"] == sub["created_at"]
        assert sub["topics"] == ["bulletin"]
    # Imported people were vouched for: no confirmation email.
    assert (await db.fetch("SELECT COUNT(*) AS n FROM outbox"))[0]["n"] == 0


async def test_importing_the_same_file_twice_changes_nothing(tmp_path):
    await pending("was-pending@example.org", "Pat")
    await confirmed("was-confirmed@example.org", "Cy", topics=("events",))
    rows = ["email,name", "was-pending@example.org,Pat Import", "was-confirmed@example.org,Cy Import",
            "broken-address,Nobody"] + [f"person{i}@example.org,Person {i}" for i in range(2500)]
    csv_file = write(tmp_path / "list.csv", "\n".join(rows) + "\n")

    first = await importer.import_csv(csv_file, ["bulletin", "events"])
    assert (first.imported, first.updated, first.unchanged, first.skipped) == (2500, 2, 0, 1)
    before = await snapshot()
    second = await importer.import_csv(csv_file, ["bulletin", "events"])
    assert (second.imported, second.updated, second.unchanged, second.skipped) == (0, 0, 2502, 1)
    assert second.problems == first.problems == [(4, INVALID)]
    assert await snapshot() == before, "no row, timestamp or topic changed"
    assert len(before["subscription"]) == 2502 * 2

    # Nothing was used up either (PostgreSQL sequences advance on a conflicting insert).
    newest = before["subscriber"][-1]["id"]
    later = await pending("later@example.org")
    assert later["id"] == newest + 1


async def test_erased_and_unsubscribed_addresses_are_never_re_added(tmp_path):
    gone = await confirmed("gone@example.org", "Gone")
    await subscriptions.erase(subscriptions.manage_token(gone))
    left = await confirmed("left@example.org", "Left")
    await subscriptions.unsubscribe(subscriptions.manage_token(left))
    waiting = await pending("waiting@example.org", "Wanda", topics=("careers",))
    member = await confirmed("member@example.org", "Member")
    paused_until = datetime.now(timezone.utc) + timedelta(weeks=3)
    await db.fetch("UPDATE subscriber SET paused_until = {} WHERE id = {}", paused_until, member["id"])
    before = {p["id"]: p for p in (await people()).values()}

    csv_file = write(tmp_path / "list.csv", (
        "email,name\n"
        "GONE@example.org,Gone Again\n"        # 2: erased, matched by its hash
        "left@example.org,Left Again\n"        # 3: unsubscribed
        "waiting@example.org,Someone Else\n"   # 4: pending -> confirmed, name kept
        "member@example.org,Another Name\n"    # 5: confirmed, gains events
        "new@example.org,New\n"                # 6
    ))
    report = await importer.import_csv(csv_file, ["events"])

    assert report.problems == [(2, importer.ERASED), (3, importer.UNSUBSCRIBED)]
    assert (report.imported, report.updated, report.unchanged) == (1, 2, 0)
    assert (report.erased, report.unsubscribed, report.skipped) == (1, 1, 2)
    after = {p["id"]: p for p in (await people()).values()}
    assert after[gone["id"]] == before[gone["id"]], "the erased row keeps nothing but its hash"
    assert after[gone["id"]]["email"] is None and after[gone["id"]]["topics"] == []
    assert after[left["id"]] == before[left["id"]]
    w = after[waiting["id"]]
    assert w["status"] == "confirmed" and w["confirmed_at"] is not None and w["name"] == "Wanda"
    assert w["topics"] == ["events", "careers"]
    m = after[member["id"]]
    assert m["name"] == "Member" and m["confirmed_at"] == member["confirmed_at"]
    assert m["topics"] == ["bulletin", "events"] and m["paused_until"] == paused_until
    assert (await db.fetch("SELECT COUNT(*) AS n FROM subscriber WHERE email IS NULL"))[0]["n"] == 1
    assert sorted(p["email"] or "erased" for p in after.values()) == [
        "erased", "left@example.org", "member@example.org", "new@example.org", "waiting@example.org",
    ]


async def test_topics_option_default_and_unknown_topic(tmp_path):
    csv_file = write(tmp_path / "list.csv", "EMAIL\nann@example.org\nbob@example.org\n")
    await importer.import_csv(csv_file, ["careers", "events", "careers"])
    assert {p["topics"] == ["events", "careers"] for p in (await people()).values()} == {True}

    await importer.import_csv(csv_file, None)  # the default adds the bulletin
    assert {tuple(p["topics"]) for p in (await people()).values()} == {("bulletin", "events", "careers")}

    before = await snapshot()
    with pytest.raises(ValidationFailed) as failed:
        await importer.import_csv(write(tmp_path / "more.csv", "email\nnew@example.org\n"), ["bulletin", "nope"])
    assert failed.value.fields == {"topic": "unknown topic 'nope'; known: bulletin, careers, events"}
    assert await snapshot() == before


async def test_unusable_files_fail_before_writing(tmp_path):
    cases = {
        tmp_path / "missing.csv": "does not exist",
        write(tmp_path / "empty.csv", ""): "is empty",
        write(tmp_path / "noemail.csv", "mail,name\na@example.org,A\n"): "has no 'email' column",
        tmp_path: "is a directory",
    }
    for path, reason in cases.items():
        with pytest.raises(ValidationFailed) as failed:
            await importer.import_csv(path, None)
        assert reason in failed.value.fields["file"]
    assert (await db.fetch("SELECT COUNT(*) AS n FROM subscriber"))[0]["n"] == 0


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "events_app.cli", "subscribers", "import", *args],
        capture_output=True, text=True, timeout=120, env=dict(os.environ),
    )


async def test_the_command_reports_lines_and_counts_and_exits_2_on_bad_arguments(tmp_path):
    gone = await confirmed("gone@example.org")
    await subscriptions.erase(subscriptions.manage_token(gone))
    csv_file = write(tmp_path / "list.csv", "Email,Name\nann@example.org,Ann\nnope,Bob\ngone@example.org,G\n")

    done = cli(str(csv_file), "--topic", "events", "--topic", "bulletin")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [f"line 3: {INVALID}", f"line 4: {importer.ERASED}"]
    assert done.stdout.strip() == (
        "Done: imported 1, updated 0, unchanged 0, skipped 2 (invalid 1, erased 1, unsubscribed 0) "
        "of 3 rows; topics: events, bulletin."
    )
    assert (await people())["ann@example.org"]["topics"] == ["bulletin", "events"]

    again = cli(str(csv_file), "--topic", "events", "--topic", "bulletin")
    assert again.returncode == 0 and "imported 0, updated 0, unchanged 1, skipped 2" in again.stdout

    write(tmp_path / "noemail.csv", "name\nAnn\n")
    bad = {
        (str(tmp_path / "missing.csv"),): "missing.csv does not exist",
        (str(tmp_path / "noemail.csv"),): "has no 'email' column in its header row (found 'name')",
        (str(csv_file), "--topic", "nope"): "unknown topic 'nope'",
        (): "the following arguments are required: FILE.csv",
    }
    for args, reason in bad.items():
        result = cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and reason in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


async def test_a_large_file_is_imported_in_batches(tmp_path):
    """100,000 rows, read as a stream: a progress report after every batch of 1,000."""
    csv_file = tmp_path / "large.csv"
    with open(csv_file, "w") as out:
        out.write("email,name\n")
        for i in range(LARGE_ROWS):
            out.write(f"reader{i}@example.org,Reader {i}\n" if i % 10_000 != 5 else "not an address,Bad\n")
    calls: list[tuple[int, int, int]] = []
    started = time.perf_counter()
    report = await importer.import_csv(csv_file, ["bulletin", "events"], lambda *a: calls.append(a))
    elapsed = time.perf_counter() - started
    print(f"\nimported {LARGE_ROWS:,} rows in {elapsed:.1f} s ({LARGE_ROWS / elapsed:,.0f} rows/s)")

    assert (report.rows, report.imported, report.skipped) == (LARGE_ROWS, LARGE_ROWS - 10, 10)
    assert [line for line, _ in report.problems] == [i * 10_000 + 7 for i in range(10)]
    counts = await db.fetch("SELECT COUNT(*) AS n, COUNT(DISTINCT email_hash) AS h FROM subscriber")
    assert counts[0]["n"] == counts[0]["h"] == LARGE_ROWS - 10
    assert (await db.fetch("SELECT COUNT(*) AS n FROM subscription"))[0]["n"] == 2 * (LARGE_ROWS - 10)
    # One report per batch: the file was read a batch at a time, never whole.
    assert len(calls) == (LARGE_ROWS - 10) // importer.BATCH_SIZE + 1
    size = csv_file.stat().st_size
    assert all(done < size for done, _, _ in calls[:-1]) and calls[-1][0] == size
    assert [rows for _, _, rows in calls] == sorted(rows for _, _, rows in calls)


# Excel and other spreadsheets (issue 14) ---------------------------------------------------------

async def test_an_excel_semicolon_file_with_a_byte_order_mark_imports(tmp_path):
    # "CSV UTF-8" as Excel saves it where the decimal mark is a comma: BOM, semicolons, CRLF, and
    # names holding commas (quoted only when they hold a semicolon).
    csv_file = write(tmp_path / "excel.csv", (
        "\ufeffNom;E-mail;Name\r\n"
        "x;ann@example.org;Example, Ann\r\n"
        'x;bob@example.org;"Builder; Bob"\r\n'
        "x;not-an-address;Nobody\r\n"
    ).encode("utf-8"))
    report = await importer.import_csv(csv_file, ["bulletin"])
    assert (report.imported, report.invalid, report.problems) == (2, 1, [(4, INVALID)])
    found = await people()
    assert found["ann@example.org"]["name"] == "Example, Ann"
    assert found["bob@example.org"]["name"] == "Builder; Bob"


async def test_tab_separated_and_email_address_headers_import(tmp_path):
    csv_file = write(tmp_path / "export.tsv", "First\tEmail Address\tFull Name\nA\tcy@example.org\tCy Young\n")
    report = await importer.import_csv(csv_file, ["bulletin"])
    assert report.imported == 1 and (await people())["cy@example.org"]["name"] == "Cy Young"


def test_the_delimiter_is_read_from_the_header_row():
    assert importer.sniff_delimiter("email;name\r\n") == ";"
    assert importer.sniff_delimiter("EMAIL\tname\n") == "\t"
    assert importer.sniff_delimiter("email,name\n") == ","
    assert importer.sniff_delimiter("email\n") == ","  # one column: any delimiter reads it
    assert importer.sniff_delimiter('"name; nickname",email\n') == ","  # a quoted semicolon is text
    assert importer.sniff_delimiter("name;address\n") == ","  # no email header: the old message
