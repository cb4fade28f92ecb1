"""``consultd`` command line: ``serve`` and ``migrate``."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from pathlib import Path

from consultd import __version__, logs
from consultd.config import ENV_HELP, Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="consultd",
        description="Real-time consult rooms for physicians.",
        epilog=ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"consultd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir", type=Path, help="where the SQLite store and server key live (default ./data)"
    )
    common.add_argument(
        "--database-url",
        help="sqlite:///PATH (default: DATA_DIR/consultd.sqlite3) or postgresql://USER@HOST:PORT/DB",
    )

    serve = sub.add_parser(
        "serve",
        parents=[common],
        help="run the server",
        description="Run the consultd server (HTTP API, socket.io, browser client) on one port. "
        "Migrations are applied on start.",
        epilog=ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, help="port to listen on (default 8080; 0 picks a free one)"
    )
    serve.add_argument("--redis-url", help="reserved for scale-out (room affinity directory)")
    serve.add_argument(
        "--public-origin", help="the origin browsers use, e.g. https://consult.example.org"
    )
    serve.add_argument(
        "--secure-cookies", action="store_true", default=None, help="mark cookies Secure (HTTPS)"
    )
    serve.add_argument(
        "--grace-s", type=float, help="seconds a dropped participant stays 'reconnecting' (30)"
    )
    serve.add_argument(
        "--ice-servers",
        help='STUN/TURN servers for calls, JSON: [{"urls": [...], "username"?, "credential"?}] '
        "(default none: nothing outside is contacted)",
    )
    serve.add_argument(
        "--rtc-host-addresses",
        help="comma-separated addresses the SFU gathers ICE candidates on (default: every "
        "interface but loopback)",
    )
    serve.add_argument(
        "--rtc-announced-ip", help="public address written into the SFU's candidates (1:1 NAT)"
    )
    serve.add_argument("--rtc-ports", help="UDP port range of the SFU, MIN-MAX (default any)")
    serve.add_argument(
        "--max-publishers", type=int, help="participants publishing media at once per room (16)"
    )
    serve.add_argument(
        "--room-max-bitrate", type=int, help="total publisher bitrate per room, bits/s (20000000)"
    )
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING (INFO)")

    sub.add_parser("migrate", parents=[common], help="apply database migrations and exit")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k != "command" and v is not None}
    settings = Settings.from_env(**overrides)
    if args.command == "serve":
        from consultd.calls.config import MediaConfig

        try:
            MediaConfig.from_settings(settings)
        except ValueError as exc:
            _parser().error(str(exc))  # exits 2 with the setting named
    logs.configure(settings.log_level)
    if args.command == "migrate":
        asyncio.run(_migrate(settings))
    else:
        _serve(settings)


async def _migrate(settings: Settings) -> None:
    from consultd.store.db import Database

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    await db.migrate()
    await db.close()
    print("migrations applied")


def _serve(settings: Settings) -> None:
    from aiohttp import web

    from consultd.app import create_app

    app = create_app(settings)
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    host, port = sock.getsockname()[:2]
    # Tests and the bench read this line to find a --port 0 server.
    print(f"consultd listening on http://{host}:{port}", flush=True)
    loop = None
    if os.environ.get("CONSULTD_EVENT_LOOP", "uvloop") == "uvloop":
        import uvloop

        # libuv's loop: about half the CPU of asyncio's per socket operation (README).
        loop = uvloop.new_event_loop()
    web.run_app(app, sock=sock, print=None, shutdown_timeout=10, handle_signals=True, loop=loop)


if __name__ == "__main__":
    main(sys.argv[1:])
