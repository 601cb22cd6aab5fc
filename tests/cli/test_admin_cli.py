"""The `polaris` command as a user runs it: real process, real database."""

import getpass
import json
import os
import subprocess
import sys

import pytest

from polaris.db.repos import charge_boxes
from polaris.keys import verify_password


def polaris(*args, env=None, cwd=None):
    base = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "polaris", *args],
        capture_output=True, text=True, env={**base, **(env or {})}, cwd=cwd, timeout=60,
    )


@pytest.fixture
def run(db_dsn, tmp_path):
    def _run(*args):
        return polaris(*args, env={"DATABASE_URL": db_dsn}, cwd=tmp_path)
    return _run


def test_unknown_subcommand_and_flag_print_usage_and_exit_2(tmp_path):
    r = polaris("frobnicate", cwd=tmp_path)
    assert r.returncode == 2 and "usage: polaris" in r.stderr
    r = polaris("admin", "charger", "list", "--bogus", cwd=tmp_path)
    assert r.returncode == 2 and "unrecognized arguments: --bogus" in r.stderr


def test_every_subcommand_has_help(tmp_path):
    for args in (["--help"], ["migrate", "--help"], ["up", "--help"], ["admin", "--help"],
                 ["admin", "charger", "add", "--help"], ["admin", "tag", "block", "--help"]):
        r = polaris(*args, cwd=tmp_path)
        assert r.returncode == 0, (args, r.stderr)
        assert "usage:" in r.stdout


def test_unreachable_database_is_one_clear_line(tmp_path):
    r = polaris("admin", "charger", "list", env={"DATABASE_URL": "postgresql://x@127.0.0.1:1/db"}, cwd=tmp_path)
    assert r.returncode == 1
    assert "cannot reach the Postgres server" in r.stderr
    assert "Traceback" not in r.stderr
    r = polaris("migrate", env={"DATABASE_URL": "mysql://nope"}, cwd=tmp_path)
    assert r.returncode == 1 and "DATABASE_URL must start with postgresql://" in r.stderr


def test_no_database_url_and_no_local_data_dir_is_explained(tmp_path):
    r = polaris("admin", "user", "list", cwd=tmp_path)
    assert r.returncode == 1
    assert "DATABASE_URL is not set and there is no local data dir" in r.stderr


def test_migrate_is_idempotent_through_the_cli(empty_db_dsn, tmp_path):
    first = polaris("migrate", env={"DATABASE_URL": empty_db_dsn}, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_core.sql" in first.stdout
    second = polaris("migrate", env={"DATABASE_URL": empty_db_dsn}, cwd=tmp_path)
    assert "0 applied now" in second.stdout
    check = polaris("migrate", "--check", env={"DATABASE_URL": empty_db_dsn}, cwd=tmp_path)
    assert check.returncode == 0 and "0 pending" in check.stdout


async def test_admin_user_customer_tag_charger_round_trip(run, conn):
    r = run("admin", "user", "add", "Ops@Example.com", "--role", "operator", "--password", "correct horse battery")
    assert r.returncode == 0, r.stderr
    user = await conn.fetchrow("SELECT * FROM app.users WHERE email = 'ops@example.com'")
    assert user["role"] == "operator"
    assert verify_password("correct horse battery", user["password_hash"])
    assert user["password_hash"].startswith("$argon2id$")

    r = run("admin", "customer", "add", "alice@example.com", "--name", "Alice", "--subscription", "sub_123")
    assert r.returncode == 0, r.stderr
    r = run("admin", "tag", "add", "04A1B2C3", "--customer", "alice@example.com")
    assert r.returncode == 0, r.stderr
    r = run("admin", "tag", "block", "04a1b2c3")  # case-insensitive
    assert r.returncode == 0 and "blocked" in r.stdout
    assert await conn.fetchval("SELECT blocked FROM app.id_tags WHERE id_tag = '04A1B2C3'")

    r = run("admin", "charger", "add", "CB-1", "CB-2", "--password", "sixteen-chars-ok")
    assert r.returncode == 0, r.stderr
    r = run("admin", "charger", "list", "--json")
    doc = json.loads(r.stdout)  # exactly one JSON document on stdout
    assert [c["charge_box_id"] for c in doc] == ["CB-1", "CB-2"]
    assert all(c["registration_status"] == "Accepted" for c in doc)
    assert len({c["public_id"] for c in doc}) == 2
    assert await charge_boxes.verify_key(conn, "CB-1", "sixteen-chars-ok")
    assert not await charge_boxes.verify_key(conn, "CB-1", "sixteen-chars-no")
    salt, digest = await conn.fetchrow("SELECT key_salt, key_hash FROM ocpp.charge_boxes WHERE charge_box_id='CB-1'")
    assert b"sixteen" not in digest and len(digest) == 32 and len(salt) == 16


def test_admin_errors_are_clear(run):
    r = run("admin", "charger", "add", "CB-1", "--password", "short")
    assert r.returncode == 1 and "16 to 40 characters" in r.stderr
    r = run("admin", "charger", "add", "bad id/with slash", "--password", "sixteen-chars-ok")
    assert r.returncode == 1 and "may not contain = / ( ) < >" in r.stderr
    assert run("admin", "charger", "add", "CB-9", "--password", "sixteen-chars-ok").returncode == 0
    r = run("admin", "charger", "add", "cb-9", "--password", "sixteen-chars-ok")
    assert r.returncode == 1 and "charge box cb-9 already exists (ids match ignoring case)" in r.stderr
    r = run("admin", "tag", "add", "TAG1", "--customer", "nobody@example.com")
    assert r.returncode == 1 and "no customer with email nobody@example.com" in r.stderr
    r = run("admin", "tag", "block", "NOPE")
    assert r.returncode == 1 and "no id tag NOPE" in r.stderr
    r = run("admin", "user", "add", "not-an-email", "--role", "admin", "--password", "long enough pw")
    assert r.returncode == 1 and "is not an email address" in r.stderr
    r = run("admin", "user", "add", "a@example.com", "--role", "admin", "--password", "short")
    assert r.returncode == 1 and "at least 12 characters" in r.stderr
    assert all("Traceback" not in x for x in (r.stderr,))


def test_charger_add_is_all_or_nothing(run):
    assert run("admin", "charger", "add", "CB-2", "--password", "sixteen-chars-ok").returncode == 0
    r = run("admin", "charger", "add", "CB-1", "CB-2", "CB-3", "--password", "sixteen-chars-ok")
    assert r.returncode == 1
    listed = json.loads(run("admin", "charger", "list", "--json").stdout)
    assert [c["charge_box_id"] for c in listed] == ["CB-2"]


async def test_shell_changes_are_audited_like_the_api_as_the_os_user(run, conn):
    # The same actions as the admin API: each change writes its audit entry, recorded as
    # cli:<OS user> (the shell has no account, no user id and no address).
    assert run("admin", "charger", "add", "CB-A1", "CB-A2", "--password", "sixteen-chars-ok", "--site", "Depot",
               ).returncode == 0
    assert run("admin", "charger", "set-password", "CB-A1", "--password", "another-16-chars").returncode == 0
    assert run("admin", "customer", "add", "bob@example.com", "--name", "Bob").returncode == 0
    assert run("admin", "tag", "add", "TAGA1", "--customer", "bob@example.com").returncode == 0
    assert run("admin", "tag", "block", "taga1").returncode == 0
    r = run("admin", "user", "add", "ops@example.com", "--role", "operator", "--password", "correct horse battery")
    assert r.returncode == 0, r.stderr
    rows = await conn.fetch("SELECT * FROM app.audit_log ORDER BY id")
    customer_id = await conn.fetchval("SELECT c.id FROM app.customers c JOIN app.users u ON u.id = c.user_id "
                                      "WHERE u.email = 'bob@example.com'")
    user_id = await conn.fetchval("SELECT id FROM app.users WHERE email = 'ops@example.com'")
    assert [(a["action"], a["target_type"], a["target_id"]) for a in rows] == [
        ("charger.add", "charger", "CB-A1"),
        ("charger.add", "charger", "CB-A2"),
        ("charger.password", "charger", "CB-A1"),
        ("customer.create", "customer", str(customer_id)),
        ("id_tag.create", "id_tag", "TAGA1"),
        ("id_tag.block", "id_tag", "TAGA1"),
        ("user.create", "user", str(user_id)),
    ]
    assert {(a["actor_email"], a["actor_user_id"], a["ip"]) for a in rows} == {(f"cli:{getpass.getuser()}", None, None)}
    assert rows[0]["after"] == {"description": None, "site_name": "Depot", "security_profile": 1,
                                "public_id": rows[0]["after"]["public_id"]}
    assert rows[2]["after"] == {"password": "changed", "charger": "not contacted"}  # never the key itself
    assert rows[3]["after"]["invite_sent"] is False  # `customer add` invites nobody; `customer invite` does
    assert rows[5]["before"] == {"blocked": False} and rows[5]["after"] == {"blocked": True}


async def test_a_refused_shell_change_is_one_line_and_writes_no_audit_entry(run, conn):
    r = run("admin", "charger", "set-password", "NOPE", "--password", "sixteen-chars-ok")
    assert r.returncode == 1 and "no charger NOPE" in r.stderr and "Traceback" not in r.stderr
    r = run("admin", "user", "set-password", "ghost@example.com", "--password", "long enough pw")
    assert r.returncode == 1 and "no user with email ghost@example.com" in r.stderr
    r = run("admin", "user", "add", "a@example.com", "--role", "admin", "--password", "short")
    assert r.returncode == 1 and "at least 12 characters" in r.stderr
    assert await conn.fetchval("SELECT count(*) FROM app.audit_log") == 0


def test_charger_add_with_security_profile_0_and_a_public_id(run):
    """SteVe's default: chargers registered without any password; a printed QR sticker kept."""
    r = run("admin", "charger", "add", "Station 7", "--security-profile", "0", "--public-id", "ab12cd34")
    assert r.returncode == 0, r.stderr
    assert "public id ab12cd34, security profile 0" in r.stdout
    listed = {c["charge_box_id"]: c for c in json.loads(run("admin", "charger", "list", "--json").stdout)}
    assert (listed["Station 7"]["security_profile"], listed["Station 7"]["public_id"]) == (0, "ab12cd34")
    r = run("admin", "charger", "add", "CB-X", "--security-profile", "0", "--password", "sixteen-chars-ok")
    assert r.returncode == 1 and "security profile 0 has no password" in r.stderr
    r = run("admin", "charger", "add", "CB-X")
    assert r.returncode == 1 and "--security-profile 0" in r.stderr
    r = run("admin", "charger", "add", "CB-Y", "--password", "sixteen-chars-ok", "--public-id", "ab12cd34")
    assert r.returncode == 1 and "public id ab12cd34 is taken" in r.stderr
    r = run("admin", "charger", "add", "CB-Y", "CB-Z", "--password", "sixteen-chars-ok", "--public-id", "zz99zz99")
    assert r.returncode == 1 and "names one charger" in r.stderr
