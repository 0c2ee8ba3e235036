"""The house's layers hold: exporter/ imports no outer layer, Celery or Flask, and no module of it
imports itself back through others (imports inside functions count too)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTER = ("web", "workers", "cli", "celery", "flask", "celeryconfig")


def _modules(package: str) -> dict[str, Path]:
    out = {}
    for path in (ROOT / package).rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Every module `name` imports, anywhere in it (absolute names, as written or resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            found |= {f"{base}.{a.name}" for a in node.names} | ({base} if node.module else set())
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules("exporter")

    def resolve(target: str) -> str | None:
        while target and target not in mods:
            target = target.rpartition(".")[0]
        return target or None

    graph = {}
    for name, path in mods.items():
        graph[name] = {resolve(t) for t in _imports(name, path)} - {None, name}
    return graph


def test_the_domain_imports_no_outer_layer():
    offending = sorted(
        (name, imp) for name, path in _modules("exporter").items() for imp in _imports(name, path) if imp.split(".")[0] in OUTER
    )
    assert offending == []


def test_the_domain_has_no_import_cycles():
    graph = _graph()
    cycles = []
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []


def test_each_test_module_has_a_redis_database_of_its_own():
    """Test modules run in parallel (pytest-xdist, a module whole in one process): two that used
    one Redis database would empty each other's queues."""
    import re

    seen: dict[int, str] = {}
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        text = path.read_text()
        numbers = {int(n) for n in re.findall(r"^REDIS_DB = (\d+)", text, re.M)} | {int(n) for n in re.findall(r"REDIS_URL\}/(\d+)", text)}
        for n in numbers:
            assert n not in seen, f"{path.name} and {seen[n]} both use Redis database {n}"
            assert 0 <= n <= 15, f"{path.name}: Redis has databases 0-15"
            seen[n] = path.name


def test_no_module_is_named_by_a_module_function_string():
    """Hooks and helpers are imported or registered, not looked up as "exporter.x:fn" strings, which
    hide a dependency (and any cycle it makes) from the checks above. The lists of families'
    modules that `kinds.load_all()` and `schema` import are the one composition point."""
    found = []
    for name, path in _modules("exporter").items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"exporter(\.\w+)+:\w+", node.value):
                found.append(f"{name}: {node.value!r}")
    assert found == []
