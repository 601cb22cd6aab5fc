"""`polaris secrets` as an operator runs it: fresh values, .env form, and filling an existing .env."""

import json
import os
import re
import stat
import subprocess
import sys

from polaris.config import Settings
from polaris.ops.secrets import SECRETS


def polaris(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k not in Settings.model_fields}
    return subprocess.run(
        [sys.executable, "-m", "polaris", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )


GUIDE = {  # name -> hex characters, from the guide's `openssl rand -hex N`
    "AUTH_SECRET": 64,
    "CF_EMAIL_WORKER_SECRET": 64,
    "STEVE_PREAUTH_HMAC_KEY": 64,
    "STEVE_METERVALUE_HMAC_KEY": 64,
    "STEVE_API_KEY": 48,
    "POSTGRES_PASSWORD": 48,
}


def parse_env(text):
    return dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )


def test_prints_every_guide_secret_as_env_lines(tmp_path):
    r = polaris("secrets", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    values = parse_env(r.stdout)
    assert {k: len(v) for k, v in values.items()} == GUIDE
    assert all(re.fullmatch(r"[0-9a-f]+", v) for v in values.values())
    again = parse_env(polaris("secrets", cwd=tmp_path).stdout)
    assert all(values[k] != again[k] for k in GUIDE), "every run must generate new values"


def test_generated_values_pass_the_settings_checks(tmp_path):
    values = json.loads(polaris("secrets", "--json", cwd=tmp_path).stdout)
    s = Settings(_env_file=None, DATABASE_URL="postgresql://u@h/db", **values)
    s.require("web", "ocpp")  # raises ConfigError if any were missing
    assert s.weak_secrets() == []  # and none is shorter than recommended


def test_json_is_one_document(tmp_path):
    r = polaris("secrets", "--json", cwd=tmp_path)
    assert r.returncode == 0
    assert set(json.loads(r.stdout)) == set(GUIDE)


def test_write_fills_only_missing_and_empty_values(tmp_path):
    env = tmp_path / "prod.env"
    env.write_text(
        "# my deployment\n"
        "AUTH_SECRET=keep-this-one-it-is-already-long-enough-yes\n"
        "CF_EMAIL_WORKER_SECRET=\n"
        "LAGO_API_KEY=lago-key\n"
        'STEVE_API_KEY=""\n'
    )
    env.chmod(0o640)
    r = polaris("secrets", "--write", str(env), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = env.read_text()
    values = parse_env(text)
    assert values["AUTH_SECRET"] == "keep-this-one-it-is-already-long-enough-yes"
    assert values["LAGO_API_KEY"] == "lago-key"
    assert len(values["CF_EMAIL_WORKER_SECRET"]) == 64 and len(values["STEVE_API_KEY"]) == 48
    assert set(values) == set(GUIDE) | {"LAGO_API_KEY"}
    assert text.startswith("# my deployment\nAUTH_SECRET=keep")
    # the empty line was filled where it stood, not duplicated at the end
    assert text.count("CF_EMAIL_WORKER_SECRET=") == 1
    assert stat.S_IMODE(env.stat().st_mode) == 0o600, "an existing .env is made private too"
    assert "keep-this-one" not in r.stderr + r.stdout and values["STEVE_API_KEY"] not in r.stderr
    assert "already set, left as they are: AUTH_SECRET" in r.stderr

    before = env.read_text()
    assert polaris("secrets", "--write", str(env), cwd=tmp_path).returncode == 0
    assert env.read_text() == before, "a second run changes nothing"


def test_write_creates_a_private_file(tmp_path):
    env = tmp_path / "new.env"
    assert polaris("secrets", "--write", str(env), cwd=tmp_path).returncode == 0
    assert set(parse_env(env.read_text())) == set(GUIDE)
    assert stat.S_IMODE(env.stat().st_mode) == 0o600


def test_write_to_an_unwritable_place_is_one_line(tmp_path):
    r = polaris("secrets", "--write", str(tmp_path / "missing-dir" / ".env"), cwd=tmp_path)
    assert r.returncode == 1
    assert "polaris secrets: cannot update" in r.stderr and "Traceback" not in r.stderr


def test_spec_matches_the_guide():
    assert [s.name for s in SECRETS] == list(GUIDE)
    assert all(s.nbytes * 2 == GUIDE[s.name] for s in SECRETS)
