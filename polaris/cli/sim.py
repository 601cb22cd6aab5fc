"""`polaris sim`: a fleet of simulated OCPP 1.6J and 2.0.1 chargers (demos, smoke tests, benchmarks)."""

from __future__ import annotations

import argparse
import asyncio
import signal

from polaris.cli.errors import CommandError
from polaris.sim.charger import OCPP_VERSIONS
from polaris.sim.errors import SimError
from polaris.sim.fleet import FleetOptions, run_fleet
from polaris.sim.quirks import QUIRKS, check_quirks


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sim",
        help="run simulated chargers against an OCPP server",
        description="Simulated OCPP 1.6J / 2.0.1 chargers: charger k is PREFIX + 4-digit k from 0001, connecting to "
        "WS_URL/<id> with HTTP Basic auth. They boot, heartbeat, run charging sessions with meter values, "
        "and answer every remote operation. SIGTERM or Ctrl-C ends running sessions and exits.",
    )
    p.add_argument("--url", required=True, metavar="WS_URL", help="server URL without the id, e.g. ws://127.0.0.1:8080/ocpp")
    p.add_argument("--chargers", type=int, default=1, metavar="N", help="how many chargers (default 1)")
    p.add_argument("--id-prefix", default="SIM-", metavar="P", help="charge box id prefix (default SIM-)")
    p.add_argument("--first", type=int, default=1, metavar="K", help="number of the first charger (default 1)")
    p.add_argument("--password", default=None, metavar="PW", help="the chargers' key (HTTP Basic password)")
    p.add_argument("--tag", default="SIMTAG0001", metavar="ID_TAG",
                   help="id tag presented for sessions; a comma-separated list gives charger k the k-th (in turn)")
    p.add_argument("--connectors", type=int, default=1, metavar="N", help="connectors per charger (default 1)")
    p.add_argument("--no-sessions", action="store_true", help="no sessions of their own (remote starts still work)")
    p.add_argument("--session-seconds", type=float, default=900, metavar="S", help="mean session length (default 900)")
    p.add_argument("--idle-seconds", type=float, default=300, metavar="S", help="mean idle gap between sessions (default 300)")
    p.add_argument("--meter-interval", type=int, default=60, metavar="S", help="seconds between meter values (default 60)")
    p.add_argument("--heartbeat-interval", type=int, default=None, metavar="S", help="override the server's interval")
    p.add_argument("--ramp", type=float, default=100, metavar="R", help="chargers connecting per second (default 100)")
    p.add_argument("--ocpp", default="1.6", metavar="V[,V...]",
                   help="OCPP version(s): 1.6 or 2.0.1; a comma-separated list gives charger k the k-th in turn "
                        "(a mixed fleet, e.g. 1.6,2.0.1); default 1.6")
    p.add_argument(
        "--quirks",
        default="",
        metavar="Q,...",
        help="misbehave like some real chargers: " + "; ".join(f"{k}: {v}" for k, v in QUIRKS.items()),
    )
    p.set_defaults(func=run)


def options_from_args(args: argparse.Namespace) -> FleetOptions:
    if args.chargers < 1 or args.chargers + args.first - 1 > 9999:
        raise CommandError("--chargers must be between 1 and 9999 (ids have four digits)")
    if args.connectors < 1:
        raise CommandError("--connectors must be at least 1")
    if not args.url.startswith(("ws://", "wss://")):
        raise CommandError(f"--url must start with ws:// or wss:// (got {args.url!r})")
    if args.password is not None and not args.password:
        raise CommandError("--password must not be empty (leave it out to connect without credentials)")
    tags = [t.strip() for t in args.tag.split(",")]
    if not all(1 <= len(t) <= 20 for t in tags):
        raise CommandError(f"--tag: each id tag is 1 to 20 characters (got {args.tag!r})")
    versions = tuple(v.strip() for v in args.ocpp.split(",") if v.strip())
    unknown = [v for v in versions if v not in OCPP_VERSIONS]
    if not versions or unknown:
        raise CommandError(f"--ocpp: each version is one of {', '.join(OCPP_VERSIONS)} (got {args.ocpp!r})")
    try:
        quirks = check_quirks(q.strip() for q in args.quirks.split(",") if q.strip())
    except SimError as exc:
        raise CommandError(str(exc)) from None
    return FleetOptions(
        url=args.url,
        chargers=args.chargers,
        id_prefix=args.id_prefix,
        password=args.password,
        id_tag=",".join(tags),
        connectors=args.connectors,
        first=args.first,
        auto_sessions=not args.no_sessions,
        session_seconds=args.session_seconds,
        idle_seconds=args.idle_seconds,
        meter_interval=args.meter_interval,
        heartbeat_interval=args.heartbeat_interval,
        ramp=args.ramp,
        quirks=quirks,
        ocpp_versions=versions,
    )


def run(args: argparse.Namespace) -> int:
    opts = options_from_args(args)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_fleet(opts, stop)

    asyncio.run(main())
    return 0
