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


def module_name(path: Path) -> str:
    """`polaris/sync/ledger.py` -> `polaris.sync.ledger` (a package's `__init__` -> the package)."""
    parts = list(path.resolve().relative_to(SOURCE_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str | None = None) -> set[str]:
    """Every module (and `module.name`) the file imports, relative imports made absolute
    against `module`, the file's own dotted name (by default from where it lies)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            name = node.module or ""
            if node.level:
                package = (module or module_name(path)).split(".")
                if path.name != "__init__.py":
                    package.pop()
                name = ".".join(package[: len(package) - node.level + 1] + ([name] if name else []))
            found.add(name)
            found |= {f"{name}.{a.name}" for a in node.names}
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
    code = (
        "import importlib, json, pkgutil, sys\n"
        f"pkg = importlib.import_module({package!r})\n"
        "for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "    importlib.import_module(m.name)\n"
        f"prefixes = {tuple(prefixes)!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if any(m == p or m.startswith(p + '.') for p in prefixes))))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=SOURCE_ROOT
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])
