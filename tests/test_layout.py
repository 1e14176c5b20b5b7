"""The layout's rules (docs/architecture.md), checked on the source: who may import what, and size.

Why static: a lazy import inside a function breaks a layer as surely as one at the top, and
only reading every import statement finds both.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("server", "models", "sandbox")
MAX_FLAT_MODULES = 14
MAX_MODULE_LINES = 600


def modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports, at any depth of the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def top(name: str) -> str:
    return name.split(".", 1)[0]


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def offenders(where: str, forbidden: set[str]) -> list[str]:
    return [
        f"{rel(p)} imports {name}"
        for p in modules()
        if rel(p).startswith(where)
        for name in sorted(imported(p))
        if top(name) in forbidden
    ]


def test_the_checker_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from fastapi import FastAPI\n    import llama_cpp.llama\n")
    assert {"fastapi", "llama_cpp.llama"} <= imported(module)


def test_the_agent_imports_no_web_framework() -> None:
    assert offenders("server/agent/", {"fastapi", "starlette", "uvicorn"}) == []
    upward = [
        f"{rel(p)} imports {n}"
        for p in (ROOT / "server" / "agent").rglob("*.py")
        for n in sorted(imported(p))
        if n.startswith(("server.api", "server.cli", "server.openai"))
    ]
    assert upward == []


def test_loading_the_agent_loads_no_web_framework() -> None:
    """Transitively too: every agent module imported in a fresh interpreter."""
    agent = (ROOT / "server" / "agent").rglob("*.py")
    names = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts) for p in agent)
    code = (
        f"import importlib, sys; [importlib.import_module(n) for n in {names!r}]; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'fastapi', 'starlette', 'uvicorn'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_only_the_engine_imports_llama_cpp() -> None:
    outside = [o for o in offenders("", {"llama_cpp"}) if not o.startswith("models/engine/")]
    assert outside == []


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("models/", {"server", "sandbox"}),
        ("sandbox/", {"server", "models"}),
    ],
)
def test_lower_packages_do_not_import_upward(package: str, forbidden: set[str]) -> None:
    assert offenders(package, forbidden) == []


def server_unit(module: str) -> str | None:
    """The part of ``server/`` a module name belongs to: its folder (``server.api``, the
    routes included) or its top-level module (``server.settings``); None for ``server`` itself."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "server" and len(parts) > 1 else None


def server_imports() -> dict[str, set[str]]:
    """Which parts of ``server/`` each part imports (lazy and type-checking imports too)."""
    graph: dict[str, set[str]] = {}
    for path in (ROOT / "server").rglob("*.py"):
        unit = server_unit(".".join(p for p in path.relative_to(ROOT).with_suffix("").parts if p != "__init__"))
        if unit is None:
            continue
        targets = {server_unit(name) for name in imported(path)}
        graph.setdefault(unit, set()).update(t for t in targets if t is not None and t != unit)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of parts that reach each other (strongly connected, more than one part)."""
    reach = {node: _reachable(graph, node) for node in graph}
    groups = {frozenset(n for n in reach if node in reach[n] and n in reach[node]) for node in graph}
    return sorted(sorted(group) for group in groups if len(group) > 1)


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph.get(todo.pop(), set()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_cycle_finder_finds_pairs_and_rings() -> None:
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_server_folders_import_each_other() -> None:
    """Every arrow between the parts of ``server/`` points one way (docs/architecture.md)."""
    assert cycles(server_imports()) == []


def module_name(path: Path) -> str:
    return ".".join(p for p in path.relative_to(ROOT).with_suffix("").parts if p != "__init__")


def module_imports() -> dict[str, set[str]]:
    """Which of our modules each module imports (lazy and type-checking imports too); from a
    package, a name that is a module counts as that module, not as the package."""
    known = {module_name(p): p for p in modules()}
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                inner = {f"{node.module}.{alias.name}" for alias in node.names} & known.keys()
                targets |= inner or {node.module}
                if len(inner) < len(node.names):
                    targets.add(node.module)
        graph[name] = {t for t in targets if t in known and t != name}
    return graph


def test_no_module_imports_back_what_imports_it() -> None:
    """No import cycle between any two modules of ``server/``, ``models/`` or ``sandbox/``: a
    lazy import inside a function that closes a circle is a circle all the same."""
    assert cycles(module_imports()) == []


def test_the_wire_formats_depend_on_nothing_else_in_server() -> None:
    assert server_imports().get("server.openai", set()) == set()


def test_the_agent_receives_its_parts_and_knows_no_settings() -> None:
    """The agent imports only the tools it hands to a session (and the MCP servers' type)."""
    assert server_imports()["server.agent"] <= {"server.tools", "server.mcp"}


def test_no_folder_holds_too_many_modules_flat() -> None:
    crowded = {}
    for folder in {p.parent for p in modules()}:
        count = len(list(folder.glob("*.py")))
        if count > MAX_FLAT_MODULES:
            crowded[rel(folder)] = count
    assert crowded == {}


def test_no_module_is_too_long() -> None:
    long = {rel(p): n for p in modules() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_every_package_folder_is_a_regular_package() -> None:
    """setuptools' find_packages skips a folder without ``__init__.py``: a non-editable install
    (the Docker image, a wheel) would then ship without it while an editable one still works."""
    folders = {p.parent for p in modules()}
    assert sorted(rel(f) for f in folders if not (f / "__init__.py").exists()) == []


def test_the_store_imports_nothing_else_of_the_server() -> None:
    """Records go in and out as plain JSON: the store knows no agent, API or settings."""
    inward = [
        f"{rel(p)} imports {n}"
        for p in (ROOT / "server" / "store").rglob("*.py")
        for n in sorted(imported(p))
        if n.startswith("server.") and not n.startswith("server.store")
    ]
    assert inward == []
    assert not any(n.startswith("server.store") for p in (ROOT / "server" / "agent").rglob("*.py") for n in imported(p))
