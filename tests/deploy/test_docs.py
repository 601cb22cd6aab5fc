"""The operations docs stay true to the code: commands they show exist, files they name
exist, and their links between pages resolve."""

import re
from pathlib import Path

import pytest

from polaris.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))


def command_names():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return set(sub.choices)


REQUIRED = {"install", "chargers", "backups", "upgrades", "secrets", "monitoring", "troubleshooting"}


def slug(heading):
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_every_operations_page_exists():
    assert REQUIRED <= {p.stem for p in DOCS}


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_commands_exist(page):
    text = page.read_text()
    named = set(re.findall(r"\bpolaris ([a-z]+)\b", text))
    # prose like "polaris doctor's" or "Polaris Express" is not a command
    named -= {"express"}
    missing = named - command_names()
    assert not missing, f"{page.name} shows commands that do not exist: {missing}"


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_named_repository_files_exist(page):
    text = page.read_text()
    for path in set(re.findall(r"`?((?:deploy|docs|polaris|tests)/[A-Za-z0-9_./*-]+\.(?:yml|md|py|lock|caddy|example))`?", text)):
        if "*" in path:
            assert list(ROOT.glob(path)), f"{page.name}: nothing matches {path}"
        else:
            assert (ROOT / path).exists(), f"{page.name}: {path} does not exist"
    for name in re.findall(r"`(docker-compose\.yml|deploy/Dockerfile|deploy/Caddyfile|deploy/\.env\.example)`", text):
        assert (ROOT / name).exists(), name


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_links_between_pages_resolve(page):
    text = page.read_text()
    for target, anchor in re.findall(r"\]\(([a-z_]+\.md)?(?:#([a-z0-9_\-]+))?\)", text):
        dest = ROOT / "docs" / target if target else page
        assert dest.exists(), f"{page.name} links to missing {target}"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", dest.read_text(), flags=re.M)
            assert anchor in {slug(h) for h in headings}, f"{page.name}: no #{anchor} in {dest.name}"


def test_readme_points_to_the_docs():
    readme = (ROOT / "README.md").read_text()
    assert "docs/install.md" in readme
