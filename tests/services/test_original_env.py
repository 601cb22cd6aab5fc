"""The original product's `.env` works: `polaris web` starts with the values of its
`.env.example` (vladzaharia/expressync, secrets filled in) and serves, naming once what it
reads under another name and what it does not use; `polaris doctor --env` reviews the file."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import httpx

from polaris.config import Settings

# The assignments of the original's .env.example (latest version), in its order; the
# placeholders of the four secrets are replaced by values as an operator would have them.
ORIGINAL_ENV = [
    ("DATABASE_URL", "postgresql://user:password@localhost:5432/ocpp_billing"),
    ("POSTGRES_DB", "ocpp_billing"),
    ("POSTGRES_PASSWORD", "ocpp_password"),
    ("POSTGRES_USER", "ocpp_user"),
    ("STEVE_BASE_URL", "http://localhost:8080/steve"),
    ("STEVE_API_USERNAME", "admin"),
    ("STEVE_API_KEY", "Zq8v2LmN4pR7sT1w"),  # 16 characters: the original accepted it
    ("LAGO_API_URL", "https://api.getlago.com"),
    ("LAGO_API_KEY", "3f0c9a8e-61d2-4b7f-9e15-c2a4d8b6f013"),
    ("LAGO_DASHBOARD_URL", "https://app.getlago.com"),
    ("LAGO_METRIC_CODE", "ev_charging_kwh"),
    ("PORT", "8000"),
    ("DENO_ENV", "development"),
    ("DEBUG_LEVEL", "ERROR"),
    ("SYNC_ON_STARTUP", "false"),
    ("SYNC_LOOKBACK_MINUTES", "10080"),
    ("SYNC_DORMANT_THRESHOLD_DAYS", "30"),
    ("SYNC_IDLE_HYSTERESIS_TICKS", "2"),
    ("DOCKER_SOCKET_PATH", "/var/run/docker.sock"),
    ("STEVE_CONTAINER_NAME", "steve"),
    ("AUTH_SECRET", "k7Hq2Xv9Lp4Rt8Wz1Mn6Bc3D"),  # 24 characters
    ("AUTH_URL", "http://localhost:8000"),
    # In the original's config.ts (not its .env.example): the pre-authorize hook's key.
    ("STEVE_PREAUTH_HMAC_KEY", "h5Jd8Kf2Ls9Qa4We7Rt1Yu3I"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_env(path, **changes) -> None:
    lines = [f"{k}={changes.get(k, v)}" for k, v in ORIGINAL_ENV]
    path.write_text("# the original product's .env\n" + "\n".join(lines) + "\n")


def clean_environ() -> dict[str, str]:
    originals = {k for k, _ in ORIGINAL_ENV}
    return {k: v for k, v in os.environ.items() if k not in Settings.model_fields and k not in originals}


async def test_polaris_web_starts_and_serves_with_the_original_env(db_dsn, tmp_path):
    port = _free_port()
    # The two values an operator changes for this host: where Postgres is, and a free port.
    write_env(tmp_path / ".env", DATABASE_URL=db_dsn, PORT=str(port))
    env = {**clean_environ(), "WEB_METRICS_PORT": str(_free_port())}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "polaris", "web", "--host", "127.0.0.1", env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient() as http:
            resp = None
            for _ in range(150):
                if proc.returncode is not None:
                    break
                try:
                    resp = await http.get(f"http://127.0.0.1:{port}/readyz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            assert resp is not None and resp.status_code == 200  # PORT was read as WEB_PORT
            signin = await http.get(f"http://127.0.0.1:{port}/signin", headers={"Host": "localhost:8000"})
            assert signin.status_code == 200 and "<form" in signin.text  # AUTH_URL is the portal's URL
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = err.decode()
    assert proc.returncode == 0, text[-2000:]
    # One line each, even at the original's DEBUG_LEVEL=ERROR, and no value shown.
    for name in ("DENO_ENV", "DOCKER_SOCKET_PATH", "STEVE_CONTAINER_NAME"):
        assert text.count(f"{name} is not used here") == 1, text[-3000:]
    assert "PORT (the original's name) is read as WEB_PORT" in text
    assert "AUTH_SECRET is 24 characters, shorter than the 32 recommended" in text
    assert "STEVE_API_KEY is 16 characters" in text
    assert "k7Hq2Xv9Lp4Rt8Wz1Mn6Bc3D" not in text and "Zq8v2LmN4pR7sT1w" not in text
    assert "web starting" not in text  # DEBUG_LEVEL=ERROR was honoured: info lines are off


async def test_doctor_env_says_what_to_change_line_by_line(tmp_path):
    write_env(tmp_path / "original.env")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "polaris", "doctor", "--env", str(tmp_path / "original.env"),
        env=clean_environ(), cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 1, err.decode()
    lines = text.splitlines()
    # Line numbers count the comment at the top: the first assignment is line 2.
    assert "  line 2: DATABASE_URL: REMOVE: points at this machine" in text
    assert any(line.startswith("  line 13: PORT: RENAME:") and "WEB_PORT" in line for line in lines)
    assert any(line.startswith("  line 15: DEBUG_LEVEL: RENAME:") and "LOG_LEVEL" in line for line in lines)
    assert any(line.startswith("  line 23: AUTH_URL: RENAME:") and "CUSTOMER_BASE_URL" in line for line in lines)
    assert "  line 14: DENO_ENV: REMOVE: not used here" in text
    assert "  line 20: DOCKER_SOCKET_PATH: REMOVE: not used here" in text
    assert any(line.startswith("  line 22: AUTH_SECRET: CHANGE: 24 characters") for line in lines)
    assert "  line 12: LAGO_METRIC_CODE: KEEP: same name and meaning here" in text
    for name in ("ADMIN_BASE_URL", "COOKIE_DOMAIN", "OCPP_HOST", "EMAIL_FROM", "CHARGING_POLICY"):
        assert f"  add: {name}: ADD: " in text
    assert "k7Hq2Xv9Lp4Rt8Wz1Mn6Bc3D" not in text  # values are never shown
    # Ours, as deploy/.env.example fills it: nothing to rename or remove.
    ours = tmp_path / "ours.env"
    ours.write_text("AUTH_SECRET=" + "ab12" * 16 + "\nLOG_LEVEL=INFO\nWEB_PORT=8000\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "polaris", "doctor", "--env", str(ours),
        env=clean_environ(), cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert "RENAME" not in out.decode() and "REMOVE" not in out.decode()
    assert "line 1: AUTH_SECRET: KEEP: set" in out.decode()
