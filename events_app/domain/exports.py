"""CSV exports for staff: an event's registrants and the mailing list. The API and the
workspace's download buttons both call these, so both files are the same.

Every cell a person typed goes through `cell`: spreadsheets run cells starting with = + - @
(or a tab or line break) as formulas (CSV injection).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator

from ..timefmt import iso_seconds
from . import events, registrations
from .subscriber_lists import SubscriberFilter, page

__all__ = [
    "CSV_PAGE",
    "FIXED_COLUMNS",
    "SubscriberFilter",
    "cell",
    "question_headers",
    "registrants_csv",
    "subscribers_csv",
]

# Rows read per query while the mailing list streams out (no list is held whole in memory).
CSV_PAGE = 1000


def cell(value: str) -> str:
    """The text as a spreadsheet shows it, never as a formula it runs."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r", "\n") else value


FIXED_COLUMNS = ["id", "name", "email", "status", "waitlist_position", "registered_at", "attended_at"]


def question_headers(questions: list[dict]) -> list[str]:
    """One column header per question: its label as staff wrote it (the key where the label is
    empty), made unique with the key in brackets where two labels (or a fixed column) clash."""
    labels = [(q.get("label") or "").strip() or q["key"] for q in questions]
    taken = {c.lower() for c in FIXED_COLUMNS}
    out: list[str] = []
    for q, label in zip(questions, labels, strict=True):
        clash = label.lower() in taken or sum(1 for other in labels if other.lower() == label.lower()) > 1
        header = f"{label} ({q['key']})" if clash else label
        taken.add(header.lower())
        out.append(cell(header))
    return out


async def registrants_csv(event_id: int) -> tuple[str, str]:
    """(file name, CSV text) of the event's registrants with their answers, one column per
    question headed by its label. Times are ISO 8601 to the second with the offset of the
    event's zone ('2026-12-01T12:00:05-05:00'). NotFound for an unknown event."""
    event = await events.get(event_id)
    rows = await registrations.for_event(event_id)
    keys = [q["key"] for q in event["questions"]]
    zone = event["timezone"]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*FIXED_COLUMNS, *question_headers(event["questions"])])
    for r in rows:
        answers = [
            "; ".join(a)
            if isinstance(a := r["answers"].get(k, ""), list)
            else json.dumps(a)
            if isinstance(a, bool)
            else a
            for k in keys
        ]
        writer.writerow(
            [
                cell(str(value))
                for value in (
                    r["id"],
                    r["name"],
                    r["email"],
                    r["status"],
                    r["waitlist_position"] or "",
                    iso_seconds(r["created_at"], zone),
                    iso_seconds(r["attended_at"], zone),
                    *answers,
                )
            ]
        )
    return f"{event['slug']}-registrations.csv", out.getvalue()


async def subscribers_csv(topic: str | None, status: str | None, q: str | None) -> tuple[str, AsyncIterator[str]]:
    """(file name, the CSV in chunks) of the subscribers the filter selects; the filter is
    checked first (ValidationFailed naming `topic`, `status` or `q`), before anything streams."""
    flt = await SubscriberFilter.parse(topic, status, q)
    name = f"subscribers-{topic.strip()}.csv" if flt.topic is not None and topic else "subscribers.csv"
    return name, _subscriber_rows(flt)


async def _subscriber_rows(flt: SubscriberFilter) -> AsyncIterator[str]:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["email", "name", "status", "topics", "created_at", "confirmed_at"])
    after = 0
    while True:
        rows = await page(flt, after, CSV_PAGE)
        for r in rows:
            writer.writerow(
                [
                    cell(r["email"] or ""),
                    cell(r["name"] or ""),
                    r["status"],
                    "; ".join(r["topics"]),
                    iso_seconds(r["created_at"]),
                    iso_seconds(r["confirmed_at"]),
                ]
            )
        yield out.getvalue()
        out.seek(0)
        out.truncate()
        if len(rows) < CSV_PAGE:
            return
        after = rows[-1]["id"]
