"""The house rules of the package's layout, read from the source (the AST),
so that a change that breaks one fails here rather than in a reviewer's eye:

* no import cycles between ``gateway`` modules, counting every import, also
  those inside functions and under ``TYPE_CHECKING``;
* no SQL outside ``gateway/store/``: nothing else builds a statement
  (``select``/``insert``/``update``/``delete`` from SQLAlchemy or SQLModel,
  ``Table.insert()``/``.update()``/``.delete()``) or runs one
  (``execute``/``exec``/``scalar``/``scalars``); passing a connection or
  session through is fine."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "gateway"
STORE = PACKAGE / "store"
SQL_BUILDERS = {"select", "insert", "update", "delete"}
SQL_RUNNERS = {"execute", "exec", "scalar", "scalars", "scalar_one", "scalar_one_or_none"}
SQL_MODULES = ("sqlalchemy", "sqlmodel")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts or "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The gateway module ``name`` is, or is inside of (``a.b.func`` -> ``a.b``)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(filter(None, (_resolve(alias.name) for alias in node.names)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                target = _resolve(f"{base}.{alias.name}") or _resolve(base)
                if target is not None:
                    found.add(target)
    found.discard(module)
    # An empty package __init__ (the docstring only) imports nothing.
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_is_read() -> None:
    graph = {m: _imports(m, p) for m, p in MODULES.items()}
    # A check that could not see imports would find no cycles either.
    assert "gateway.store.repo" in graph["gateway.pipeline.runner"]
    assert "gateway.store.db" in graph["gateway.app"]  # imported inside a method


def test_no_import_cycles() -> None:
    graph = {m: _imports(m, p) for m, p in MODULES.items()}
    assert _cycles(graph) == []


def _is_database(receiver: ast.expr) -> bool:
    """``conn.execute``, ``self.session.exec``, ``connection(...).execute``:
    the receiver's name says it is a connection or session (an IMAP
    protocol's ``execute`` is not SQL)."""
    if isinstance(receiver, ast.Call):
        receiver = receiver.func
    name = receiver.id if isinstance(receiver, ast.Name) else getattr(receiver, "attr", "")
    return any(word in name.lower() for word in ("conn", "session", "db", "engine")) or name in {"s", "c"}


def _runs_or_builds(func: ast.Attribute, call: ast.Call) -> bool:
    """``conn.execute(…)`` and the like, or ``TABLE.insert()`` (a Table's
    own statement builders take no arguments)."""
    if func.attr in SQL_RUNNERS:
        return _is_database(func.value)
    return func.attr in {"insert", "update", "delete"} and not call.args and not call.keywords


def _sql_uses(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    builders: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in SQL_MODULES:
            builders.update(a.asname or a.name for a in node.names if a.name in SQL_BUILDERS)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in builders:
            yield f"{path.relative_to(ROOT)}:{node.lineno}: {func.id}()"
        elif isinstance(func, ast.Attribute) and _runs_or_builds(func, node):
            yield f"{path.relative_to(ROOT)}:{node.lineno}: .{func.attr}()"


def test_the_sql_check_sees_sql() -> None:
    assert any(".execute()" in use for use in _sql_uses(STORE / "repo.py"))


def test_no_sql_outside_the_store() -> None:
    uses = [
        use for path in MODULES.values() if STORE not in path.parents for use in _sql_uses(path)
    ]
    assert uses == []
