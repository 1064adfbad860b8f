"""`make bench`: run every benchmark and print one table of ratios.

    .venv/bin/python bench/run_all.py [--only registration,pages] [--skip rush] [--markdown]

Every bench/*.py whose source mentions the BENCH_ROWS marker (bench/rows.py) is a benchmark:
it is run as `python bench/NAME.py --json`, one after another (never two at once: they measure
the machine), and the rows of its one `BENCH_ROWS [...]` line are collected. Each row carries
its own baseline, measured by that script in the same run. A script that exits non-zero or
prints no rows gets a row saying so, and the others still run.

Prints the machine (nproc, CPU model, Python), then one table: figure, value, baseline, ratio,
target, met. Writes bench/results/all.json and bench/results/table.md (the Markdown table for
the README). Exit status 1 when a script broke or a correctness check failed, else 0 (a missed
target is a finding, not a failure).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import rows as rowfmt  # noqa: E402

HELPERS = {"rows.py", "run_all.py"}
# Run first, in this order; any other benchmark follows in name order.
ORDER = ["registration", "registration_pg", "pages", "rush", "release", "import_subscribers", "abuse"]
TIMEOUT_S = 1800


def benchmarks() -> list[str]:
    found = [p.stem for p in sorted(HERE.glob("*.py"))
             if p.name not in HELPERS and rowfmt.PREFIX.strip() in p.read_text(errors="replace")]
    return [n for n in ORDER if n in found] + [n for n in found if n not in ORDER]


def machine() -> dict:
    model = rowfmt.cpu_model()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"nproc": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "kernel": platform.release(), "commit": commit}


def run(name: str) -> tuple[list[dict], int, float]:
    started = time.monotonic()
    print(f"== bench/{name}.py --json", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run([sys.executable, str(HERE / f"{name}.py"), "--json"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=None, text=True, timeout=TIMEOUT_S)
        out, code = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as exc:
        out, code = exc.stdout or "", -1
        if isinstance(out, bytes):
            out = out.decode(errors="replace")
    elapsed = time.monotonic() - started
    # The script's own report, for the log (the rows line aside): the table below is the summary.
    sys.stderr.write("".join(line + "\n" for line in out.splitlines() if not line.startswith(rowfmt.PREFIX)))
    found = rowfmt.parse(out)
    if not found:
        return [rowfmt.row(f"bench/{name}.py", None, None, "", "", None, ok=False,
                           note=f"no BENCH_ROWS line (exit status {code})")], code, elapsed
    for row in found:
        row.setdefault("script", name)
    return found, code, elapsed


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and abs(value) < 100 and value != int(value):
        text = f"{value:,.2f}"
    else:
        text = f"{value:,.0f}"
    return f"{text} {unit}".strip()


def table(rows: list[dict]) -> list[list[str]]:
    out = []
    for r in rows:
        met = {True: "yes", False: "NO", None: "-"}[r.get("met")]
        if not r.get("ok", True):
            met += " (checks failed)"
        out.append([r["name"], _fmt(r.get("value"), r.get("unit", "")),
                    f"{_fmt(r.get('baseline'), r.get('unit', ''))} ({r.get('baseline_name', '')})" if r.get("baseline") is not None else "-",
                    "-" if r.get("ratio") is None else f"{r['ratio']:.2f}", r.get("target", ""), met, r.get("note", "")])
    return out


HEAD = ["figure", "value", "baseline (same run)", "ratio", "target", "met", "note"]


def plain(cells: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [HEAD, *cells]) for i in range(len(HEAD))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(HEAD, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def markdown(cells: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in cells]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Run every benchmark; one table of ratios.")
    p.add_argument("--only", default="", help="comma list of benchmark names")
    p.add_argument("--skip", default="", help="comma list of benchmark names")
    args = p.parse_args(argv)
    names = benchmarks()
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    skip = {n.strip() for n in args.skip.split(",") if n.strip()}
    names = [n for n in names if (not only or n in only) and n not in skip]
    facts = machine()
    started = datetime.now(timezone.utc)
    all_rows, broken = [], []
    for name in names:
        found, code, elapsed = run(name)
        print(f"   bench/{name}.py: exit {code}, {elapsed:.0f} s, {len(found)} row(s)", file=sys.stderr, flush=True)
        if code != 0:
            broken.append(name)
        all_rows += found
    cells = table(all_rows)
    print(f"\nMachine: nproc {facts['nproc']}, {facts['cpu_model']}, Python {facts['python']}, "
          f"kernel {facts['kernel']}, commit {facts['commit']}; run started {started:%Y-%m-%d %H:%M} UTC")
    print(plain(cells))
    if broken:
        print(f"\nbroken or failed checks: {', '.join(broken)}")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "all.json").write_text(json.dumps({"machine": facts, "started_at": started.isoformat(),
                                                  "rows": all_rows, "broken": broken}, indent=2) + "\n")
    (results / "table.md").write_text(
        f"Machine: nproc {facts['nproc']}, {facts['cpu_model']}, Python {facts['python']}, commit {facts['commit']}\n\n"
        + markdown(cells) + "\n")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
