"""POST /api/v1/subscribers: subscribing through the API (double opt-in).

The answer is the same whatever the address, byte for byte: it is built from what the caller
sent, never from what is stored (see web/subscriber.py for the pages that share the wording).
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED

from ..domain import subscriptions
from .subscriber import ACCEPTED


class SubscriberApi(Controller):
    path = "/api/v1/subscribers"
    tags = ["subscribers"]

    @post("/", status_code=HTTP_202_ACCEPTED, summary="Subscribe (double opt-in); same answer for any address")
    async def subscribe(self, data: JSONBody[Any] = None) -> Response:
        email, name, topics = subscriptions.clean_request(data)
        ids = await subscriptions.topic_ids(topics)  # an unknown topic is the caller's mistake: say so
        await subscriptions.subscribe(email, name, ids, source="api")
        body = {"email": email, "name": name, "topics": list(ids), "detail": ACCEPTED}
        return Response(body, status_code=HTTP_202_ACCEPTED)
