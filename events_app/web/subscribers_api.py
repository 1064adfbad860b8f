"""POST /api/v1/subscribers: subscribing through the API (double opt-in).

The answer is the same whatever the address, byte for byte: it is built from what the caller
sent, never from what is stored (see web/subscriber.py for the pages that share the wording).
"""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, Response, post
from litestar.status_codes import HTTP_202_ACCEPTED

from ..domain import subscriptions
from . import responses as out
from .responses import answer
from .schemas import SUBSCRIBE_EXAMPLE, SubscribeIn, checked, example, fields
from .subscriber import ACCEPTED


class SubscriberApi(Controller):
    path = "/api/v1/subscribers"
    tags = ["subscribers"]

    @post(
        "/",
        status_code=HTTP_202_ACCEPTED,
        responses=answer(out.Subscribed, 202),
        summary="Subscribe (double opt-in); same answer for any address",
    )
    async def subscribe(self, request: Request, data: Annotated[SubscribeIn, example(SUBSCRIBE_EXAMPLE)]) -> Response:
        email, name, topics = subscriptions.clean_request(fields(await checked(request, SubscribeIn, data)))
        ids = await subscriptions.topic_ids(topics)  # an unknown topic is the caller's mistake: say so
        await subscriptions.subscribe(email, name, ids, source="api")
        body = {"email": email, "name": name, "topics": list(ids), "detail": ACCEPTED}
        return Response(body, status_code=HTTP_202_ACCEPTED)
