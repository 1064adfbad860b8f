"""Uploaded pictures, served from the database by any process (domain/images.py stores them).

`GET /media/<digest>.<ext>`: the name is the SHA-256 of the bytes, so an answer never changes:
`Cache-Control: public, max-age=31536000, immutable`, a strong ETag (the digest) and 304 for a
matching If-None-Match. An unknown name, or a known digest with the wrong extension, is 404.
HEAD is answered by the edge (web/edge.py) as GET without a body.

`/favicon.svg` (and `/favicon.ico`, which browsers ask for by themselves: the same picture, so
they stop meeting a 404) draws the organisation's initial on its accent colour.
"""

from __future__ import annotations

import hashlib
from html import escape

from litestar import Request, Response, get
from litestar.params import FromPath

from ..domain import identity, images
from ..domain.errors import NotFound

FOREVER = "public, max-age=31536000, immutable"


@get("/media/{name:str}", include_in_schema=False)
async def media(request: Request, name: FromPath[str]) -> Response:
    digest = images.digest_of(f"/media/{name}")
    found = await images.fetch(digest) if digest else None
    if digest is None or found is None or images.EXTENSIONS.get(found[0]) != name.rsplit(".", 1)[-1]:
        raise NotFound("No such picture")
    content_type, data = found
    tag = f'"{digest}"'
    headers = {"ETag": tag, "Cache-Control": FOREVER}
    wanted = request.headers.get("if-none-match", "")
    if wanted and any(t.strip().removeprefix("W/") in (tag, "*") for t in wanted.split(",")):
        return Response(b"", status_code=304, headers=headers)
    headers["X-Content-Type-Options"] = "nosniff"
    return Response(data, media_type=content_type, headers=headers)


def favicon_svg(org: identity.Identity) -> bytes:
    """A rounded square in the accent colour with the organisation's initial in white (the
    colour is AA-dark for white text, domain/identity.py)."""
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">'
        f'<rect width="64" height="64" rx="14" fill="{escape(org.accent_colour)}"/>'
        '<text x="32" y="45" text-anchor="middle" font-family="system-ui,-apple-system,Segoe UI,Roboto,sans-serif" '
        f'font-size="38" font-weight="700" fill="#fff">{escape(org.initial)}</text></svg>'
    ).encode()


# The page links /favicon.svg?v=<identity version>, so a change is fetched anew; a day's
# caching spares the requests in between (and for /favicon.ico, which browsers ask for alone).
FAVICON_CACHE = "public, max-age=86400"


@get(["/favicon.svg", "/favicon.ico"], include_in_schema=False)
async def favicon(request: Request) -> Response:
    org = identity.snapshot()
    body = favicon_svg(org)
    tag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": tag, "Cache-Control": FAVICON_CACHE}
    wanted = request.headers.get("if-none-match", "")
    if wanted and any(t.strip().removeprefix("W/") in (tag, "*") for t in wanted.split(",")):
        return Response(b"", status_code=304, headers=headers)
    return Response(body, media_type="image/svg+xml", headers=headers)


MEDIA_HANDLERS = [media, favicon]
