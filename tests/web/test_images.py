"""Uploaded pictures (domain/images.py, web/media.py): only real pictures are kept, cleaned of
their metadata and turned the right way up, with a phone-width copy, and served for ever-caching."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from events_app.domain import images
from events_app.domain.errors import ValidationFailed


def picture(fmt: str = "PNG", size: tuple[int, int] = (40, 30), colour=(200, 30, 30), **save) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, fmt, **save)
    return out.getvalue()


def phone_photo() -> bytes:
    """A JPEG 1200x600 as the sensor saw it, with EXIF saying "rotate 90° clockwise to show"
    (orientation 6), a camera make and a GPS position."""
    img = Image.new("RGB", (1200, 600), (10, 120, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x8825] = {1: "N", 2: (45.0, 30.0, 0.0)}  # GPS IFD
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif.tobytes(), quality=90)
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header says width x height (its pixel data is tiny): a decompression bomb's
    shape, refused before a byte is decoded."""
    data = picture("PNG", (1, 1))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    patched = struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
    return data[:8] + patched + data[8 + 25 :]


async def test_a_png_is_kept_and_served_for_ever_with_an_etag_and_304(client):
    url = await images.store(picture("PNG"), field="logo")
    assert url.startswith("/media/") and url.endswith(".png")
    answer = await client.get(url)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/png"
    assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert Image.open(io.BytesIO(answer.content)).size == (40, 30)
    tag = answer.headers["etag"]
    again = await client.get(url, headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b""
    head = await client.head(url)
    assert head.status_code == 200 and head.content == b"" and head.headers["etag"] == tag


async def test_storing_the_same_picture_twice_keeps_one_row_and_one_url():
    first = await images.store(picture("WEBP"), field="cover")
    second = await images.store(picture("WEBP"), field="cover")
    assert first == second and first.endswith(".webp")
    assert await images.variants(first) == [(first, 40)]


async def test_unknown_and_malformed_names_are_404(client):
    url = await images.store(picture("PNG"), field="logo")
    assert (await client.get("/media/" + "0" * 64 + ".png")).status_code == 404
    assert (await client.get(url.replace(".png", ".jpg"))).status_code == 404
    assert (await client.get("/media/../../etc/passwd")).status_code == 404
    assert (await client.get("/media/nothing")).status_code == 404


async def test_a_phone_photo_loses_its_exif_is_turned_upright_and_gets_a_phone_width_copy(client):
    url = await images.store(phone_photo(), field="cover")
    assert url.endswith(".jpg")
    kept = Image.open(io.BytesIO((await client.get(url)).content))
    # Orientation 6 applied: 1200x600 as shot becomes 600x1200 as shown, with no EXIF left.
    assert kept.size == (600, 1200)
    assert not kept.getexif() and "exif" not in kept.info
    wide = await images.store(picture("JPEG", (2000, 1000)), field="cover")
    sizes = await images.variants(wide)
    assert [w for _, w in sizes] == [800, 2000] and sizes[1][0] == wide
    small = await client.get(sizes[0][0])
    assert small.status_code == 200 and Image.open(io.BytesIO(small.content)).size == (800, 400)
    assert small.headers["cache-control"] == "public, max-age=31536000, immutable"


async def test_a_gif_is_kept_as_a_png_with_its_transparency():
    img = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    img.paste((255, 0, 0, 255), (5, 5, 15, 15))
    out = io.BytesIO()
    img.save(out, "GIF")
    url = await images.store(out.getvalue(), field="logo")
    assert url.endswith(".png")
    found = await images.fetch(images.digest_of(url) or "")
    assert found is not None and found[0] == "image/png"
    kept = Image.open(io.BytesIO(found[1]))
    assert kept.mode == "RGBA" and kept.getpixel((0, 0))[3] == 0 and kept.getpixel((10, 10))[3] == 255


def _truncated() -> bytes:
    whole = picture("JPEG", (400, 300), quality=95)
    return whole[: len(whole) // 2]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"%PDF-1.4 not a picture", "JPEG, PNG, WebP or GIF"),
        (b"", "is empty"),
        (picture("BMP"), "JPEG, PNG, WebP or GIF"),
        (png_claiming(60_000, 60_000), "too many pixels"),
        (picture("PNG", (13_000, 2)), "too many pixels"),
        (_truncated(), "damaged or cut short"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "JPEG, PNG, WebP or GIF"),
    ],
    ids=["pdf", "empty", "bmp", "bomb", "too-wide", "truncated", "bad-png"],
)
async def test_what_is_not_an_acceptable_picture_is_refused_naming_the_field(data, words):
    with pytest.raises(ValidationFailed) as refused:
        await images.store(data, field="logo")
    assert list(refused.value.fields) == ["logo"]
    assert words in refused.value.fields["logo"]


async def test_a_file_over_the_size_limit_is_refused_in_megabytes():
    with pytest.raises(ValidationFailed) as refused:
        await images.store(picture("PNG", (300, 300)), field="cover", max_bytes=100)
    assert "too large" in refused.value.fields["cover"] and "MB" in refused.value.fields["cover"]


async def test_variants_of_an_outside_url_are_none():
    assert await images.variants("https://example.org/logo.png") == []
    assert await images.fetch("not-a-digest") is None
