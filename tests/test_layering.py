"""The layers import in one direction (tables -> domain -> web, mail, cli), read from the source.

- `events_app/web/` runs no queries: it imports neither `events_app.db` nor the Table classes of
  `events_app.tables` (its constants, such as MAX_ID, are fine), and holds no SQL text. Data
  comes from domain functions.
- `events_app/domain/` imports nothing from `events_app.web` and nothing from Litestar.
- `events_app/mail/` uses the domain through its public functions only: no `_private` name from
  a domain module, and no domain constant holding SQL.
- `events_app/tables.py` imports nothing from the app.

Every offence is reported as `path:line: what`, all at once. The checks read the syntax tree
(`ast`), so imports inside functions count too, and so does `importlib.import_module("...")`.
SQL text is recognised by upper-case statement shapes (SELECT ... FROM, INSERT INTO, UPDATE x
SET, DELETE FROM, WITH x AS (...)) in string constants other than docstrings, so prose that
says "select the events from the list" does not count.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "events_app"

# Upper case on purpose: the code writes SQL keywords in capitals, English does not.
SQL_SHAPES = re.compile(
    r"\bSELECT\b[\s\S]*?\bFROM\b"
    r"|\bINSERT\s+INTO\b"
    r"|\bUPDATE\s+[a-z_][a-z0-9_]*\s+SET\b"
    r"|\bDELETE\s+FROM\b"
    r"|\bWITH\s+[a-z_][a-z0-9_]*\s+AS\s*\("
)


@dataclass(frozen=True)
class Import:
    line: int
    module: str  # absolute, e.g. events_app.domain.outbox
    name: str | None  # the name taken from it (`from module import name`), None for `import module`

    def targets(self) -> list[str]:
        """What this import may denote: the module, and module.name (a submodule or a name)."""
        return [self.module] if self.name is None else [self.module, f"{self.module}.{self.name}"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(tree: ast.AST, modname: str, is_package: bool) -> list[Import]:
    """Every import in the tree as absolute module names (relative ones resolved)."""
    package = modname if is_package else modname.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found += [Import(node.lineno, module, alias.name) for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and (
                getattr(node.func, "attr", None) == "import_module" or getattr(node.func, "id", None) == "import_module"
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and not node.args[0].value.startswith(".")
        ):
            found.append(Import(node.lineno, node.args[0].value, None))
    return found


def within(target: str, module: str) -> bool:
    return target == module or target.startswith(module + ".")


def docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def string_texts(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every string constant and f-string (holes shown as {}) but docstrings."""
    skip = docstring_nodes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in node.values)
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            out.append((node.lineno, text))
    return out


def holds_sql(text: str) -> str | None:
    found = SQL_SHAPES.search(text)
    return found.group(0)[:40] if found else None


class Source:
    def __init__(self, path: Path, text: str | None = None, modname: str | None = None) -> None:
        self.path = path
        self.rel = path.relative_to(ROOT).as_posix() if path.is_absolute() else str(path)
        self.tree = ast.parse(text if text is not None else path.read_text(), str(path))
        self.modname = modname or module_name(path)
        self.imports = imports(self.tree, self.modname, path.name == "__init__.py")

    def at(self, line: int, what: str) -> str:
        return f"{self.rel}:{line}: {what}"


def sources(folder: str) -> list[Source]:
    return [Source(p) for p in sorted((APP / folder).rglob("*.py"))]


def table_classes() -> set[str]:
    tree = ast.parse((APP / "tables.py").read_text())
    return {n.name for n in tree.body if isinstance(n, ast.ClassDef)} | {"ALL_TABLES"}


# -- the rules, each giving offences as "path:line: what" ---------------------------------------


def web_offences(src: Source, tables: set[str]) -> list[str]:
    out = []
    for imp in src.imports:
        if any(within(t, "events_app.db") for t in imp.targets()):
            out.append(src.at(imp.line, f"imports events_app.db ({imp.module}{'.' + imp.name if imp.name else ''})"))
        elif imp.module == "events_app.tables" and imp.name in tables:
            out.append(src.at(imp.line, f"imports the table {imp.name} from events_app.tables"))
        elif imp.module == "events_app" and imp.name == "tables":
            out.append(src.at(imp.line, "imports events_app.tables as a module (take the constants by name)"))
    for line, text in string_texts(src.tree):
        if shape := holds_sql(text):
            out.append(src.at(line, f"holds SQL text {shape!r}..."))
    return out


def domain_offences(src: Source) -> list[str]:
    out = []
    for imp in src.imports:
        if any(within(t, "events_app.web") for t in imp.targets()):
            out.append(src.at(imp.line, f"imports the web layer ({imp.module}{'.' + (imp.name or '')})"))
        if within(imp.module, "litestar"):
            out.append(src.at(imp.line, f"imports Litestar ({imp.module})"))
    return out


def domain_sql_constants() -> dict[str, set[str]]:
    """{domain module: names of its module-level constants that hold SQL}."""
    found: dict[str, set[str]] = {}
    for src in sources("domain"):
        names = set()
        for node in src.tree.body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if not isinstance(target, ast.Name):
                        continue
                    value = node.value
                    text = value.value if isinstance(value, ast.Constant) and isinstance(value.value, str) else None
                    if target.id.endswith("_SQL") or (text is not None and holds_sql(text)):
                        names.add(target.id)
        found[src.modname] = names
    return found


def mail_offences(src: Source, sql_constants: dict[str, set[str]]) -> list[str]:
    out = []
    bound: dict[str, str] = {}  # local name -> domain module it is bound to
    for imp in src.imports:
        if not within(imp.module, "events_app.domain"):
            continue
        full = f"{imp.module}.{imp.name}" if imp.name else imp.module
        if full in sql_constants:  # `from ..domain import outbox`: a module
            bound[imp.name or full] = full
        elif imp.name is not None:  # `from ..domain.outbox import name`
            if imp.name.startswith("_"):
                out.append(src.at(imp.line, f"imports the private {imp.name} from {imp.module}"))
            elif imp.name in sql_constants.get(imp.module, set()):
                out.append(src.at(imp.line, f"imports the SQL constant {imp.name} from {imp.module}"))
    for node in ast.walk(src.tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound:
            module = bound[node.value.id]
            if node.attr.startswith("_"):
                out.append(src.at(node.lineno, f"uses the private {module}.{node.attr}"))
            elif node.attr in sql_constants.get(module, set()):
                out.append(src.at(node.lineno, f"uses the SQL constant {module}.{node.attr}"))
    return out


def tables_offences(src: Source) -> list[str]:
    return [
        src.at(imp.line, f"imports from the app ({imp.module})")
        for imp in src.imports
        if within(imp.module, "events_app")
    ]


def report(offences: list[str]) -> str:
    return f"{len(offences)} offence(s):\n" + "\n".join(offences)


# -- the tests on the code ----------------------------------------------------------------------


def test_web_runs_no_queries_of_its_own():
    tables = table_classes()
    offences = [o for src in sources("web") for o in web_offences(src, tables)]
    assert not offences, report(offences)


def test_domain_does_not_know_the_web():
    offences = [o for src in sources("domain") for o in domain_offences(src)]
    assert not offences, report(offences)


def test_mail_uses_the_domain_through_its_public_functions():
    constants = domain_sql_constants()
    offences = [o for src in sources("mail") for o in mail_offences(src, constants)]
    assert not offences, report(offences)


def test_tables_import_nothing_from_the_app():
    offences = tables_offences(Source(APP / "tables.py"))
    assert not offences, report(offences)


# -- the checks catch what they are for ---------------------------------------------------------


def fake(code: str, modname: str) -> Source:
    path = APP.joinpath(*modname.split(".")[1:]).with_suffix(".py")
    return Source(path, code, modname)


@pytest.mark.parametrize(
    "modname, code",
    [
        ("events_app.web.page", "from .. import db"),
        ("events_app.web.page", "from .. import clock, db"),
        ("events_app.web.page", "from ..db import fetch"),
        ("events_app.web.staff.page", "from ... import clock, db"),
        ("events_app.web.staff.page", "from ...db import fetch"),
        ("events_app.web.page", "import events_app.db"),
        ("events_app.web.page", "import events_app.db as database"),
        ("events_app.web.page", "from events_app import db"),
        ("events_app.web.page", "def f():\n    from ..db import fetch"),
        ("events_app.web.page", "import importlib\nimportlib.import_module('events_app.db')"),
        ("events_app.web.page", "from ..tables import Registration"),
        ("events_app.web.page", "Q = 'SELECT id FROM event WHERE slug = {}'"),
        ("events_app.web.page", "Q = ('UPDATE event SET taken = taken + 1 '\n     'WHERE id = {}')"),
        ("events_app.web.page", "def f(t):\n    return f'DELETE FROM {t}'"),
        ("events_app.web.page", "Q = 'INSERT INTO outbox (kind) VALUES ({})'"),
        ("events_app.web.page", "Q = 'WITH x AS (SELECT 1) SELECT * FROM x'"),
    ],
)
def test_the_web_check_finds(modname, code):
    src = fake(code, modname)
    offences = web_offences(src, table_classes())
    assert offences and all(o.startswith(src.rel + ":") for o in offences), offences


@pytest.mark.parametrize(
    "code",
    [
        '"""Select the events from the list, update the page, delete from the cache."""',
        'def f():\n    """Runs SELECT ... FROM event: a docstring may say so."""',
        "from ..tables import MAX_ID",
        "from ..domain import events",
        "from ..domain.errors import NotFound",
        "MESSAGE = 'Select a topic from the list'",
        "MESSAGE = 'Please update your settings'",
    ],
)
def test_the_web_check_lets_through(code):
    assert web_offences(fake(code, "events_app.web.page"), table_classes()) == []


def test_the_web_check_names_file_and_line():
    src = fake("import os\n\n\nfrom .. import db\n", "events_app.web.page")
    assert web_offences(src, table_classes()) == ["events_app/web/page.py:4: imports events_app.db (events_app.db)"]


@pytest.mark.parametrize(
    "code",
    [
        "from ..web import present",
        "from ..web.staff.chart import buckets",
        "import events_app.web.api",
        "import litestar",
    ],
)
def test_the_domain_check_finds(code):
    assert domain_offences(fake(code, "events_app.domain.thing"))


@pytest.mark.parametrize(
    "code, offending",
    [
        ("from ..domain.outbox import _claim", True),
        ("from ..domain import outbox\noutbox._claim(1)", True),
        ("from ..domain.registrations import INSERT_SQL", True),
        ("from ..domain import registrations\nq = registrations.INSERT_SQL", True),
        ("from ..domain import outbox\noutbox.claim(1, 2)", False),
        ("from ..domain.errors import NotFound", False),
    ],
)
def test_the_mail_check(code, offending):
    constants = {
        "events_app.domain.outbox": set(),
        "events_app.domain.errors": set(),
        "events_app.domain.registrations": {"INSERT_SQL"},
    }
    assert bool(mail_offences(fake(code, "events_app.mail.thing"), constants)) is offending


@pytest.mark.parametrize("code", ["from . import settings", "from events_app.clock import now", "import events_app"])
def test_the_tables_check_finds(code):
    assert tables_offences(fake(code, "events_app.tables"))
