"""Uploaded pictures, served from the database by any process (domain/images.py stores them).

`GET /media/<digest>.<ext>`: the name is the SHA-256 of the bytes, so an answer never changes:
`Cache-Control: public, max-age=31536000, immutable`, a strong ETag (the digest) and 304 for a
matching If-None-Match. An unknown name, or a known digest with the wrong extension, is 404.
HEAD is answered by the edge (web/edge.py) as GET without a body.
"""

from __future__ import annotations

from litestar import Request, Response, get
from litestar.params import FromPath

from ..domain import images
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


MEDIA_HANDLERS = [media]
