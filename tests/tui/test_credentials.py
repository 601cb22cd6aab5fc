"""Token storage: in the user's config dir, readable by the user only, one token per API URL."""

from __future__ import annotations

import stat

from polaris.tui.credentials import StoredToken, TokenStore, token_from_env


def test_token_file_is_private_and_keyed_by_url(tmp_path):
    store = TokenStore(tmp_path / "cfg" / "tui-token.json")
    store.save(StoredToken(url="http://admin.example.com/", token="t1", email="a@example.com"))
    store.save(StoredToken(url="http://other.example.com", token="t2"))
    mode = stat.S_IMODE(store.path.stat().st_mode)
    assert mode == 0o600
    assert store.load("http://admin.example.com").token == "t1"
    assert store.load("http://admin.example.com/").email == "a@example.com"
    assert store.load("http://other.example.com").token == "t2"
    assert store.load("http://nowhere.example.com") is None


def test_forget_removes_one_or_all(tmp_path):
    store = TokenStore(tmp_path / "t.json")
    store.save(StoredToken(url="http://a", token="1"))
    store.save(StoredToken(url="http://b", token="2"))
    assert store.forget("http://a") is True
    assert store.forget("http://a") is False
    assert store.load("http://b").token == "2"
    assert store.forget() is True
    assert store.load("http://b") is None


def test_corrupt_file_reads_as_empty(tmp_path):
    path = tmp_path / "t.json"
    path.write_text("{not json")
    assert TokenStore(path).load("http://a") is None


def test_env_token():
    assert token_from_env({"POLARIS_ADMIN_TOKEN": "  abc "}) == "abc"
    assert token_from_env({"POLARIS_ADMIN_TOKEN": ""}) is None
    assert token_from_env({}) is None


def test_cli_logout_forgets_the_token(tmp_path, monkeypatch, capsys):
    from polaris.cli.main import main

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    store = TokenStore()
    assert str(store.path).startswith(str(tmp_path))
    store.save(StoredToken(url="http://admin.test:9000", token="secret"))
    assert main(["tui", "--url", "http://admin.test:9000/", "logout"]) == 0
    assert "signed out of http://admin.test:9000" in capsys.readouterr().out
    assert store.load("http://admin.test:9000") is None
    assert main(["tui", "--url", "http://admin.test:9000", "logout"]) == 0
    assert "no stored token" in capsys.readouterr().out


def test_cli_rejects_a_url_without_scheme(capsys):
    from polaris.cli.main import main

    assert main(["tui", "--url", "admin.example.com"]) == 1
    assert "--url must start with http://" in capsys.readouterr().err
