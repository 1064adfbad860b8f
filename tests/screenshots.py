"""The screenshot gallery of the README (`make screenshots`): a real server with its worker on a
throwaway SQLite database holding the demo content and a tour's additions (tests/site_tour.py:
identity, a registration, subscribers, a released issue, a staff member), photographed by
Debian's Chromium, whole pages, at desktop (1280 px) and phone (390 px) widths, into
docs/screenshots/<name>-<width>.png, plus docs/screenshots/README.md, the gallery's table.

    python tests/screenshots.py [--out docs/screenshots] [--chromium /usr/bin/chromium]

Pictures are taken at CSS pixels (scale="css") and saved as 256-colour PNGs, so the gallery
stays small. About a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

# (file name, caption); the order of the gallery.
SHOTS = [
    ("event-list", "Event list"),
    ("event-page", "Event page"),
    ("registration-done", "Registration done (the thank-you page)"),
    ("personal-page", "Personal page (/r/…)"),
    ("subscribe", "Subscribe to the bulletin"),
    ("preferences", "Subscriber preferences (/s/…)"),
    ("issue-page", "An issue in the archive"),
    ("dashboard", "Staff dashboard"),
    ("event-editor", "Event editor"),
    ("registrants", "Registrants"),
    ("issue-editor", "Issue editor with previews"),
    ("delivery", "An issue's delivery"),
]
WIDTHS = {"desktop": (1280, 800), "phone": (390, 844)}


def _environment(var: Path) -> None:
    """Settings for a throwaway installation, before events_app reads them."""
    os.environ.pop("EVENTS_SMTP_URL", None)
    os.environ.update(
        EVENTS_DATABASE_URL=f"sqlite:///{var / 'shots.sqlite3'}",
        EVENTS_VAR_DIR=str(var / "var"),
        EVENTS_SECRET_KEY="screenshots-secret-key-of-enough-length",
        EVENTS_BASE_URL="http://127.0.0.1:8000",
        EVENTS_MAIL_FROM="Events <events@implementation.example.org>",
        EVENTS_RATE_LIMITS="off",
        EVENTS_WORKER_POLL_SECONDS="0.1",
        EVENTS_LOG_LEVEL="warning",
    )


def _small_png(data: bytes) -> bytes:
    """The screenshot as a 256-colour PNG (a fraction of the size; text stays sharp)."""
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    out = io.BytesIO()
    img.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(out, format="PNG", optimize=True)
    return out.getvalue()


async def _prepare():
    from site_tour import build

    from events_app import db
    from events_app.cli import migrate

    await db.start()
    try:
        await migrate(quiet=True)
        return await build()
    finally:
        await db.stop()


async def _photograph(base: str, tour, out: Path, chromium: str) -> list[str]:
    from browserkit import FLAGS
    from playwright.async_api import async_playwright
    from site_tour import register_in_browser, sign_in

    written = []
    paths = {
        "event-list": "/events",
        "event-page": tour.event,
        "personal-page": tour.personal,
        "subscribe": "/bulletin/subscribe",
        "preferences": tour.preferences,
        "issue-page": tour.issue,
        "dashboard": "/staff",
        "event-editor": f"/staff/events/{tour.event_id}",
        "registrants": f"/staff/events/{tour.event_id}/registrants",
        "issue-editor": f"/staff/issues/{tour.issue_id}",
        "delivery": tour.delivery,
    }
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=FLAGS)
        try:
            for n, (width, (w, h)) in enumerate(WIDTHS.items()):
                context = await browser.new_context(
                    viewport={"width": w, "height": h}, is_mobile=width == "phone", has_touch=width == "phone"
                )
                page = await context.new_page()

                async def shot(name: str, path: str | None = None, page=page, w=w) -> None:
                    if path is not None:
                        await page.goto(base + path, wait_until="load")
                    data = await page.screenshot(full_page=True, scale="css", animations="disabled")
                    target = out / f"{name}-{w}.png"
                    target.write_bytes(_small_png(data))
                    written.append(target.name)

                for name in ("event-list", "event-page"):
                    await shot(name, paths[name])
                await register_in_browser(page, base, tour.event, ["Rosalind Franklin", "Marie Curie"][n],
                                          ["rosalind@example.org", "marie@example.org"][n])  # fmt: skip
                await shot("registration-done")
                for name in ("personal-page", "subscribe", "preferences", "issue-page"):
                    await shot(name, paths[name])
                await sign_in(page, base)
                for name in ("dashboard", "event-editor", "registrants", "issue-editor", "delivery"):
                    await shot(name, paths[name])
                await context.close()
        finally:
            await browser.close()
    return written


def _gallery(out: Path) -> None:
    lines = [
        "# Screenshots",
        "",
        "Taken by `make screenshots` (tests/screenshots.py): the demo content on a real server, whole pages,",
        "in Chromium at desktop (1280 px) and phone (390 px) widths.",
        "",
        "| Page | Desktop (1280 px) | Phone (390 px) |",
        "|------|-------------------|----------------|",
    ]
    for name, caption in SHOTS:
        lines.append(f"| {caption} | [{name}-1280.png]({name}-1280.png) | [{name}-390.png]({name}-390.png) |")
    lines += ["", "A few at a glance:", ""]
    for name, caption in SHOTS[:3]:
        lines.append(f'<img src="{name}-390.png" alt="{caption}, on a phone" width="195">')
    (out / "README.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="events-shots-") as tmp:
        _environment(Path(tmp))
        tour = asyncio.run(_prepare())
        from server import running_server

        with running_server(worker=True) as base:
            written = asyncio.run(_photograph(base, tour, out, args.chromium))
    _gallery(out)
    size = sum((out / name).stat().st_size for name in written)
    print(f"{len(written)} screenshots in {out} ({size // 1024} KiB) in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
