"""Rules the web process's tree keeps (the model is tests/tui/test_layering.py):

- every edge is a plain import: no `find_spec` / `import_module` / `__import__` wiring in polaris/;
- the modules of services/auth/ import each other without a circle (TYPE_CHECKING imports count);
- the admin side never imports the customer portal, nor the portal the admin side: what both
  need (sign-in links, mail) sits below them, and only the app factory sees both.
"""

from __future__ import annotations

import ast
from pathlib import Path

import polaris
from tests.layering import cycles, hits, import_graph, imports_of, loaded_by, modules_of

ROOT = Path(polaris.__file__).parent
SERVICES = ROOT / "services"
AUTH = SERVICES / "auth"

# Dynamic imports allowed, by file: only where a user's plugin would be loaded (none today).
PLUGIN_LOADERS: dict[str, str] = {}
DYNAMIC = {"find_spec", "import_module", "__import__", "spec_from_file_location", "module_from_spec"}


def absolute_imports_of(path: Path) -> set[str]:
    """`imports_of`, and the house imports absolutely: a relative import fails the test."""
    tree = ast.parse(path.read_text(), str(path))
    relative = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level]
    assert not relative, f"{path}: the house imports absolutely (line {relative[0]})"
    return imports_of(path)


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


def test_no_dynamic_imports_in_polaris():
    files = sorted(ROOT.rglob("*.py"))
    assert len(files) > 100
    bad = {str(f.relative_to(ROOT)): dynamic_imports(f) for f in files}
    bad = {k: v for k, v in bad.items() if v and k not in PLUGIN_LOADERS}
    assert bad == {}


def test_no_import_circle_among_the_auth_modules():
    modules = modules_of(AUTH)
    assert len(modules) >= 6
    assert cycles(import_graph(modules)) == []


def test_the_admin_side_and_the_portal_do_not_import_each_other():
    admin = sorted((SERVICES / "admin").rglob("*.py"))
    assert any(f.parent.name == "actions" for f in admin)
    bad = {str(f.relative_to(ROOT)): hits(absolute_imports_of(f), ("polaris.customer_web",)) for f in admin}
    assert {k: v for k, v in bad.items() if v} == {}
    portal = sorted((ROOT / "customer_web").rglob("*.py"))
    bad = {str(f.relative_to(ROOT)): hits(absolute_imports_of(f), ("polaris.services.admin",)) for f in portal}
    assert {k: v for k, v in bad.items() if v} == {}


def test_only_the_app_factory_wires_the_portal_into_services():
    files = [f for f in sorted(SERVICES.rglob("*.py")) if f != SERVICES / "app.py"]
    bad = {str(f.relative_to(ROOT)): hits(absolute_imports_of(f), ("polaris.customer_web",)) for f in files}
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_shell_loads_the_admin_actions_without_any_view():
    # `polaris admin ...` runs the actions: importing them builds no admin view and no portal.
    loaded = loaded_by(["polaris.services.admin.actions"], ("polaris.customer_web", "polaris.services.admin"))
    assert [m for m in loaded if not hits({m}, ("polaris.services.admin.actions",))
            and m != "polaris.services.admin"] == []


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
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
