"""The polled delivery figures of a large sending mailing are renewed no more often than
LIVE_COST_FACTOR times what the last count took (at least LIVE_MAX_AGE): a count of a
1,000,000-row ledger on a busy machine takes long enough that one every 2.5 s held up the page's
own statements. The figures stay those of one count, with its time."""

from __future__ import annotations

from datetime import timedelta

from bulletin.test_large_release import _clear, _new_mailing, _people, _set_states
from events_app.clock import now
from events_app.domain import mailings


async def test_a_count_that_took_long_is_renewed_after_its_cost_not_after_the_max_age(monkeypatch):
    monkeypatch.setattr(mailings, "LIVE_SHARED_FROM", 0)
    monkeypatch.setattr(mailings, "LIVE_MAX_AGE", 0.0)
    await _clear()
    mailings._recent.clear()
    moment = now() - timedelta(seconds=5)
    await _people(["in"] * 8, moment)
    mailing = await _new_mailing(moment)
    await mailings.tick()
    first = await mailings.delivery_live(mailing["id"])  # the first request counts
    (entry,) = [e for k, e in mailings._recent.items() if k[0] == mailing["id"]]
    assert entry.counting is None and entry.cost >= 0
    entry.cost = 3600.0  # as if that count had taken an hour
    await _set_states(mailing["id"], ["sent", "sent", "failed"])
    again = await mailings.delivery_live(mailing["id"])
    assert entry.counting is None  # no new count: the last one's cost has not passed
    assert again["as_of"] == first["as_of"]
    assert {k: again[k] for k in mailings.STATES} == {k: first[k] for k in mailings.STATES}
    # An explicit max age still rules, and the next figures are a fresh, exact count.
    await mailings.delivery_live(mailing["id"], max_age=0)
    if entry.counting is not None:
        await entry.counting
    fresh = await mailings.delivery_live(mailing["id"], max_age=3600)
    direct = await mailings.delivery(mailing["id"])
    assert {k: fresh[k] for k in direct} == direct
    assert fresh["sent"] == 2 and fresh["failed"] == 1 and fresh["total"] == 8


async def test_the_caller_s_mailing_row_is_used_for_the_state(monkeypatch):
    await _clear()
    mailings._recent.clear()
    moment = now() - timedelta(seconds=5)
    await _people(["in"] * 3, moment)
    mailing = await _new_mailing(moment)
    await mailings.tick()
    row = await mailings.get(mailing["id"])
    live = await mailings.delivery_live(mailing["id"], mailing=row)
    assert live["status"] == "sending" and live["total"] == 3 and live["queued"] == 3
