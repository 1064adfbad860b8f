"""Every SQL statement the code holds is checked against the migrated schema of the engine this
run uses (the suite runs once on SQLite and once on PostgreSQL), without changing any data.

Found by reading the source (`ast`) of events_app/ (migrations aside): string constants and
f-strings that start like a statement (SELECT, INSERT INTO, UPDATE x SET, DELETE FROM, WITH x AS
(...)), and every module-level constant named `..._SQL` (which must hold a whole statement).
An f-string's holes are filled where the test can know them: module constants (`LIFT_BOUNCE`),
local names set from constants or from `... if db.is_postgres() else ...`, and calls of plain
functions with constant arguments (`suppressed_sql("s")`). A hole it cannot know becomes `TRUE`
where a condition goes (`WHERE {where}`) and a `{}` placeholder elsewhere; such a statement is
"approximate": a missing column or table still fails it, other errors skip it (with the reason).

Each statement is checked the way it would run, `{}` compiled as events_app/db.py does: on
SQLite `EXPLAIN <statement>` with every placeholder bound to NULL (compiles, runs nothing); on
PostgreSQL the statement is prepared (parsed and analysed, not run). A statement inside `if
db.is_postgres():` (or its `else`), or in a name marked PG, or using syntax only one engine has,
is checked on that engine only. A failure names the file and line of the statement.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from events_app import db

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "events_app"

STATEMENT_START = re.compile(
    r"^\s*(SELECT\s+\S|INSERT\s+(OR\s+\w+\s+)?INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s|WITH\s+\w+\s+AS\s*\()"
)
PG_ONLY = re.compile(
    r"FOR\s+UPDATE|FOR\s+SHARE|SKIP\s+LOCKED|::\s*[a-z]|=\s*ANY\s*\(|\bILIKE\b|\bWITH\s+\w+\s+AS\s*\(\s*(UPDATE|INSERT|DELETE)\b",
    re.I,
)
SQLITE_ONLY = re.compile(r"\bjson_valid\s*\(|\bjson_extract\s*\(|\bINSERT\s+OR\s+\w+|\bjulianday\s*\(", re.I)
TEMPLATE_NAME = re.compile(r"\{[A-Za-z_]\w*\}")  # "{audience}" in a template filled later
UNKNOWN = object()


@dataclass
class Statement:
    path: str  # events_app/domain/outbox.py
    line: int
    modname: str
    parts: list  # str pieces and ast holes
    name: str = ""  # the constant's name, when it is one
    engine: str = ""  # "postgres" | "sqlite" | "" (both), from the code around it
    function: ast.AST | None = None  # the enclosing function, for local names
    constants: dict = field(default_factory=dict)  # the module's NAME = "text" (or number)

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


# -- finding the statements ---------------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_pg_test(test: ast.AST) -> bool | None:
    """True for `db.is_postgres()`, False for `not db.is_postgres()`, None for anything else."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        inner = _is_pg_test(test.operand)
        return None if inner is None else not inner
    if isinstance(test, ast.Call) and getattr(test.func, "attr", getattr(test.func, "id", None)) == "is_postgres":
        return True
    return None


def _engine_of(chain: list[ast.AST], name: str) -> str:
    tokens = {t.lower() for t in re.split(r"[_\W]+", name)} if name else set()
    for node in chain:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            tokens |= {t.lower() for t in node.name.split("_")}
    if tokens & {"pg", "postgres"}:
        return "postgres"
    for parent, child in zip(chain, chain[1:], strict=False):
        if isinstance(parent, (ast.If, ast.IfExp)) and child is not parent.test:
            pg = _is_pg_test(parent.test)
            if pg is not None:
                in_body = child in parent.body if isinstance(parent, ast.If) else child is parent.body
                return "postgres" if in_body == pg else "sqlite"
    return ""


def _parts(node: ast.AST) -> list:
    """A string's pieces: text, and for an f-string the expression of each hole; `a + b + c`
    the pieces of each (an operand that is not a string is a hole)."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _parts(node.left) + _parts(node.right)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values]
    return [node]


def _is_text(node: ast.AST) -> bool:
    """A string constant, an f-string, or a sum starting with one."""
    while isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        node = node.left
    return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str))


def _skeleton(parts: list) -> str:
    return "".join(p if isinstance(p, str) else "x" for p in parts)


def find_statements(path: Path, text: str | None = None, modname: str | None = None) -> list[Statement]:
    tree = ast.parse(text if text is not None else path.read_text(), str(path))
    rel = path.relative_to(ROOT).as_posix()
    modname = modname or _module_name(path)
    sql_names = {}  # id(value node) -> constant name, for module-level ..._SQL
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            sql_names[id(node.value)] = node.targets[0].id
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str | int):
                constants[node.targets[0].id] = node.value.value
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    found: list[Statement] = []

    def visit(node: ast.AST, chain: list[ast.AST]) -> None:
        if id(node) in docstrings:
            return
        if _is_text(node):
            name = sql_names.get(id(node), "")
            parts = _parts(node)
            if STATEMENT_START.match(_skeleton(parts)) or name.endswith("_SQL"):
                function = next(
                    (n for n in reversed(chain) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)), None
                )
                engine = _engine_of(chain + [node], name)
                found.append(Statement(rel, node.lineno, modname, parts, name, engine, function, constants))
            return  # an f-string's pieces are not statements of their own
        for child in ast.iter_child_nodes(node):
            visit(child, chain + [node])

    visit(tree, [])
    return found


def all_statements() -> list[Statement]:
    return [
        s
        for path in sorted(APP.rglob("*.py"))
        if "migrations" not in path.relative_to(APP).parts
        for s in find_statements(path)
    ]


STATEMENTS = all_statements()


# -- filling the holes --------------------------------------------------------------------------


def _local_value(stmt: Statement, name: str) -> ast.AST | None:
    """The expression last assigned to `name` in the statement's function before its line."""
    if stmt.function is None:
        return None
    best, best_line = None, -1
    for node in ast.walk(stmt.function):
        if not isinstance(node, ast.Assign) or not best_line < node.lineno <= stmt.line:
            continue
        for target in node.targets:
            names = [getattr(e, "id", None) for e in target.elts] if isinstance(target, ast.Tuple) else None
            if isinstance(target, ast.Name) and target.id == name:
                best, best_line = node.value, node.lineno
            elif names and name in names:  # pick, skip = ("...", "...") if db.is_postgres() else (...)
                best, best_line = ast.Subscript(value=node.value, slice=ast.Constant(names.index(name))), node.lineno
    return best


def _usable(value) -> bool:
    return isinstance(value, str | int) or inspect.ismodule(value) or inspect.isfunction(value)


def evaluate(expr: ast.AST, stmt: Statement, depth: int = 0):
    """The value of a hole's expression when the test can know it, else UNKNOWN."""
    if depth > 8:
        return UNKNOWN
    if isinstance(expr, ast.Constant):
        return expr.value
    if isinstance(expr, ast.JoinedStr):
        pieces = [evaluate(v.value if isinstance(v, ast.FormattedValue) else v, stmt, depth + 1) for v in expr.values]
        return UNKNOWN if any(p is UNKNOWN for p in pieces) else "".join(str(p) for p in pieces)
    if isinstance(expr, ast.Tuple):
        items = tuple(evaluate(e, stmt, depth + 1) for e in expr.elts)
        return UNKNOWN if UNKNOWN in items else items
    if isinstance(expr, ast.Subscript) and isinstance(expr.slice, ast.Constant):
        whole = evaluate(expr.value, stmt, depth + 1)
        return whole[expr.slice.value] if isinstance(whole, tuple) else UNKNOWN
    if isinstance(expr, ast.IfExp):
        pg = _is_pg_test(expr.test)
        if pg is None:
            return UNKNOWN
        return evaluate(expr.body if pg == db.is_postgres() else expr.orelse, stmt, depth + 1)
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
        left, right = evaluate(expr.left, stmt, depth + 1), evaluate(expr.right, stmt, depth + 1)
        return left + right if isinstance(left, str) and isinstance(right, str) else UNKNOWN
    if isinstance(expr, ast.Name):
        local = _local_value(stmt, expr.id)
        if local is not None:
            return evaluate(local, stmt, depth + 1)
        if stmt.function is not None and expr.id in [a.arg for a in stmt.function.args.args]:
            return UNKNOWN  # a parameter: anything
        if expr.id in stmt.constants:
            return stmt.constants[expr.id]
        try:
            value = getattr(importlib.import_module(stmt.modname), expr.id, UNKNOWN)
        except Exception:  # a sample module of the self-checks
            return UNKNOWN
        return value if _usable(value) else UNKNOWN
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
        owner = evaluate(expr.value, stmt, depth + 1)
        if inspect.ismodule(owner):
            value = getattr(owner, expr.attr, UNKNOWN)
            return value if _usable(value) else UNKNOWN
        return UNKNOWN
    if isinstance(expr, ast.Call) and not expr.keywords:
        func = evaluate(expr.func, stmt, depth + 1)
        args = [evaluate(a, stmt, depth + 1) for a in expr.args]
        if (
            inspect.isfunction(func)
            and not inspect.iscoroutinefunction(func)
            and all(isinstance(a, str | int) for a in args)
        ):
            try:
                value = func(*args)
            except Exception:
                return UNKNOWN
            return value if isinstance(value, str) else UNKNOWN
    return UNKNOWN


def _stand_in(before: str, after: str) -> str:
    """What an unknown hole becomes: a condition where a condition goes, else a placeholder."""
    head, tail = before.rstrip().upper(), after.lstrip().upper()
    if re.search(r"\bIN\s*\($", head):
        return "{}"
    if columns := re.search(r"\(([^()]*)\)\s*VALUES$", head):  # a row per column named
        return "(" + ", ".join(["{}"] * len(columns.group(1).split(","))) + ")"
    if re.search(r"(\bWHERE|\bAND|\bOR|\bON|\bNOT)\s*\(?$", head) and (
        tail == "" or re.match(r"(AND|OR|ORDER|GROUP|LIMIT|\)|RETURNING|ON\s+CONFLICT)\b|\)", tail)
    ):
        return "TRUE"
    if re.search(r"\bFROM\s+\w+(\s+\w+)?$", head) and re.match(r"(ORDER|GROUP|LIMIT|$)", tail):
        return ""  # a whole WHERE clause, or none
    return "{}"


def render(stmt: Statement) -> tuple[str, list[str]]:
    """(SQL with `{}` placeholders, the holes that had to be stood in for). A module constant is
    taken as the module holds it, once imported."""
    if stmt.name:
        try:
            value = getattr(importlib.import_module(stmt.modname), stmt.name, None)
        except Exception:  # a sample module of the self-checks
            value = None
        if isinstance(value, str):
            return value, []
    text, unknown = "", []
    pieces = []
    for part in stmt.parts:
        if isinstance(part, str):
            pieces.append(part)
        else:
            value = evaluate(part, stmt)
            if isinstance(value, str | int) and not isinstance(value, bool):
                pieces.append(str(value))
            else:
                pieces.append(part)
    for i, piece in enumerate(pieces):
        if isinstance(piece, str):
            text += piece
            continue
        after = next((p for p in pieces[i + 1 :] if isinstance(p, str)), "")
        text += _stand_in(text, after)
        unknown.append("{" + ast.unparse(piece) + "}")
    # "{audience}" left in a template for a later .replace(): stand in the same way.
    while found := TEMPLATE_NAME.search(text):
        unknown.append(found.group(0))
        text = text[: found.start()] + _stand_in(text[: found.start()], text[found.end() :]) + text[found.end() :]
    return text, unknown


# -- checking one statement ---------------------------------------------------------------------


def _names_something_missing(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.OperationalError):
        return bool(re.search(r"no such (column|table)|has no column named", str(exc)))
    import asyncpg

    return isinstance(exc, asyncpg.exceptions.UndefinedColumnError | asyncpg.exceptions.UndefinedTableError)


async def try_statement(sql: str) -> None:
    """Compile `sql` on the current engine without running it; raise what the engine says."""
    if db.is_postgres():
        async with db.engine().pool.acquire() as conn:
            await conn.prepare(db._compile(sql, True))
    else:
        await db.fetch("EXPLAIN " + sql, *[None] * sql.count("{}"))


async def check(stmt: Statement) -> None:
    engine = "postgres" if db.is_postgres() else "sqlite"
    sql, unknown = render(stmt)
    only = stmt.engine or ("postgres" if PG_ONLY.search(sql) else "sqlite" if SQLITE_ONLY.search(sql) else "")
    if only and only != engine:
        pytest.skip(f"{stmt.where}: for {only} only")
    try:
        await try_statement(sql)
    except Exception as exc:
        message = f"{stmt.where}: {type(exc).__name__}: {exc}\n    {sql}"
        if unknown and not _names_something_missing(exc):
            pytest.skip(f"{stmt.where}: holes {', '.join(unknown)} could not be filled ({type(exc).__name__}: {exc})")
        pytest.fail(message, pytrace=False)


# -- the tests ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
async def clean_tables(database):
    """Nothing to clean: these tests change no data (replaces the suite's per-test clean-up)."""
    yield


def test_the_code_holds_statements_to_check():
    assert len(STATEMENTS) > 100, [s.where for s in STATEMENTS]


@pytest.mark.parametrize("stmt", STATEMENTS, ids=[s.where for s in STATEMENTS])
async def test_statement_fits_the_schema(stmt):
    await check(stmt)


FAULTS = """
from .. import db

GONE_SQL = "SELECT id, title, venue FROM event WHERE id = {}"
RENAMED_SQL = "UPDATE registration SET state = {} WHERE id = {}"
NO_TABLE_SQL = "DELETE FROM registrations WHERE id = {}"
FRAGMENT_SQL = "status = 'published'"


async def listing(where):
    return await db.fetch(f"SELECT id, seats FROM event WHERE {where} ORDER BY starts_at")


async def insert(values):
    return await db.fetch(f"INSERT INTO subscriber (email, colour) VALUES {values}")
"""


@pytest.mark.parametrize("name", ["GONE_SQL", "RENAMED_SQL", "NO_TABLE_SQL", "FRAGMENT_SQL", "listing", "insert"])
async def test_a_statement_that_does_not_fit_fails_with_its_place(name):
    found = find_statements(APP / "domain" / "faulty.py", FAULTS, "events_app.domain.faulty")
    stmt = next(s for s in found if s.name == name or (s.function is not None and s.function.name == name))
    with pytest.raises(pytest.fail.Exception) as failed:
        await check(stmt)
    assert str(failed.value).startswith(f"events_app/domain/faulty.py:{stmt.line}: ")


def test_finding_and_filling():
    code = '''
"""SELECT id FROM event: a docstring is not a statement."""
from .. import db

OK_SQL = "SELECT id FROM event WHERE slug = {}"
COLUMNS = "id, slug"
MESSAGE = "Select the events from the list"


def pick(table):
    marks = ", ".join("{}" for _ in range(3))
    extra = "FOR UPDATE" if db.is_postgres() else ""
    db.fetch(f"SELECT {COLUMNS} FROM event WHERE id IN ({marks}) {extra}")
    if db.is_postgres():
        db.fetch("SELECT id FROM event WHERE id = ANY({})")
    db.fetch(f"UPDATE {table} SET version = version + 1 WHERE id = {{}}")
'''
    found = {s.line: s for s in find_statements(APP / "domain" / "sample.py", code, "events_app.domain.sample")}
    assert sorted(found) == [5, 13, 15, 16]
    assert found[15].engine == "postgres" and found[13].engine == "" and found[5].name == "OK_SQL"
    sql, unknown = render(found[13])
    assert sql.startswith("SELECT id, slug FROM event WHERE id IN ({})") and unknown == ["{marks}"]
    assert sql.rstrip().endswith("FOR UPDATE") == db.is_postgres()
    assert render(found[16]) == ("UPDATE {} SET version = version + 1 WHERE id = {}", ["{table}"])
