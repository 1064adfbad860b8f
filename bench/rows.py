"""The machine-readable result format every benchmark prints for bench/run_all.py.

A script run with `--json` prints, besides its own report, exactly one line on stdout:

    BENCH_ROWS [{"name": ..., "value": ..., "baseline": ..., "ratio": ..., "target": ..., "met": ...}, ...]

Each row is one figure of the run, with the baseline measured in the same run (bench/README.md
describes the fields). `row()` builds one and `emit()` prints the line; a script that does not
import this module only needs to print the same line.
"""

from __future__ import annotations

import json
from typing import Any

PREFIX = "BENCH_ROWS "


def row(
    name: str,
    value: float | None,
    baseline: float | None,
    baseline_name: str,
    target: str,
    met: bool | None,
    *,
    unit: str = "",
    ratio: float | None = None,
    ok: bool = True,
    note: str = "",
) -> dict[str, Any]:
    """One figure. `ratio` defaults to value / baseline; `ok` is False when the run's own
    correctness checks failed (then the figure means nothing)."""
    if ratio is None and value is not None and baseline:
        ratio = value / baseline
    return {
        "name": name,
        "value": None if value is None else round(float(value), 3),
        "unit": unit,
        "baseline": None if baseline is None else round(float(baseline), 3),
        "baseline_name": baseline_name,
        "ratio": None if ratio is None else round(float(ratio), 3),
        "target": target,
        "met": met,
        "ok": ok,
        "note": note,
    }


def emit(rows: list[dict[str, Any]]) -> None:
    print(PREFIX + json.dumps(rows), flush=True)


def parse(stdout: str) -> list[dict[str, Any]] | None:
    """The rows of the last BENCH_ROWS line in a script's output, or None."""
    found = None
    for line in stdout.splitlines():
        if line.startswith(PREFIX):
            found = json.loads(line[len(PREFIX):])
    return found


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo ("?" where there is none), for the machine line."""
    from pathlib import Path

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"
