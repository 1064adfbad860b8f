"""The public archive of bulletin issues: /bulletin (released issues, newest first),
/bulletin/{slug} (one issue, ending with the call to subscribe) and /bulletin/feed.xml (Atom).

The feed is read outside the site: each entry's id is `urn:uuid:<issue uid>` (never the slug, so
a rename is not a new entry), its links are absolute and so is every link and image in its
content (markdown.to_html with the issue's page address; an xml:base would not do, many readers
ignore it). An issue page names its canonical address; an old slug answers 301 to the current one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parseaddr

from litestar import Controller, get
from litestar.params import FromPath
from litestar.response import Redirect, Template

from .. import settings
from ..domain import identity, issues
from ..domain.errors import NotFound
from ..markdown import to_html


class ArchivePages(Controller):
    """The public archive: released issues only, each page ending with the call to subscribe."""

    path = "/bulletin"
    include_in_schema = False

    @get("/")
    async def archive(self) -> Template:
        return Template("bulletin/archive.html", context={"issues": await issues.released()})

    @get("/feed.xml")
    async def feed(self) -> Template:
        """Atom (RFC 4287): the 50 newest released issues. Fills in the uid of an issue made before
        issue.uid existed, once (the only write, invisible to readers)."""
        config = settings.get()
        base = config.base_url.rstrip("/")
        entries = []
        for issue in await issues.with_uids(await issues.released(limit=50)):
            url = f"{base}/bulletin/{issue['slug']}"
            # A scheduled release is published when its time comes, after its last edit.
            changed = max(_utc(issue["updated_at"]), _utc(issue["released_at"]))
            entries.append(
                {
                    **issue,
                    "url": url,
                    "published": _atom_time(issue["released_at"]),
                    "updated": _atom_time(changed),
                    "changed": changed,
                    "content": to_html(issue["body"], url),
                }
            )
        updated = max((e["changed"] for e in entries), default=datetime(2019, 1, 1, tzinfo=UTC))
        return Template(
            "bulletin/feed.xml",
            context={
                "entries": entries,
                "base": base,
                "updated": _atom_time(updated),
                # The organisation (domain/identity.py, refreshed before every request).
                "author": identity.snapshot().name or parseaddr(config.mail_from)[0] or config.host,
            },
            media_type="application/atom+xml; charset=utf-8",
        )

    @get("/{slug:str}")
    async def issue(self, slug: FromPath[str]) -> Template | Redirect:
        """A released issue's page; an old slug of one answers 301 to its current address."""
        try:
            issue = await issues.released_by_slug(slug)
        except NotFound:
            current = await issues.moved_to(slug)
            if current is None:
                raise
            return Redirect(f"/bulletin/{current}", status_code=301)
        canonical = f"{settings.get().base_url.rstrip('/')}/bulletin/{issue['slug']}"
        return Template(
            "bulletin/issue.html", context={"issue": issue, "body": to_html(issue["body"]), "canonical": canonical}
        )


def _utc(moment: datetime) -> datetime:
    """An aware UTC time (SQLite may hand back a naive one, which is UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _atom_time(moment: datetime) -> str:
    """RFC 3339 as Atom wants it: 2019-10-15T14:00:00Z."""
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")
