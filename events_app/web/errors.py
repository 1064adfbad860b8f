"""The one place that turns domain errors (and framework validation errors) into HTTP answers.

API answers are JSON: `{"status_code", "detail", "errors": {field: reason}}` for 400,
`{"status_code", "detail", "reason"}` for 409. Pages get the same status with an HTML page.
Nothing escapes as a 500 with a traceback: a database that cannot be reached just now answers
503 with Retry-After ("try again"), JSON nested too deeply 400 naming the body, and other
unexpected errors are logged and answered with a plain 500 page (tests treat any 500 as a
failure).
"""

from __future__ import annotations

import logging

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.response import Template
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

from ..domain.errors import Conflict, DomainError, NotFound, Unauthorized, ValidationFailed, is_outage
from .schemas import reasons

log = logging.getLogger("events_app.web")


def _wants_json(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/api/") or path == "/health" or "application/json" in request.headers.get("accept", "")


def _answer(request: Request, status: int, body: dict) -> Response:
    if _wants_json(request):
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return Response(body, status_code=status, media_type=MediaType.JSON, headers=headers)
    return Template(
        template_name="error.html",
        context={"status": status, "detail": body.get("detail", ""), "errors": body.get("errors")},
        status_code=status,
    )


def domain_error(request: Request, exc: DomainError) -> Response:
    if isinstance(exc, ValidationFailed):
        return _answer(request, 400, {"status_code": 400, "detail": "Invalid input", "errors": exc.fields})
    if isinstance(exc, NotFound):
        return _answer(request, 404, {"status_code": 404, "detail": exc.message})
    if isinstance(exc, Conflict):
        return _answer(request, 409, {"status_code": 409, "detail": exc.message, "reason": exc.reason})
    if isinstance(exc, Unauthorized):
        return _answer(request, 401, {"status_code": 401, "detail": exc.message})
    return _answer(request, 400, {"status_code": 400, "detail": exc.message})


def validation_error(request: Request, exc: ValidationException) -> Response:
    """The framework refused a parameter or a body's shape (web/schemas.py): each field named by
    its JSON path, with a readable reason ("Expected `str`, got `int`" at `$.title` becomes
    {"title": "must be a string"})."""
    errors: dict[str, str] = {}
    for item in exc.extra or []:
        if isinstance(item, dict):
            key = str(item.get("key") or "")
            if not key and item.get("source") != "body":
                key = str(item.get("source") or "")
            field, reason = reasons(str(item.get("message", "is invalid")), key)
            errors[field] = reason
    if not errors:
        errors["body"] = exc.detail or "is invalid"
    return _answer(request, 400, {"status_code": 400, "detail": "Invalid input", "errors": errors})


def http_error(request: Request, exc: HTTPException) -> Response:
    body: dict = {"status_code": exc.status_code, "detail": exc.detail}
    if exc.status_code == 400:
        # The framework refused the body itself (not JSON, truncated, bad UTF-8): name it.
        body = {"status_code": 400, "detail": "Invalid input", "errors": {"body": exc.detail or "is invalid"}}
    response = _answer(request, exc.status_code, body)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def not_found(request: Request, exc: NotFoundException) -> Response:
    return _answer(request, 404, {"status_code": 404, "detail": "Not found"})


def too_deep(request: Request, exc: RecursionError) -> Response:
    """JSON nested past what the decoder follows (e.g. 50,000 '['): the body is at fault."""
    return _answer(
        request, 400, {"status_code": 400, "detail": "Invalid input", "errors": {"body": "is nested too deeply"}}
    )


# Seconds a client should wait before trying again while the database is away (a restart takes
# a few seconds). The answer is 503, never a 500: each unit of work is one transaction, so the
# request either took effect whole (its answer was lost) or not at all.
RETRY_AFTER_SECONDS = 5


def unavailable(request: Request, exc: Exception) -> Response:
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    response = _answer(
        request,
        503,
        {
            "status_code": 503,
            "detail": "The service is briefly unavailable and could not finish this request. "
            "Please try again in a few seconds.",
        },
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def unexpected(request: Request, exc: Exception) -> Response:
    if is_outage(exc):
        return unavailable(request, exc)
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _answer(
        request,
        HTTP_500_INTERNAL_SERVER_ERROR,
        {"status_code": 500, "detail": "Something went wrong on our side. Please try again."},
    )


HANDLERS: ExceptionHandlersMap = {
    RecursionError: too_deep,
    DomainError: domain_error,
    ValidationException: validation_error,
    NotFoundException: not_found,
    HTTPException: http_error,
    Exception: unexpected,
}
