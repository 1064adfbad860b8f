"""The automatic pause of bulk mail.

A run of temporary failures of bulk rows means the server is struggling (or throttling us): rather
than hammer it and burn every row's attempts, every mailing that is sending pauses for a while
(domain/mailings.py `pause_all_sending`), while transactional mail goes on. `PausePolicy` counts
those failures in a row (a bulk row sent starts the count afresh), pauses after
`bulk_pause_after` of them for `bulk_pause_minutes`, and remembers which mailings it paused during
the current batch: their rows already claimed are handed back untried (`holds`).
"""

from __future__ import annotations

import logging

from ..domain import mailings
from ..settings import Settings

log = logging.getLogger(__name__)


class PausePolicy:
    """One worker's count of temporary bulk failures in a row, and the mailings it paused."""

    def __init__(self, settings: Settings) -> None:
        self.after = settings.bulk_pause_after
        self.minutes = settings.bulk_pause_minutes
        self.failures_in_a_row = 0
        self.paused: set[int] = set()  # mailings paused during the current batch

    def new_batch(self) -> None:
        """A new batch is claimed only from mailings that are sending: forget the paused ones."""
        self.paused = set()

    def holds(self, row: dict) -> bool:
        """Whether `row` belongs to a mailing this batch's failures paused (hand it back untried)."""
        return row.get("mailing") is not None and row["mailing"] in self.paused

    def sent(self) -> None:
        """A bulk row was handed over: the server is taking mail again."""
        self.failures_in_a_row = 0

    async def failed(self, error: str) -> None:
        """A bulk row was deferred with `error`; at the limit, pause every sending mailing."""
        self.failures_in_a_row += 1
        if self.failures_in_a_row < self.after:
            return
        self.failures_in_a_row = 0
        paused = await mailings.pause_all_sending(
            self.minutes,
            f"paused automatically after {self.after} temporary failures in a row (last: {error[:200]})",
        )
        self.paused.update(paused)
        if paused:
            log.warning("bulk mail paused for %s minutes: mailings %s", self.minutes, paused)
