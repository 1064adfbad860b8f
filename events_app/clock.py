"""The one clock: every "now" in the application is `now()`, an aware UTC time.

Tests move time with `frozen(moment)` (or `use(source)` for a moving clock) instead of patching a
module's own helper; modules import `now` from here and define no clock of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime

Source = Callable[[], datetime]


def _system() -> datetime:
    return datetime.now(UTC)


_source: Source = _system


def now() -> datetime:
    """The current time, aware, in UTC."""
    return _source()


def today() -> date:
    """Today's date in UTC (people's own dates are computed in their zones by the callers)."""
    return now().date()


@contextmanager
def use(source: Source) -> Iterator[None]:
    """Within the block, `now()` is `source()` for every caller in this process."""
    global _source
    previous, _source = _source, source
    try:
        yield
    finally:
        _source = previous


@contextmanager
def frozen(moment: datetime) -> Iterator[None]:
    """Within the block, `now()` is `moment` (which must be aware)."""
    if moment.tzinfo is None:
        raise ValueError("the clock holds aware times only")
    with use(lambda: moment):
        yield
