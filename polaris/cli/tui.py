"""`polaris tui`: the operator console, and `polaris tui logout`."""

from __future__ import annotations

import argparse
import os

from polaris.cli.errors import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tui",
        help="operator console in the terminal (talks to the admin API)",
        description="Run the network from a terminal. Signs in with email + password (or a browser "
        "device login) and keeps the token in your config dir (mode 0600); POLARIS_ADMIN_TOKEN "
        "overrides it. `polaris tui logout` forgets the token.",
    )
    p.add_argument("--url", help="admin API base URL (default: ADMIN_BASE_URL)")
    p.add_argument("--no-mouse", action="store_true", help="turn mouse tracking off (kinder to slow SSH links)")
    p.add_argument("action", nargs="?", choices=["logout"], help="logout: forget the stored token")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Textual is imported here, not at module level, so `polaris --help` stays fast.
    from polaris.tui.credentials import TokenStore, token_from_env

    settings = args.settings
    url = (args.url or settings.ADMIN_BASE_URL).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise CommandError(f"--url must start with http:// or https:// (got {url!r})")
    store = TokenStore()
    if args.action == "logout":
        stored = store.load(url)
        revoked = _revoke(url, stored.token) if stored else None
        removed = store.forget(url)
        print(f"signed out of {url}" if removed else f"no stored token for {url}")
        if revoked is not None:
            print(revoked)
        return 0

    os.environ.setdefault("TEXTUAL_FPS", "30")  # fewer repaints: kinder to a slow SSH link
    from polaris.tui.app import PolarisApp

    env_token = token_from_env()
    stored = store.load(url)
    token = env_token or (stored.token if stored else None)
    app = PolarisApp(
        url,
        token=token,
        token_store=None if env_token else store,
        lago_dashboard_url=settings.LAGO_DASHBOARD_URL,
    )
    app.run(mouse=not args.no_mouse)
    return 0


def _revoke(url: str, token: str) -> str:
    """Best effort: revoke the token on the server too, so a copied file is worthless."""
    import asyncio

    from polaris.tui.api_client import AdminClient, ApiError, ApiUnreachable

    async def go() -> str:
        async with AdminClient(url, token, timeout=5.0) as api:
            await api.logout()
        return "token revoked on the server"

    try:
        return asyncio.run(go())
    except (ApiError, ApiUnreachable) as exc:
        return f"token not revoked on the server ({exc}); it stays valid until it expires or an admin revokes it"
