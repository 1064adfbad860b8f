"""The staff API for bulletin issues under /api/v1/issues (bearer token): create, change, list
and read issues; preview one as the web page and as the email; send a test to an address;
release now or at `release_at`; watch `delivery`; pause, resume, retry the failed. Bodies and
answers are typed (web/schemas.py, web/responses.py); the public archive is web/bulletin.py and
announcements and mailings are web/mailings_api.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from litestar import Controller, MediaType, Request, Response, get, patch, post
from litestar.openapi.spec import OpenAPIMediaType as Content
from litestar.openapi.spec import OpenAPIResponse, Operation, Schema
from litestar.openapi.spec.enums import OpenAPIType
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import Template
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_202_ACCEPTED

from .. import settings
from ..domain import issues
from ..domain import validation as v
from ..mail import bulk
from ..markdown import to_html
from ..timefmt import iso
from . import responses as out
from .auth import require_staff
from .responses import ERRORS, STAFF, answer
from .schemas import ISSUE_EXAMPLE, IssueChange, IssueIn, ReleaseIn, RetryIn, SendTestIn, checked, example, fields


def _json(value: Any) -> Any:
    return iso(value) if isinstance(value, datetime) else value


def plain(values: dict) -> dict:
    """A dict with its times as ISO 8601 text."""
    return {k: _json(val) for k, val in values.items()}


def issue_json(issue: dict, delivery: dict | None = None) -> dict:
    """The API shape of an issue (responses.Issue), with its `delivery` when given."""
    base = settings.get().base_url
    answer = {
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
    answer["topic"] = issue["topic_slug"]
    answer["url"] = f"{base}/bulletin/{issue['slug']}"
    if delivery is not None:
        answer["delivery"] = plain(delivery)
    return answer


def _release_at(data: dict) -> datetime | None:
    value = data.get("release_at")
    if value in (None, ""):
        return None
    return v.timestamp(value, "release_at", "UTC")


def staff_id(request: Request) -> int | None:
    """The signed-in staff member's id (the audit log's actor)."""
    member = getattr(request.state, "staff", None)
    return member["id"] if member else None


@dataclass
class _TextToo(Operation):
    """preview-email's 200 names its other two forms too (`part=html`, `part=text`)."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse) and ok.content is not None:
            for media in ("text/html; charset=utf-8", "text/plain; charset=utf-8"):
                ok.content[media] = Content(schema=Schema(type=OpenAPIType.STRING))


class IssuesApi(Controller):
    path = "/api/v1/issues"
    tags = ["bulletin"]
    guards = [require_staff]
    security = STAFF

    @post("/", status_code=HTTP_201_CREATED, responses=answer(out.Issue, 201), summary="Write an issue (a draft)")
    async def create(self, request: Request, data: Annotated[IssueIn, example(ISSUE_EXAMPLE)]) -> dict:
        issue = await issues.create(fields(await checked(request, IssueIn, data)), actor=staff_id(request))
        return issue_json(issue)

    @get("/", responses=answer(list[out.Issue]), summary="Every issue, newest first")
    async def index(self) -> list[dict]:
        return [issue_json(i) for i in await issues.listing()]

    @get("/{issue_id:int}", responses=answer(out.Issue), summary="One issue with its delivery counts")
    async def show(self, issue_id: FromPath[int]) -> dict:
        issue = await issues.get(issue_id)
        return issue_json(issue, await issues.delivery(issue["id"]))

    @patch("/{issue_id:int}", responses=answer(out.Issue), summary="Change an issue (the topic only before release)")
    async def change(self, request: Request, issue_id: FromPath[int], data: JSONBody[IssueChange]) -> dict:
        issue = await issues.update(
            issue_id, fields(await checked(request, IssueChange, data)), actor=staff_id(request)
        )
        return issue_json(issue)

    @get(
        "/{issue_id:int}/preview",
        media_type=MediaType.HTML,
        responses=ERRORS,
        summary="The issue as its web page (HTML)",
    )
    async def preview_web(self, issue_id: FromPath[int]) -> Template:
        issue = await issues.get(issue_id)
        return Template(
            "bulletin/issue.html", context={"issue": issue, "body": to_html(issue["body"]), "preview": True}
        )

    @get(
        "/{issue_id:int}/preview-email",
        operation_class=_TextToo,
        responses=answer(out.MailPreview),
        summary="The issue as the email: subject, text and HTML (`part=html` or `part=text`: that part alone)",
    )
    async def preview_email(
        self, issue_id: FromPath[int], part: FromQuery[Literal["json", "html", "text"]] = "json"
    ) -> Any:  # the JSON preview, or one part of it (Response)
        mail = bulk.preview(await issues.get(issue_id), settings.get())
        if part == "html":
            return Response(mail["html"], media_type="text/html; charset=utf-8")
        if part == "text":
            return Response(mail["text"], media_type="text/plain; charset=utf-8")
        return mail

    @post(
        "/{issue_id:int}/test",
        status_code=HTTP_202_ACCEPTED,
        responses=answer(out.QueuedTest, 202),
        summary="Send the email to one address, marked [Test]",
    )
    async def test(self, request: Request, issue_id: FromPath[int], data: JSONBody[SendTestIn | None] = None) -> dict:
        body = fields(await checked(request, SendTestIn, data))
        address = str(body.get("email") or (request.state.staff or {}).get("email") or "")
        await issues.send_test(issue_id, address, actor=staff_id(request))
        return {"queued": 1, "email": v.email(address)}

    @get(
        "/{issue_id:int}/recipients",
        responses=answer(out.Recipients),
        summary="How many people a release now would reach",
    )
    async def recipients(self, issue_id: FromPath[int]) -> dict:
        return {"recipients": await issues.recipient_count(issue_id)}

    @post(
        "/{issue_id:int}/release",
        status_code=HTTP_202_ACCEPTED,
        responses=answer(out.Released, 202),
        summary="Release now or at release_at",
    )
    async def release(self, request: Request, issue_id: FromPath[int], data: JSONBody[ReleaseIn | None] = None) -> dict:
        at = _release_at(fields(await checked(request, ReleaseIn, data)))
        result = await issues.release(issue_id, at, actor=staff_id(request))
        count = await issues.recipient_count(issue_id, result["release_at"])
        return {
            "id": issue_id,
            "status": result["status"],
            "release_at": iso(result["release_at"]),
            "mailing": result["mailing"],
            "recipients": count,
        }

    @post(
        "/{issue_id:int}/retry-failed",
        status_code=HTTP_200_OK,
        responses=answer(out.Queued),
        summary="Queue the failed deliveries again",
    )
    async def retry_failed(
        self, request: Request, issue_id: FromPath[int], data: JSONBody[RetryIn | None] = None
    ) -> dict:
        include = (await checked(request, RetryIn, data)).include_bounced
        count = await issues.retry_failed(issue_id, include, actor=staff_id(request))
        return {"queued": count}

    @post(
        "/{issue_id:int}/pause",
        status_code=HTTP_200_OK,
        responses=answer(out.Delivery),
        summary="Hold back what is not sent yet",
    )
    async def pause(self, request: Request, issue_id: FromPath[int]) -> dict:
        await issues.pause(issue_id, actor=staff_id(request))
        return plain(await issues.delivery(issue_id))

    @post(
        "/{issue_id:int}/resume", status_code=HTTP_200_OK, responses=answer(out.Delivery), summary="Send the rest now"
    )
    async def resume(self, request: Request, issue_id: FromPath[int]) -> dict:
        await issues.resume(issue_id, actor=staff_id(request))
        return plain(await issues.delivery(issue_id))
