"""Uploaded pictures (event covers, speaker photos, the organisation's logo), kept in the database
(table `image`) so that every process serves them, named by the SHA-256 of their stored bytes.

`store(data, field=...)` accepts JPEG, PNG, WebP and GIF only, checked by decoding with Pillow
(not by the file name or the browser's content type). It refuses files over `max_bytes`, pictures
past MAX_PIXELS or MAX_SIDE (a "decompression bomb": a small file that unpacks to gigabytes) and
files that do not decode to the end (truncated). What is kept is re-encoded from the decoded
pixels: camera metadata (EXIF with its GPS position, comments, ICC profiles) is dropped and the
EXIF orientation applied, so a phone photo shows the right way up without it. A GIF is kept as a
PNG of its first frame (animation is not kept). A picture wider than PHONE_WIDTH also gets a copy
that wide, whose row names the original in `source`; `variants(url)` lists both for `srcset`.

Storing is idempotent: the same bytes give the same digest, and a row already there is kept.
The URL is `/media/<digest>.<ext>`; web/media.py serves it, cacheable for ever.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image, ImageOps

from .. import clock, db
from .errors import ValidationFailed

PHONE_WIDTH = 800
MAX_PIXELS = 40_000_000  # 40 megapixels: more than any camera a phone carries
MAX_SIDE = 12_000
ACCEPTED = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WEBP", "GIF": "PNG"}  # what comes in -> what is kept
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
URL = re.compile(r"^/media/([0-9a-f]{64})\.(jpg|png|webp)$")

INSERT_SQL = (
    "INSERT INTO image (digest, source, content_type, width, height, data, created_at) "
    "VALUES ({}, {}, {}, {}, {}, {}, {}) ON CONFLICT (digest) DO NOTHING"
)
FETCH_SQL = "SELECT content_type, data FROM image WHERE digest = {}"
VARIANTS_SQL = "SELECT digest, content_type, width FROM image WHERE digest = {} OR source = {} ORDER BY width"


@dataclass(frozen=True)
class Encoded:
    digest: str
    content_type: str
    width: int
    height: int
    data: bytes

    @property
    def url(self) -> str:
        return f"/media/{self.digest}.{EXTENSIONS[self.content_type]}"


def _megabytes(n: int) -> str:
    return f"{n / 1_000_000:g} MB"


def _encode(picture: Image.Image, kept: str) -> Encoded:
    out = io.BytesIO()
    if kept == "JPEG":
        picture.save(out, "JPEG", quality=85, optimize=True, progressive=True)
    elif kept == "WEBP":
        picture.save(out, "WEBP", quality=85, method=4)
    else:
        picture.save(out, "PNG", optimize=True)
    data = out.getvalue()
    return Encoded(hashlib.sha256(data).hexdigest(), CONTENT_TYPES[kept], picture.width, picture.height, data)


def prepare(data: bytes, *, field: str, max_bytes: int = 5_000_000) -> list[Encoded]:
    """Check and re-encode `data` (CPU work, no database): the original first, then the phone
    copy when the picture is wider than PHONE_WIDTH. Raises ValidationFailed naming `field`."""
    not_a_picture = "must be a picture in JPEG, PNG, WebP or GIF format; this file is not one of those."
    if not data:
        raise ValidationFailed({field: "is empty: choose a picture file (JPEG, PNG, WebP or GIF)."})
    if len(data) > max_bytes:
        raise ValidationFailed(
            {field: f"is too large ({_megabytes(len(data))}); choose a picture of at most {_megabytes(max_bytes)}."}
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as probe:
                fmt = probe.format or ""
                width, height = probe.size
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ValidationFailed({field: _too_many_pixels()}) from None
        except Exception:
            raise ValidationFailed({field: not_a_picture}) from None
        if fmt not in ACCEPTED:
            raise ValidationFailed({field: not_a_picture})
        if width < 1 or height < 1:
            raise ValidationFailed({field: not_a_picture})
        if width * height > MAX_PIXELS or width > MAX_SIDE or height > MAX_SIDE:
            raise ValidationFailed({field: _too_many_pixels()})
        try:
            with Image.open(io.BytesIO(data)) as source:
                source.load()  # decodes every byte: a truncated file fails here
                picture = ImageOps.exif_transpose(source) or source.copy()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ValidationFailed({field: _too_many_pixels()}) from None
        except Exception:
            raise ValidationFailed(
                {field: "could not be read to the end (the file looks damaged or cut short); please choose it again."}
            ) from None
    kept = ACCEPTED[fmt]
    picture = _plain(picture, kept)
    found = [_encode(picture, kept)]
    if picture.width > PHONE_WIDTH:
        ratio = PHONE_WIDTH / picture.width
        small = picture.resize((PHONE_WIDTH, max(1, round(picture.height * ratio))), Image.Resampling.LANCZOS)
        found.append(_encode(small, kept))
    return found


def _too_many_pixels() -> str:
    return (
        f"has too many pixels; choose a picture of at most {MAX_SIDE:,} pixels a side "
        f"and {MAX_PIXELS // 1_000_000} megapixels."
    )


def _plain(picture: Image.Image, kept: str) -> Image.Image:
    """The pixels only, in a mode the kept format takes: no metadata travels along."""
    has_alpha = picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info)
    if kept == "JPEG":
        mode = "L" if picture.mode in ("L", "1") else "RGB"
    else:
        mode = "RGBA" if has_alpha else ("L" if picture.mode in ("L", "1") else "RGB")
    if picture.mode == "P" or picture.mode != mode:
        picture = picture.convert("RGBA" if has_alpha else "RGB").convert(mode)
    clean = Image.new(mode, picture.size)
    clean.paste(picture)
    return clean


async def store(data: bytes, *, field: str, max_bytes: int = 5_000_000) -> str:
    """Check, clean and keep an uploaded picture; answer its URL path (`/media/<digest>.<ext>`).
    Raises ValidationFailed({field: reason}) for anything that is not an acceptable picture."""
    found = await asyncio.to_thread(prepare, data, field=field, max_bytes=max_bytes)
    original = found[0]
    now = clock.now()

    async def work() -> None:
        for i, item in enumerate(found):
            source = "" if i == 0 else original.digest
            await db.fetch(INSERT_SQL, item.digest, source, item.content_type, item.width, item.height, item.data, now)

    await db.atomic(work)
    return original.url


def digest_of(url: str) -> str | None:
    """The digest in a `/media/<digest>.<ext>` URL (None for any other URL)."""
    match = URL.match(url or "")
    return match.group(1) if match else None


# Pictures are immutable (named by their digest): a small cache of recently served ones saves
# reading their bytes from the database on every request that misses the browser's cache.
_CACHE: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
_CACHE_BYTES = 0
CACHE_LIMIT = 32_000_000


def _remember(digest: str, found: tuple[str, bytes]) -> None:
    global _CACHE_BYTES
    if len(found[1]) > CACHE_LIMIT // 4 or digest in _CACHE:
        return
    _CACHE[digest] = found
    _CACHE_BYTES += len(found[1])
    while _CACHE_BYTES > CACHE_LIMIT and _CACHE:
        _, (_, dropped) = _CACHE.popitem(last=False)
        _CACHE_BYTES -= len(dropped)


async def fetch(digest: str) -> tuple[str, bytes] | None:
    """(content type, bytes) of a stored picture, None when there is none by that digest."""
    if not re.fullmatch(r"[0-9a-f]{64}", digest or ""):
        return None
    cached = _CACHE.get(digest)
    if cached is not None:
        _CACHE.move_to_end(digest)
        return cached
    rows = await db.fetch(FETCH_SQL, digest)
    if not rows:
        return None
    found = (rows[0]["content_type"], bytes(rows[0]["data"]))
    _remember(digest, found)
    return found


async def variants(url: str) -> list[tuple[str, int]]:
    """The stored sizes of the picture at `url` as (url, width), narrowest first, for `srcset`;
    [] for a URL that is not a stored picture (an external logo URL, say)."""
    digest = digest_of(url)
    if digest is None:
        return []
    rows = await db.fetch(VARIANTS_SQL, digest, digest)
    return [(f"/media/{r['digest']}.{EXTENSIONS.get(r['content_type'], 'bin')}", int(r["width"])) for r in rows]


def forget() -> None:
    """Drop the served-pictures cache (tests that empty the tables)."""
    global _CACHE_BYTES
    _CACHE.clear()
    _CACHE_BYTES = 0
