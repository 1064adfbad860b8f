"""Where the non-Python parts live: `templates/` and `emails/` sit inside the package in an
installed wheel (pyproject force-includes them there) and beside it in a checkout."""

from __future__ import annotations

from functools import cache
from pathlib import Path


def find(name: str, package_dir: Path) -> Path:
    """`package_dir/name` when it exists (installed), else `package_dir/../name` (checkout)."""
    for candidate in (package_dir / name, package_dir.parent / name):
        if candidate.is_dir():
            return candidate
    raise RuntimeError(f"the {name}/ folder is missing from the installation")


@cache
def resource_dir(name: str) -> Path:
    return find(name, Path(__file__).resolve().parent)
