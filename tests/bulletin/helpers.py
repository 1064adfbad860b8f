"""Shared by the bulletin tests: many confirmed subscribers fast, and a worker driven to the end
of a release."""

from __future__ import annotations

from pathlib import Path

from events_app import db
from events_app.domain import importer, issues, mailings


async def subscribers(tmp_path: Path, count: int, topic: str = "bulletin", start: int = 0) -> list[str]:
    """`count` confirmed subscribers of `topic` (through the importer, as a list owner would)."""
    addresses = [f"reader{n}@example.org" for n in range(start, start + count)]
    path = tmp_path / f"subscribers-{topic}-{start}.csv"
    path.write_text("email,name\n" + "".join(f"{a},Reader {n}\n" for n, a in enumerate(addresses, start)))
    report = await importer.import_csv(path, [topic])
    assert report.imported + report.updated == count, report
    return addresses


async def new_issue(**fields) -> dict:
    data = {"title": "October 2019", "issue_date": "2019-10-15", "summary": "Careers beyond academia",
            "body": "## Non-academic careers\n\nImplementation positions you never knew existed.\n\n"
                    "![A team](https://example.org/team.png)"}
    data.update(fields)
    return await issues.create(data)


async def run_until_settled(*workers, limit: int = 200, max_rounds: int = 100_000) -> None:
    """Tick and send until no mailing is expanding and no row is queued and due or in flight."""
    for _ in range(max_rounds):
        written = await mailings.tick()
        handled = 0
        for w in workers:
            handled += await w.run_once(limit)
        if not written and not handled:
            busy = await db.fetch(
                "SELECT count(*) AS n FROM outbox WHERE status = 'sending' OR "
                "(status = 'queued' AND next_attempt_at <= {})", mailings.now()
            )
            if not busy[0]["n"]:
                await mailings.tick()  # mark finished mailings done
                return
    raise AssertionError("the release did not settle")
