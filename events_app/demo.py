"""Demo content: the career webinar (as it ran on 29 November 2022, plus an upcoming copy a week
from today so the register button can be tried), the October 2019 issue of the bulletin
"Implementation in Action" in the archive, and a staff account. Loading twice adds nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from . import db
from .domain import events, staff

TITLE = "Non-Academic Careers with Impact: Implementation Positions You Never Knew Existed"
ZONE = "America/Toronto"
AUDIENCE = "Graduate students, recent graduates and professionals moving into implementation roles"
SUMMARY = (
    "A free one-hour webinar on implementation careers beyond academia: what the jobs are, "
    "where they are, and how to get one."
)
DESCRIPTION = """\
Implementation science trains people for far more than faculty posts. Health systems, public
agencies, non-profits and consultancies all hire people who know how to move evidence into
practice, often under titles you would never search for.

In this free, virtual career webinar, practitioners who made the move describe:

- **the roles**: implementation specialist, knowledge mobilisation lead, improvement advisor,
  evaluation and practice-change positions;
- **the skills employers look for**, and how to describe your research experience in their terms;
- **how they found their positions**, and what they wish they had known.

There will be time for your questions. The session is for graduate students, recent graduates,
and professionals changing careers.

Register here to receive the link to join.
"""
QUESTIONS = [
    {
        "key": "stage",
        "label": "Where are you in your career?",
        "type": "single",
        "options": ["Graduate student", "Recent graduate", "Professional changing careers", "Other"],
        "required": True,
    },
    {"key": "question", "label": "A question for the panel", "type": "text", "required": False},
]
STAFF_EMAIL = "staff@example.org"
ISSUE_SLUG = "october-2019"
ISSUE_BODY = """\
## Non-academic careers with impact

Implementation scientists are not only found in universities. We asked three former graduate
students where their training took them:

- a **knowledge mobilisation lead** in a provincial health agency, who turns trial results into
  changes a hospital can make on Monday morning;
- an **improvement advisor** at a non-profit, who helps clinics test one change at a time;
- an **evaluation consultant**, who tells funders what worked, for whom, and why.

What they share: they can read evidence, talk with the people who will use it, and plan for the
messy middle between the two. None of their job titles mentions implementation.

## Coming up

Our career webinar, *Non-Academic Careers with Impact: Implementation Positions You Never Knew
Existed*, returns this autumn. [Register here](/events/non-academic-careers-with-impact).
"""


ORGANISATION = "Implementation Science Centre"


async def _organisation(tell: Callable[[str], None]) -> None:
    """Name the seed organisation in Settings, unless a name is there already (stored, or
    chosen with EVENTS_ORG_NAME)."""
    from . import settings
    from .domain import identity

    if (await identity.stored())["organisation_name"] or settings.get().org_name != "Events":
        return
    await identity.update({"organisation_name": ORGANISATION})
    tell(f"Named the organisation {ORGANISATION!r} (change it under Settings in the staff workspace)")


def _at(day: date) -> tuple[str, str]:
    zone = ZoneInfo(ZONE)
    start = datetime.combine(day, time(12, 0), tzinfo=zone)
    return start.isoformat(), (start + timedelta(hours=1)).isoformat()


async def load(say: Callable[[str], None] = print) -> None:
    """Add what is missing of the demo content; say what was added, or that it is all there."""
    added: list[str] = []

    def tell(line: str) -> None:
        added.append(line)
        say(line)

    for slug, day in (
        ("non-academic-careers-with-impact-2022", date(2022, 11, 29)),
        ("non-academic-careers-with-impact", datetime.now(ZoneInfo(ZONE)).date() + timedelta(days=7)),
    ):
        if await db.fetch("SELECT id FROM event WHERE slug = {}", slug):
            continue
        starts, ends = _at(day)
        event = await events.create(
            {
                "title": TITLE,
                "slug": slug,
                "summary": SUMMARY,
                "description": DESCRIPTION,
                "audience": AUDIENCE,
                "tags": ["career", "webinar"],
                "starts_at": starts,
                "ends_at": ends,
                "timezone": ZONE,
                "capacity": 100,
                "join_url": "https://meet.example.org/implementation-careers",
                "questions": QUESTIONS,
                "status": "published",
            }
        )
        tell(f"Added event {event['title']!r} on {day:%d %B %Y} at /events/{event['slug']}")
    if not await db.fetch("SELECT id FROM issue WHERE slug = {}", ISSUE_SLUG):
        from .domain import issues

        issue = await issues.create(
            {
                "title": "October 2019",
                "slug": ISSUE_SLUG,
                "issue_date": "2019-10-15",
                "summary": "Non-academic careers with impact: where implementation training leads.",
                "body": ISSUE_BODY,
            }
        )
        # Released back then, before this installation had subscribers: archive it without mail.
        released = datetime(2019, 10, 15, 14, 0, tzinfo=ZoneInfo("UTC"))
        await db.fetch(
            "UPDATE issue SET status = 'released', release_at = {}, released_at = {} WHERE id = {}",
            released,
            released,
            issue["id"],
        )
        tell(f"Added bulletin issue {issue['title']!r} of Implementation in Action at /bulletin/{ISSUE_SLUG}")
    if not await db.fetch("SELECT id FROM staff_user WHERE email = {}", STAFF_EMAIL):
        password = secrets.token_urlsafe(12)
        await staff.create(STAFF_EMAIL, password, "Demo staff")
        tell(f"Added staff account {STAFF_EMAIL} with password: {password}  (shown only once)")
    await _organisation(tell)
    if not added:
        say(
            "The demo content is already here: the webinar at /events, the October 2019 issue at /bulletin, "
            f"and the staff account {STAFF_EMAIL} (sign in at /staff; to set a new password: "
            f"events-app staff password {STAFF_EMAIL})."
        )
