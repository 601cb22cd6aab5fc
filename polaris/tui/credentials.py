"""Where the console keeps its bearer token: the user's config dir, file mode 0600."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from platformdirs import user_config_dir

TOKEN_ENV = "POLARIS_ADMIN_TOKEN"


def default_path() -> Path:
    return Path(user_config_dir("polaris", appauthor=False)) / "tui-token.json"


@dataclass
class StoredToken:
    url: str
    token: str
    email: str | None = None


class TokenStore:
    """One token per admin API URL, in a JSON file only the user can read."""

    def __init__(self, path: Path | None = None):
        self.path = path or default_path()

    def _read_all(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_all(self, data: dict[str, dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        # Create with 0600 from the start: a token must never be readable by others, even briefly.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def load(self, url: str) -> StoredToken | None:
        entry = self._read_all().get(normalize_url(url))
        if not entry or not entry.get("token"):
            return None
        return StoredToken(url=normalize_url(url), token=entry["token"], email=entry.get("email"))

    def save(self, token: StoredToken) -> None:
        data = self._read_all()
        token = StoredToken(url=normalize_url(token.url), token=token.token, email=token.email)
        data[token.url] = {k: v for k, v in asdict(token).items() if k != "url"}
        self._write_all(data)

    def forget(self, url: str | None = None) -> bool:
        """Drop the token for one URL (or all of them); True if something was removed."""
        data = self._read_all()
        if url is None:
            removed = bool(data)
            data = {}
        else:
            removed = data.pop(normalize_url(url), None) is not None
        if removed:
            self._write_all(data)
        return removed


def normalize_url(url: str) -> str:
    return url.strip().rstrip("/")


def token_from_env(environ: dict[str, str] | None = None) -> str | None:
    value = (environ if environ is not None else os.environ).get(TOKEN_ENV, "").strip()
    return value or None
