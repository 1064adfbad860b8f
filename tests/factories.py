"""Small builders for test data, going through the domain like real users do."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from events_app.domain import events


def event_data(**overrides) -> dict:
    start = (datetime.now(timezone.utc) + timedelta(days=7)).replace(hour=17, minute=0, second=0, microsecond=0)
    data = {
        "title": "Non-Academic Careers with Impact",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=1)).isoformat(),
        "timezone": "America/Toronto",
        "audience": "Graduate students and recent graduates",
        "description": "Hear from **practitioners**.",
        "capacity": 50,
        "join_url": "https://meet.example.org/room",
        "status": "published",
    }
    data.update(overrides)
    return data


async def published_event(**overrides) -> dict:
    return await events.create(event_data(**overrides))
