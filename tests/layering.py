"""Import rules of the tree, checked from the source and at run time (used by the
`test_layering.py` of each area).

The source check reads every `import` of a package with `ast`: absolute and relative ones,
and those inside functions or under TYPE_CHECKING, which a run-time check cannot see. The
run-time check imports every module of a package in a fresh interpreter and lists what
else got loaded, which catches an edge hidden behind another package.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import polaris

SOURCE_ROOT = Path(polaris.__file__).parent.parent


def module_name(path: Path, root: Path = SOURCE_ROOT) -> str:
    """`polaris/sync/ledger.py` -> `polaris.sync.ledger` (a package's `__init__` -> the package);
    `root` is the directory the dotted names start from."""
    parts = list(path.resolve().relative_to(root.resolve()).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules_of(package_dir: Path, root: Path = SOURCE_ROOT) -> dict[str, Path]:
    """{dotted name: file} for every module under `package_dir`."""
    return {module_name(p, root): p for p in sorted(package_dir.rglob("*.py"))}


def import_statements(path: Path, module: str | None = None) -> list[tuple[str, list[str]]]:
    """(module, names imported from it) for every import anywhere in the file (functions and
    TYPE_CHECKING blocks included), relative imports made absolute against `module`, the
    file's own dotted name (by default from where it lies). A plain `import m` is (m, [])."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            name = node.module or ""
            if node.level:
                package = (module or module_name(path)).split(".")
                if path.name != "__init__.py":
                    package.pop()
                name = ".".join(package[: len(package) - node.level + 1] + ([name] if name else []))
            found.append((name, [a.name for a in node.names]))
    return found


def imports_of(path: Path, module: str | None = None) -> set[str]:
    """Every module (and `module.name`) the file imports: `from m import x` names m and m.x."""
    return {n for base, names in import_statements(path, module) for n in (base, *(f"{base}.{x}" for x in names))}


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of `modules` it imports: `from pkg import mod` is an edge to mod,
    `from pkg import name` (not a module) an edge to pkg, as import-linter counts them (a
    package's `__init__` re-exporting its own submodule is no circle)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for base, names in import_statements(path, name):
            subs = {f"{base}.{x}" for x in names} & modules.keys()
            edges |= subs
            if len(subs) < len(names) or not names:
                edges.add(base)
        graph[name] = {m for m in edges if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: strongly connected components of more than one module (Tarjan),
    each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def hits(names: set[str], prefixes: Sequence[str]) -> set[str]:
    return {n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes)}


def forbidden_imports(package_dir: Path, prefixes: Sequence[str]) -> dict[str, set[str]]:
    """{file: the forbidden names it imports}, only for the files that import any."""
    files = sorted(package_dir.rglob("*.py"))
    assert files, f"no Python files under {package_dir}"
    found = {str(f.relative_to(package_dir)): hits(imports_of(f), prefixes) for f in files}
    return {k: v for k, v in found.items() if v}


def loaded_by_importing(package: str, prefixes: Sequence[str]) -> list[str]:
    """The modules under `prefixes` that importing every module of `package` loads."""
    return _loaded(
        f"pkg = importlib.import_module({package!r})\n"
        "for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "    importlib.import_module(m.name)\n",
        prefixes,
    )


def loaded_by(modules: Sequence[str], prefixes: Sequence[str]) -> list[str]:
    """The modules under `prefixes` that importing just `modules` (an entry point) loads."""
    return _loaded("".join(f"importlib.import_module({m!r})\n" for m in modules), prefixes)


def _loaded(imports: str, prefixes: Sequence[str]) -> list[str]:
    """Run `imports` in a fresh interpreter and list what of `prefixes` it left loaded."""
    code = (
        "import importlib, json, pkgutil, sys\n"
        + imports
        + f"prefixes = {tuple(prefixes)!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if any(m == p or m.startswith(p + '.') for p in prefixes))))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=SOURCE_ROOT
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])
