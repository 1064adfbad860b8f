"""Bulletin issues and bulk mail: the staff API under /api/v1/issues and event announcements,
and the public archive (/bulletin, /bulletin/{slug}, /bulletin/feed.xml).

Staff (bearer token): create, change, list and read issues; preview one as the web page and as
the email; send a test to an address; release now or at `release_at`; watch `delivery`; pause,
resume, retry the failed. Anyone: the archive of released issues, each page and the Atom feed
ending with the subscribe call to action.

The feed is read outside the site: each entry's id is `urn:uuid:<issue uid>` (never the slug, so
a rename is not a new entry), its links are absolute and so is every link and image in its
content (markdown.to_html with the issue's page address; an xml:base would not do, many readers
ignore it). An issue page names its canonical address; an old slug answers 301 to the current one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_202_ACCEPTED

from .. import settings
from ..domain import audit, issues, mailings
from ..domain import validation as v
from ..domain.errors import NotFound, ValidationFailed
from ..mail import bulk
from ..markdown import to_html
from ..timefmt import iso
from .auth import require_staff


def _object(data: Any) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValidationFailed({"body": "must be a JSON object"})
    return data


def _json(value: Any) -> Any:
    return iso(value) if isinstance(value, datetime) else value


def _plain(values: dict) -> dict:
    return {k: _json(val) for k, val in values.items()}


def issue_json(issue: dict, delivery: dict | None = None) -> dict:
    base = settings.get().base_url
    out = {
        k: _json(issue[k])
        for k in (
            "id",
            "slug",
            "title",
            "issue_date",
            "summary",
            "body",
            "status",
            "release_at",
            "released_at",
            "version",
            "created_at",
            "updated_at",
        )
    }
    out["topic"] = issue["topic_slug"]
    out["url"] = f"{base}/bulletin/{issue['slug']}"
    if delivery is not None:
        out["delivery"] = _plain(delivery)
    return out


def _release_at(data: dict) -> datetime | None:
    value = data.get("release_at")
    if value in (None, ""):
        return None
    return v.timestamp(value, "release_at", "UTC")


def _staff_id(request: Request) -> int | None:
    member = getattr(request.state, "staff", None)
    return member["id"] if member else None


class IssuesApi(Controller):
    path = "/api/v1/issues"
    tags = ["bulletin"]
    guards = [require_staff]

    @post("/", status_code=HTTP_201_CREATED, summary="Write an issue (a draft)")
    async def create(self, request: Request, data: JSONBody[Any]) -> dict:
        issue = await issues.create(_object(data), staff_id=_staff_id(request))
        await audit.record(_staff_id(request), "issue.create", "issue", issue["id"], issue["title"])
        return issue_json(issue)

    @get("/", summary="Every issue, newest first")
    async def index(self) -> list[dict]:
        return [issue_json(i) for i in await issues.listing()]

    @get("/{issue_id:int}", summary="One issue with its delivery counts")
    async def show(self, issue_id: FromPath[int]) -> dict:
        issue = await issues.get(issue_id)
        return issue_json(issue, await issues.delivery(issue["id"]))

    @patch("/{issue_id:int}", summary="Change an issue (the topic only before release)")
    async def change(self, request: Request, issue_id: FromPath[int], data: JSONBody[Any]) -> dict:
        issue = await issues.update(issue_id, _object(data))
        await audit.record(_staff_id(request), "issue.update", "issue", issue["id"], ", ".join(sorted(_object(data))))
        return issue_json(issue)

    @get("/{issue_id:int}/preview", summary="The issue as its web page (HTML)")
    async def preview_web(self, issue_id: FromPath[int]) -> Template:
        issue = await issues.get(issue_id)
        return Template(
            "bulletin/issue.html", context={"issue": issue, "body": to_html(issue["body"]), "preview": True}
        )

    @get("/{issue_id:int}/preview-email", summary="The issue as the email: subject, text and HTML")
    async def preview_email(self, issue_id: FromPath[int], part: FromQuery[str] = "json") -> Any:
        mail = bulk.preview(await issues.get(issue_id), settings.get())
        if part == "html":
            return Response(mail["html"], media_type="text/html; charset=utf-8")
        if part == "text":
            return Response(mail["text"], media_type="text/plain; charset=utf-8")
        return mail

    @post("/{issue_id:int}/test", status_code=HTTP_202_ACCEPTED, summary="Send the email to one address, marked [Test]")
    async def test(self, request: Request, issue_id: FromPath[int], data: JSONBody[Any] = None) -> dict:
        body = _object(data)
        address = body.get("email") or (request.state.staff or {}).get("email")
        await issues.send_test(issue_id, address)
        return {"queued": 1, "email": v.email(address)}

    @get("/{issue_id:int}/recipients", summary="How many people a release now would reach")
    async def recipients(self, issue_id: FromPath[int]) -> dict:
        return {"recipients": await issues.recipient_count(issue_id)}

    @post("/{issue_id:int}/release", status_code=HTTP_202_ACCEPTED, summary="Release now or at release_at")
    async def release(self, request: Request, issue_id: FromPath[int], data: JSONBody[Any] = None) -> dict:
        at = _release_at(_object(data))
        result = await issues.release(issue_id, at, staff_id=_staff_id(request))
        count = await issues.recipient_count(issue_id, result["release_at"])
        when = "now" if result["status"] == "released" else f"at {iso(result['release_at'])}"
        await audit.record(
            _staff_id(request), "issue.release", "issue", issue_id, f"{when}, to about {count} subscribers"
        )
        return {
            "id": issue_id,
            "status": result["status"],
            "release_at": iso(result["release_at"]),
            "mailing": result["mailing"],
            "recipients": count,
        }

    @post("/{issue_id:int}/retry-failed", status_code=HTTP_200_OK, summary="Queue the failed deliveries again")
    async def retry_failed(self, request: Request, issue_id: FromPath[int], data: JSONBody[Any] = None) -> dict:
        include = v.boolean(_object(data).get("include_bounced", False), "include_bounced")
        count = await issues.retry_failed(issue_id, include)
        await audit.record(_staff_id(request), "issue.retry_failed", "issue", issue_id, f"{count} queued again")
        return {"queued": count}

    @post("/{issue_id:int}/pause", status_code=HTTP_200_OK, summary="Hold back what is not sent yet")
    async def pause(self, request: Request, issue_id: FromPath[int]) -> dict:
        await issues.pause(issue_id)
        await audit.record(_staff_id(request), "issue.pause", "issue", issue_id)
        return _plain(await issues.delivery(issue_id))

    @post("/{issue_id:int}/resume", status_code=HTTP_200_OK, summary="Send the rest now")
    async def resume(self, request: Request, issue_id: FromPath[int]) -> dict:
        await issues.resume(issue_id)
        await audit.record(_staff_id(request), "issue.resume", "issue", issue_id)
        return _plain(await issues.delivery(issue_id))


@post(
    "/api/v1/events/{event_id:int}/announce",
    guards=[require_staff],
    status_code=HTTP_202_ACCEPTED,
    tags=["events"],
    summary="Email the event to the events topic (and careers for events tagged career)",
)
async def announce(request: Request, event_id: FromPath[int], data: JSONBody[Any] = None) -> dict:
    again = v.boolean(_object(data).get("again", False), "again")
    mailing = await mailings.announce(event_id, _staff_id(request), again=again)
    await audit.record(
        _staff_id(request), "event.announce", "event", event_id, f"to about {mailing['recipients']} subscribers"
    )
    return {"mailing": mailing["id"], "recipients": mailing["recipients"], "status": mailing["status"]}


@get(
    "/api/v1/mailings/{mailing_id:int}",
    guards=[require_staff],
    tags=["bulletin"],
    summary="A mailing's delivery counts",
)
async def mailing_delivery(mailing_id: FromPath[int]) -> dict:
    return _plain(await mailings.delivery(mailing_id))


class BulletinPages(Controller):
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
                "author": parseaddr(config.mail_from)[0] or config.host,
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
