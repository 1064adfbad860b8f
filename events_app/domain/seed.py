"""Rows every installation starts with: the mailing topics."""

from __future__ import annotations

from .. import db

TOPICS = [
    ("bulletin", "Implementation in Action", "Our periodic bulletin: articles, interviews and news."),
    ("events", "Events", "Announcements of upcoming webinars and workshops."),
    ("careers", "Career events", "Career webinars and job-related events."),
]


async def topics() -> None:
    """Insert the standard topics that are missing; leaves existing ones untouched."""
    for slug, name, description in TOPICS:
        if not await db.fetch("SELECT id FROM topic WHERE slug = {}", slug):
            await db.fetch("INSERT INTO topic (slug, name, description) VALUES ({}, {}, {})", slug, name, description)
