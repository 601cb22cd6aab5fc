"""Rules the web process's tree keeps (the model is tests/tui/test_layering.py):

- every edge is a plain import: no `find_spec` / `import_module` / `__import__` wiring in polaris/;
- the modules of services/auth/ import each other without a circle (TYPE_CHECKING imports count);
- the admin side never imports the customer portal, nor the portal the admin side: what both
  need (sign-in links, mail) sits below them, and only the app factory sees both.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import polaris

ROOT = Path(polaris.__file__).parent
SERVICES = ROOT / "services"
AUTH = SERVICES / "auth"

# Dynamic imports allowed, by file: only where a user's plugin would be loaded (none today).
PLUGIN_LOADERS: dict[str, str] = {}
# Wiring another branch of issue 11 retires (the events split rewrites admin/live.py);
# remove the entry once it has landed.
DYNAMIC = {"find_spec", "import_module", "__import__", "spec_from_file_location", "module_from_spec"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it (functions and TYPE_CHECKING blocks included).

    `from a.b import c` counts as importing `a.b` and `a.b.c` (which is a module or a name in
    `a.b`; callers keep the ones that are modules).
    """
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: the house imports absolutely"
            base = node.module or ""
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return found


def dynamic_imports(path: Path) -> set[str]:
    """The dynamic-import calls and names in `path`, e.g. {'find_spec'}."""
    tree = ast.parse(path.read_text(), str(path))
    hits: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in DYNAMIC:
            hits.add(node.attr)
        elif isinstance(node, ast.Name) and node.id in DYNAMIC:
            hits.add(node.id)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("importlib"):
            hits |= {a.name for a in node.names if a.name in DYNAMIC}
    return hits


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import circle once, as the list of modules along it (depth-first search)."""
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def walk(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                circle = path[path.index(nxt):]
                if frozenset(circle) not in seen:
                    seen.add(frozenset(circle))
                    found.append([*circle, nxt])
            else:
                walk(nxt, [*path, nxt])

    for start in sorted(graph):
        walk(start, [start])
    return found


def hits(names: set[str], prefixes: tuple[str, ...]) -> set[str]:
    return {n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes)}


def test_no_dynamic_imports_in_polaris():
    files = sorted(ROOT.rglob("*.py"))
    assert len(files) > 100
    bad = {str(f.relative_to(ROOT)): dynamic_imports(f) for f in files}
    bad = {k: v for k, v in bad.items() if v and k not in PLUGIN_LOADERS}
    assert bad == {}


def test_no_import_circle_among_the_auth_modules():
    files = sorted(AUTH.glob("*.py"))
    modules = {module_name(f): f for f in files}
    assert len(modules) >= 6
    graph = {name: (imports_of(path) & set(modules)) - {name} for name, path in modules.items()}
    assert cycles(graph) == []


def test_the_admin_side_and_the_portal_do_not_import_each_other():
    admin = sorted((SERVICES / "admin").rglob("*.py"))
    assert any(f.parent.name == "actions" for f in admin)
    bad = {str(f.relative_to(ROOT)): hits(imports_of(f), ("polaris.customer_web",)) for f in admin}
    assert {k: v for k, v in bad.items() if v} == {}
    portal = sorted((ROOT / "customer_web").rglob("*.py"))
    bad = {str(f.relative_to(ROOT)): hits(imports_of(f), ("polaris.services.admin",)) for f in portal}
    assert {k: v for k, v in bad.items() if v} == {}


def test_only_the_app_factory_wires_the_portal_into_services():
    files = [f for f in sorted(SERVICES.rglob("*.py")) if f != SERVICES / "app.py"]
    bad = {str(f.relative_to(ROOT)): hits(imports_of(f), ("polaris.customer_web",)) for f in files}
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_shell_loads_the_admin_actions_without_any_view():
    # `polaris admin ...` runs the actions: importing them builds no admin view and no portal.
    code = (
        "import sys, polaris.services.admin.actions; "
        "bad = [m for m in sys.modules if m.startswith(('polaris.customer_web', 'polaris.services.admin.')) "
        "and not m.startswith('polaris.services.admin.actions')]; print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_checkers_see_what_they_forbid(tmp_path):
    f = tmp_path / "x.py"
    f.write_text(
        "import importlib\nfrom importlib.util import find_spec\n"
        "def later():\n    return importlib.import_module('polaris.customer_web')\n"
    )
    assert dynamic_imports(f) == {"find_spec", "import_module"}
    g = tmp_path / "y.py"
    g.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from polaris.customer_web import portal\n")
    assert hits(imports_of(g), ("polaris.customer_web",)) == {"polaris.customer_web", "polaris.customer_web.portal"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
