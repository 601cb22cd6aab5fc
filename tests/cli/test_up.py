"""`polaris up` as a newcomer runs it: a real subprocess in a fresh directory, twice.

The first run seeds demo data whose generated charger password starts with `-` (forced
here; about 1 first run in 64 drew one before generated secrets began with a letter or
digit), which `polaris sim --password -xyz` used to read as another option: the simulator
died at start-up and, the password being saved, every later `make up` in that checkout too.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from polaris.cli.up import last_error_line
from polaris.config import Settings
from tests.ports import free_ports

# The demo's generated secrets, forced to start with "-" as an unlucky first run's did.
RUN_UP = """
import secrets, sys
import polaris.demo
polaris.demo.generate_password = lambda nbytes=18: "-" + secrets.token_urlsafe(nbytes)[1:]
from polaris.cli.main import main
sys.exit(main(["up"]))
"""


def _env(ports: dict[str, int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in Settings.model_fields}
    web = ports["web"]
    env.update(
        WEB_PORT=str(web),
        WEB_METRICS_PORT=str(ports["metrics"]),
        OCPP_PORT=str(ports["ocpp"]),
        OCPP_API_PORT=str(ports["api"]),
        POLARIS_LOCAL_LAGO_PORT=str(ports["lago"]),
        STEVE_BASE_URL=f"http://127.0.0.1:{ports['api']}",
        WEB_INTERNAL_URL=f"http://127.0.0.1:{web}",
        ADMIN_BASE_URL=f"http://admin.localhost:{web}",
        CUSTOMER_BASE_URL=f"http://localhost:{web}",
        LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    return env


def _processes_under(root: Path) -> list[str]:
    """Processes (other than this one) working in `root` or naming it on their command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue  # gone, or not ours to read
        if str(root) in cmdline or cwd == str(root) or cwd.startswith(str(root) + "/"):
            found.append(f"{entry.name}: {cmdline.strip()[:120]}")
    return found


def _wait_until_charging(base: str, creds_file: Path, up: subprocess.Popen, deadline_s: float) -> dict:
    """Sign in with the demo admin and wait for a simulated connector to report Charging."""
    deadline = time.monotonic() + deadline_s
    admin = {"Host": base.split("//", 1)[1].replace("127.0.0.1", "admin.localhost")}
    token = None
    last = None
    with httpx.Client(base_url=base, timeout=5) as client:
        while time.monotonic() < deadline:
            assert up.poll() is None, f"polaris up exited with {up.returncode}"
            try:
                if token is None and creds_file.exists():
                    creds = json.loads(creds_file.read_text())
                    r = client.post("/api/admin/v1/auth/token", headers=admin,
                                    json={"email": creds["admin_email"], "password": creds["admin_password"],
                                          "name": "test_up"})
                    assert r.status_code in (201, 503), r.text  # 503: the database is not ready yet
                    if r.status_code == 201:
                        token = r.json()["token"]
                if token is not None:
                    r = client.get("/api/admin/v1/chargers", headers={**admin, "Authorization": f"Bearer {token}"})
                    last = r.json()
                    for charger in last["items"]:
                        if any(c["status"] == "Charging" for c in charger["connectors"]):
                            return charger
            except httpx.HTTPError as exc:
                last = repr(exc)  # not listening yet
            time.sleep(1)
    raise AssertionError(f"no simulated charger was charging within {deadline_s:.0f} s; last: {last}")


def _run_up_once(workdir: Path, env: dict[str, str], web_port: int, log: Path) -> str:
    with log.open("a") as err:
        up = subprocess.Popen([sys.executable, "-c", RUN_UP], cwd=workdir, env=env,
                              stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            charger = _wait_until_charging(f"http://127.0.0.1:{web_port}", workdir / ".polaris" / "demo-credentials.json",
                                           up, deadline_s=150)
            assert httpx.get(f"http://127.0.0.1:{web_port}/healthz", timeout=5).json()["status"] == "ok"
            up.send_signal(signal.SIGINT)
            out, _ = up.communicate(timeout=60)
        finally:
            if up.poll() is None:
                up.kill()
                up.wait()
    assert up.returncode == 0, log.read_text()[-3000:]
    assert "Polaris Express is running locally" in out
    # Every child and the embedded Postgres are gone (Postgres stops once its last user exits).
    deadline = time.monotonic() + 30
    while (left := _processes_under(workdir)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == [], left
    return charger["charge_box_id"]


def test_up_runs_with_a_dash_password_and_again_in_the_same_directory(tmp_path):
    workdir = tmp_path / "checkout"
    workdir.mkdir()
    names = ("web", "ocpp", "api", "lago", "metrics")
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    env = _env(ports)
    log = tmp_path / "up.log"

    first = _run_up_once(workdir, env, ports["web"], log)
    creds = json.loads((workdir / ".polaris" / "demo-credentials.json").read_text())
    assert creds["charger_password"].startswith("-")
    # The reuse path: same data dir, same saved password, no reseeding.
    second = _run_up_once(workdir, env, ports["web"], log)
    assert json.loads((workdir / ".polaris" / "demo-credentials.json").read_text()) == creds
    assert first.startswith("SIM-") and second.startswith("SIM-")


def test_a_child_that_fails_says_why_last(tmp_path):
    # The web port is taken: web dies at start-up; the cause and the next step are the last lines.
    workdir = tmp_path / "checkout"
    workdir.mkdir()
    names = ("web", "ocpp", "api", "lago", "metrics")
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    blocker = socket.socket()
    blocker.bind(("0.0.0.0", ports["web"]))
    blocker.listen()
    try:
        proc = subprocess.run([sys.executable, "-m", "polaris", "up", "--no-sim"], cwd=workdir, env=_env(ports),
                              capture_output=True, text=True, timeout=180)
    finally:
        blocker.close()
    assert proc.returncode == 1
    tail = proc.stderr.strip().splitlines()[-3:]
    assert tail[0].startswith("polaris up: web exited at start-up (exit code"), proc.stderr[-3000:]
    assert tail[1].startswith("polaris up: web said:") and "address" in tail[1].lower()
    assert tail[2].startswith("polaris up: next:") and "WEB_PORT" in tail[2]


def test_the_cause_is_the_last_line_that_reads_like_an_error():
    assert last_error_line(["usage: polaris sim ...", "polaris sim: error: argument --password: expected one argument"]) \
        == "polaris sim: error: argument --password: expected one argument"
    assert last_error_line(['{"event": "listening"}', '{"event": "boom", "level": "error"}', "bye"]) \
        == '{"event": "boom", "level": "error"}'
    assert last_error_line(["just this"]) == "just this"
    assert last_error_line([]) is None
