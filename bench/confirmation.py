"""Confirmation build cost, side by side with its baseline in one run (issue 15, must-show 1).

For N registrations of one event (a fresh SQLite database), per message:

- bare: a Jinja render of the same three templates (subject, text, HTML) with the same context
  (the person's name and link tokens made per message; the rest of the context made once), no
  CSS inlining, no MIME, no invite: the definition bench/release.py uses for bulk mail;
- fast: mail/transactional.py `build` with the batch's rows read beforehand (`Batch.load`, as the
  worker does once per claimed batch): the plan, the shared parts from the cache (rendered once
  per run and counted in), the personal values, the invite's personal lines, the MIME bytes;
- reference: today's builder (`messages.build_reference`, the `email` package around a fresh
  render, CSS inlining and icalendar) as the worker sent it before, to the bytes, for context.

Target: fast <= 1.3x bare. Also reported: the batch read per row, and the same for waitlist
notices (every one with its own place on the list). Correctness: every fast message parses
as the reference's does (tests/mail/test_fast_messages.py checks this thoroughly; here a sample).

    .venv/bin/python bench/confirmation.py                # ~30 s
    .venv/bin/python bench/confirmation.py --count 500 --rounds 3 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from datetime import time as day_time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from rows import emit, row  # noqa: E402

PY = sys.executable


def setup_env(folder: str) -> None:
    os.environ.update(
        {
            "EVENTS_VAR_DIR": folder,
            "EVENTS_DATABASE_URL": f"sqlite:///{folder}/bench.sqlite3",
            "EVENTS_SECRET_KEY": "bench-secret-key-0123456789",
            "EVENTS_LOG_LEVEL": "warning",
            "EVENTS_BASE_URL": "https://events.example.org",
            "EVENTS_MAIL_FROM": "Implementation Centre <events@example.org>",
            "EVENTS_RATE_LIMITS": "off",
        }
    )
    from events_app import db, settings

    settings.reset()
    db.reset()


async def prepare(count: int, capacity: int | None) -> tuple[dict, list[dict]]:
    """A published webinar and `count` registrations (registered up to `capacity`, then
    waitlisted); their confirmation rows."""
    from events_app import db
    from events_app.domain import events, registrations

    day = datetime.now().date() + timedelta(days=60)
    event = await events.create(
        {
            "title": "Non-Academic Careers with Impact: Implementation Positions You Never Knew Existed",
            "summary": "Meet people who turned their research training into implementation careers.",
            "audience": "Graduate students, recent graduates and professionals",
            "starts_at": datetime.combine(day, day_time(12, 0)).isoformat(),
            "ends_at": datetime.combine(day, day_time(13, 0)).isoformat(),
            "timezone": "America/Toronto",
            "capacity": capacity,
            "join_url": "https://meet.example.com/secret-room",
        }
    )
    event = await events.publish(event["id"])
    for n in range(count):
        await registrations.register(
            await events.get(event["id"]), {"name": f"Reader Number {n}", "email": f"reader{n}@example.org"}
        )
    rows = await db.fetch("SELECT * FROM outbox WHERE kind = 'registration_confirmed' ORDER BY id")
    return await events.get(event["id"]), rows


async def measure(rows: list[dict], rounds: int) -> dict:
    from email import policy
    from email.parser import BytesParser

    from events_app import settings
    from events_app.domain import registrations
    from events_app.mail import delivery, headers, messages, render, transactional

    cfg = settings.get()
    batch = await transactional.Batch.load(rows)
    env = render.environment()

    # The bare baseline's inputs: the same context the templates get (brand, name, links...).
    plans = []
    for r in rows:
        payload = messages.parse_payload(r)
        registration = batch.registrations[payload["registration_id"]]
        event = batch.events[registration["event"]]
        template, method, extra = messages._plan(r["kind"], payload, registration, event)
        plans.append((template, method, extra, registration, event))
    templates = {
        t: [env.get_template(f"{t}/{p}") for p in ("subject.txt", "body.txt", "body.html")]
        for t in {p[0] for p in plans}
    }

    # What does not depend on the person (the time range, the brand, the event) is computed
    # once, outside the timing: the baseline is only the per-person context and the render.
    shared = {}
    for template, method, extra, registration, event in plans:
        key = (template, registration["event"])
        if key not in shared:
            context = messages.registration_context(
                template, method, extra, event, cfg, name="", status="", manage_token="", join_token=""
            )
            shared[key] = {**context, "brand": render.brand()}
    base = cfg.base_url.rstrip("/")

    def bare() -> float:
        start = time.perf_counter()
        for template, _method, _extra, registration, _event in plans:
            context = dict(shared[(template, registration["event"])])
            manage = f"{base}/r/{registrations.personal_token(registration)}"
            context["links"] = {
                **context["links"],
                "manage": manage,
                "join": f"{base}/j/{registrations.join_token(registration)}",
                "ics": manage + ".ics",
            }
            context["name"] = registration["name"]
            context["status"] = registration["status"]
            if template == "registration_waitlisted":
                context["position"] = batch.positions[registration["id"]]
            subject, text, html = templates[template]
            context["subject"] = subject.render(context)
            text.render(context)
            html.render(context)
        return (time.perf_counter() - start) / len(rows) * 1e6

    async def fast() -> float:
        transactional.forget()  # the shared parts are rendered in the round, counted in
        start = time.perf_counter()
        for r in rows:
            await transactional.build(r, cfg, batch)
        return (time.perf_counter() - start) / len(rows) * 1e6

    async def reference(limit: int) -> float:
        start = time.perf_counter()
        for r in rows[:limit]:
            message = await messages.build_reference(r, cfg)
            delivery._requote(message)
            message.as_bytes(policy=headers.MAIL_POLICY)
        return (time.perf_counter() - start) / limit * 1e6

    async def load() -> float:
        start = time.perf_counter()
        for n in range(0, len(rows), 50):  # the worker's batch size
            await transactional.Batch.load(rows[n : n + 50])
        return (time.perf_counter() - start) / len(rows) * 1e6

    bare()
    await fast()  # warm up
    b, f, ld = [], [], []
    fast_before = transactional.stats["fast"]
    for _ in range(rounds):
        b.append(bare())
        f.append(await fast())
        ld.append(await load())
    used = transactional.stats["fast"] - fast_before
    ref = await reference(min(len(rows), 200))

    # A sample checked: the fast message parses as the reference's (every header but the
    # boundaries, every leaf part's decoded bytes, the invite included), on a frozen clock.
    from events_app import clock

    parser = BytesParser(policy=policy.default)
    ok = used == rounds * len(rows)

    def leaves(message) -> list:
        out = []
        for part in message.walk():
            fields = [(k, str(v)) for k, v in part.items() if k.lower() != "content-type"]
            fields.append(
                ("type", part.get_content_type(), sorted(p for p in part.get_params()[1:] if p[0] != "boundary"))
            )
            out.append((fields, None if part.is_multipart() else part.get_payload(decode=True)))
        return out

    with clock.frozen(clock.now()):
        for r in rows[:: max(1, len(rows) // 20)]:
            message = await messages.build_reference(r, cfg)
            delivery._requote(message)
            one = parser.parsebytes(message.as_bytes(policy=headers.MAIL_POLICY))
            two = parser.parsebytes((await transactional.build(r, cfg, batch)).data)
            ok = ok and leaves(one) == leaves(two)
    return {
        "bare": statistics.median(b),
        "fast": statistics.median(f),
        "load": statistics.median(ld),
        "reference": ref,
        "ok": ok,
    }


async def main_async(args) -> list[dict]:
    from events_app import db

    results = []
    for label, capacity in (("confirmation", None), ("waitlist notice", 0)):
        folder = tempfile.mkdtemp(prefix=f"bench-confirmation-{capacity}-")
        setup_env(folder)
        await asyncio.to_thread(
            subprocess.run, [PY, "-m", "events_app.cli", "migrate"], check=True, env=os.environ, capture_output=True
        )
        await db.start()
        try:
            _, rows = await prepare(args.count, capacity)
            figures = await measure(rows, args.rounds)
        finally:
            await db.stop()
        figures["label"] = label
        results.append(figures)
        print(
            f"{label}: fast {figures['fast']:.1f} us, bare Jinja {figures['bare']:.1f} us "
            f"({figures['fast'] / figures['bare']:.2f}x), reference {figures['reference']:.0f} us, "
            f"batch read {figures['load']:.1f} us/row, checks {'ok' if figures['ok'] else 'FAILED'}",
            file=sys.stderr,
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="registrations (messages) per kind")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the BENCH_ROWS line")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    out = []
    for r in results:
        ratio = r["fast"] / r["bare"]
        target = "<= 1.3x" if r["label"] == "confirmation" else ""
        out.append(
            row(
                f"{r['label']} build per message, assembled from shared parts (us)",
                r["fast"],
                r["bare"],
                "bare Jinja render of the same templates (no inlining, no MIME)",
                target,
                (ratio <= 1.3) if target else None,
                unit="us",
                ok=r["ok"],
                note=f"{args.count} messages, median of {args.rounds} rounds; batch read {r['load']:.1f} us/row",
            )
        )
        out.append(
            row(
                f"{r['label']} build per message, today's builder (us)",
                r["reference"],
                r["bare"],
                "bare Jinja render of the same templates (no inlining, no MIME)",
                "",
                None,
                unit="us",
                ok=r["ok"],
                note="for context: the email package, CSS inlining and icalendar per message",
            )
        )
    if args.json:
        emit(out)
    else:
        print(json.dumps(out, indent=2))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
