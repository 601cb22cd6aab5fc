"""The README documents every setting a process reads."""

from pathlib import Path

from polaris.config import PURPOSE, Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_in_the_readme_table():
    missing = [name for name in Settings.model_fields if f"| `{name}` |" not in README]
    assert not missing


def test_every_setting_has_a_purpose():
    assert set(Settings.model_fields) == set(PURPOSE)


def test_readme_shows_the_two_commands():
    assert "make up" in README and "make test" in README
