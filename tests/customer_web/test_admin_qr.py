"""`polaris admin charger qr`: terminal, PNG and SVG output of the charger page's QR code."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import segno

from polaris.db.repos import charge_boxes


def polaris(*args, env, cwd):
    base = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run([sys.executable, "-m", "polaris", *args], capture_output=True, text=True,
                           env={**base, **env}, cwd=cwd, timeout=60)


async def test_qr_terminal_png_svg_and_unknown(db_dsn, pool, tmp_path):
    async with pool.acquire() as conn:
        row = (await charge_boxes.add_charge_boxes(conn, ["QR-1"], "charger-key-0123456789"))[0]
    env = {"DATABASE_URL": db_dsn, "CUSTOMER_BASE_URL": "https://charge.example.com"}
    url = f"https://charge.example.com/c/{row['public_id']}"

    r = polaris("admin", "charger", "qr", "QR-1", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.rstrip().endswith(url)
    # The code printed is exactly the code of the charger page's URL.
    expected = io.StringIO()
    segno.make(url, error="m", micro=False).terminal(out=expected, compact=True)
    assert r.stdout.startswith(expected.getvalue())

    r = polaris("admin", "charger", "qr", "QR-1", "--png", str(tmp_path / "qr.png"), env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "qr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = polaris("admin", "charger", "qr", "QR-1", "--svg", str(tmp_path / "qr.svg"), env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "<svg" in (tmp_path / "qr.svg").read_text()

    r = polaris("admin", "charger", "qr", "NOPE", env=env, cwd=tmp_path)
    assert r.returncode == 1 and "no charger NOPE" in r.stderr
    r = polaris("admin", "charger", "qr", "QR-1", "--png", str(tmp_path / "no" / "dir.png"), env=env, cwd=tmp_path)
    assert r.returncode == 1 and "cannot write" in r.stderr and "Traceback" not in r.stderr


async def test_customer_invite_queues_a_24_hour_link(db_dsn, pool, tmp_path):
    from polaris.db.repos import customers

    async with pool.acquire() as conn:
        await customers.add_customer(conn, "new@example.com", name="Newt")
    env = {"DATABASE_URL": db_dsn}
    r = polaris("admin", "customer", "invite", "New@Example.com", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "invitation for new@example.com queued" in r.stdout and "polaris admin outbox" in r.stdout
    async with pool.acquire() as conn:
        mail = await conn.fetchrow("SELECT subject, text FROM app.email_outbox WHERE to_address = 'new@example.com'")
        link = await conn.fetchrow("SELECT purpose, expires_at - created_at AS ttl FROM app.magic_links")
    assert "invited" in mail["text"] and "/auth/link/" in mail["text"] and "1440 minutes" in mail["text"]
    assert link["purpose"] == "invite" and link["ttl"].total_seconds() == 86400
    r = polaris("admin", "customer", "invite", "ghost@example.com", env=env, cwd=tmp_path)
    assert r.returncode == 1 and "no active customer" in r.stderr
