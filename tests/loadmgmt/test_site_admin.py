"""Setting a site's limit, circuits and chargers' ranges: from the shell, audited; bad input explained."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from polaris.db.repos import sites


def polaris(db_dsn, tmp_path, *args):
    env = {**{k: v for k, v in os.environ.items() if k != "DATABASE_URL"}, "DATABASE_URL": db_dsn}
    return subprocess.run([sys.executable, "-m", "polaris", *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=60)


async def test_site_set_charger_add_and_circuit_from_the_shell_are_audited(db_dsn, conn, tmp_path):
    r = polaris(db_dsn, tmp_path, "admin", "site", "set", "Garage", "--limit-amps", "63", "--phases", "3",
                "--margin-amps", "3")
    assert r.returncode == 0, r.stderr
    assert "site Garage: 63 A per phase, 3 phase(s), margin 3 A, policy equal" in r.stdout
    r = polaris(db_dsn, tmp_path, "admin", "site", "circuit", "Garage", "row-A", "--limit-amps", "32")
    assert r.returncode == 0, r.stderr
    r = polaris(db_dsn, tmp_path, "admin", "charger", "add", "G-1", "G-2", "--security-profile", "0",
                "--site", "Garage", "--circuit", "row-A", "--max-amps", "16")
    assert r.returncode == 0, r.stderr
    view = await sites.site_view(conn, "Garage")
    assert view["site"]["limit_amps"] == 63 and view["site"]["margin_amps"] == 3
    assert [(c["charge_box_id"], c["circuit"], c["max_amps"]) for c in view["chargers"]] == [
        ("G-1", "row-A", 16), ("G-2", "row-A", 16)]
    actions = [r["action"] for r in await conn.fetch("SELECT action FROM app.audit_log ORDER BY id")]
    assert actions.count("site.add") == 1 and "site.circuit" in actions and actions.count("charger.load") == 2
    r = polaris(db_dsn, tmp_path, "admin", "site", "set", "Garage", "--limit-amps", "40")
    assert r.returncode == 0
    entry = await conn.fetchrow("SELECT actor_email, before, after FROM app.audit_log WHERE action = 'site.limits'")
    assert entry["actor_email"].startswith("cli:") and entry["after"] == {"limit_amps": 40.0} and entry["before"] == {"limit_amps": 63.0}
    r = polaris(db_dsn, tmp_path, "admin", "site", "list", "--json")
    assert r.returncode == 0 and '"limit_amps": 40.0' in r.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--limit-amps", "10", "--margin-amps", "10"], "margin_amps (10 A) must be less than limit_amps (10 A)"),
    (["--limit-amps", "-5"], "limit_amps must be more than 0"),
])
async def test_bad_limits_are_refused_in_one_line_and_change_nothing(db_dsn, conn, tmp_path, args, message):
    r = polaris(db_dsn, tmp_path, "admin", "site", "set", "Lot", *args)
    assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr
    assert await sites.get_site(conn, "Lot") is None


async def test_a_circuit_cannot_sit_under_its_own_child(db_dsn, conn, tmp_path):
    assert polaris(db_dsn, tmp_path, "admin", "site", "set", "S", "--limit-amps", "63").returncode == 0
    assert polaris(db_dsn, tmp_path, "admin", "site", "circuit", "S", "a", "--limit-amps", "40").returncode == 0
    assert polaris(db_dsn, tmp_path, "admin", "site", "circuit", "S", "b", "--limit-amps", "20",
                   "--parent", "a").returncode == 0
    r = polaris(db_dsn, tmp_path, "admin", "site", "circuit", "S", "a", "--limit-amps", "40", "--parent", "b")
    assert r.returncode == 1 and "a is under" in r.stderr or "b is under a" in r.stderr
