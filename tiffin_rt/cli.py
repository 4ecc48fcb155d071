"""tiffin-rt: serve, db upgrade|downgrade|status|psql, token, check-config, demo simulate,
push keys."""

from __future__ import annotations

import argparse
import asyncio
import errno
import shutil
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from tiffin_rt.auth import ROLES, AuthError, mint_token
from tiffin_rt.config import ConfigError, Settings, load_settings, metrics_exposure_problem
from tiffin_rt.db import migrate
from tiffin_rt.db.embedded import EmbeddedPostgres, bundled_program

EXIT_USAGE = 2
EXIT_STOPPED = 128 + signal.SIGTERM
DEFAULT_CONFIG = Path("config.yaml")
T = TypeVar("T")


class CliError(Exception):
    """Printed as one line on stderr; the command exits with status 2."""


class Stopped(Exception):
    """SIGTERM or SIGHUP ended the command after its cleanup ran."""


# A polite stop ends a command as Ctrl-C does: its coroutine is cancelled, so every `finally`
# runs (connections closed, the embedded PostgreSQL let go). Python's default for these
# signals ends the process on the spot, which left its pid in the embedded server's handles.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, with SIGTERM/SIGHUP cancelling `main`; raises Stopped after its cleanup."""

    async def until_stopped() -> T:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        stopped: list[int] = []

        def stop(signum: int) -> None:
            stopped.append(signum)
            task.cancel()

        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, stop, signum)
        try:
            return await main
        except asyncio.CancelledError:
            if stopped:
                raise Stopped(signal.Signals(stopped[0]).name) from None
            raise
        finally:
            for signum in STOP_SIGNALS:
                loop.remove_signal_handler(signum)

    return asyncio.run(until_stopped())


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        metavar="PATH",
        help="YAML configuration file (default: %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tiffin-rt",
        description="Real-time order, notification and chat events from PostgreSQL "
        "to Socket.IO and Server-Sent Events.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve", help="run the server", description="Run the HTTP, SSE and Socket.IO server."
    )
    _add_config(serve)
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port")

    db = sub.add_parser(
        "db",
        help="install, remove or inspect the schema and triggers",
        description="Manage the tiffin_rt schema and the orders-table triggers.",
    )
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    for name, text in (
        ("upgrade", "apply pending migrations and install the triggers (idempotent)"),
        ("downgrade", "remove the triggers and the tiffin_rt schema; orders stay untouched"),
        ("status", "show the installed version, pending migrations and triggered tables"),
    ):
        _add_config(db_sub.add_parser(name, help=text, description=text))
    text = (
        "open psql on the configured database (the embedded one is started, and stopped when"
        " psql exits, unless another process still uses it)"
    )
    psql = db_sub.add_parser("psql", help=text, description=text)
    _add_config(psql)
    psql.add_argument(
        "psql_args",
        nargs=argparse.REMAINDER,
        metavar="-- ARGS",
        help="passed on to psql, e.g. -- -c 'SELECT count(*) FROM tiffin_rt.events'",
    )

    token = sub.add_parser(
        "token",
        help="mint a JWT from the configured secret (local use)",
        description="Print a signed JWT for local testing.",
    )
    _add_config(token)
    token.add_argument("--sub", required=True, help="user id")
    token.add_argument("--role", required=True, choices=ROLES)
    token.add_argument("--vendor-id", help="vendor id (required for --role kitchen)")
    token.add_argument(
        "--ttl", type=int, default=3600, help="lifetime in seconds (default: %(default)s)"
    )

    demo = sub.add_parser(
        "demo", help="demo helpers", description="Helpers for watching the demo page."
    )
    demo_sub = demo.add_subparsers(dest="demo_command", required=True, metavar="ACTION")
    text = "advance demo orders one status at a time, as an order backend would (UPDATE orders)"
    simulate = demo_sub.add_parser("simulate", help=text, description=text)
    _add_config(simulate)
    simulate.add_argument(
        "--interval", type=float, default=3.0, help="seconds between steps (default: %(default)s)"
    )
    simulate.add_argument("--steps", type=int, help="stop after this many steps (default: never)")
    simulate.add_argument(
        "--ride-steps",
        type=int,
        default=12,
        help="positions a rider sends on the way from the kitchen to the door, about one a"
        " second, before a ready order is delivered; 0: no riders (default: %(default)s)",
    )
    simulate.add_argument(
        "--url",
        help="the server the riders connect to (default: http://<server.host>:<server.port>)",
    )

    push = sub.add_parser(
        "push", help="Web Push helpers", description="Web Push (push: in config.yaml)."
    )
    push_sub = push.add_subparsers(dest="push_command", required=True, metavar="ACTION")
    text = "print a new VAPID key pair for push.vapid_private_key (keep the private key secret)"
    push_sub.add_parser("keys", help=text, description=text)

    check = sub.add_parser(
        "check-config",
        help="validate a configuration file",
        description="Validate the configuration and print a summary.",
    )
    _add_config(check)
    return parser


def _settings(path: Path) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


async def _with_connection(
    settings: Settings, action: Callable[[asyncpg.Connection], Awaitable[T]]
) -> T:
    embedded = None
    dsn = settings.database.dsn
    if not dsn:
        embedded = EmbeddedPostgres(data_dir=settings.database.embedded_dir)
        dsn = await asyncio.to_thread(embedded.start)
    try:
        try:
            conn = await asyncpg.connect(dsn, timeout=10)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise CliError(f"database.dsn: cannot connect: {exc}") from None
        try:
            return await action(conn)
        finally:
            await conn.close()
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


def _psql(settings: Settings, psql_args: list[str]) -> int:
    """Run psql in the foreground on the configured (or embedded) database."""
    program = str(bundled_program("psql"))
    if not Path(program).exists():
        program = shutil.which("psql") or program
    embedded = None
    dsn = settings.database.dsn
    if not dsn:
        embedded = EmbeddedPostgres(data_dir=settings.database.embedded_dir)
        dsn = embedded.start()
    # psql owns the terminal: Ctrl-C cancels its query, not this process (a handler, not
    # SIG_IGN, which psql would inherit)
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: None)
    try:
        args = psql_args[1:] if psql_args[:1] == ["--"] else psql_args
        return subprocess.run([program, dsn, *args], check=False).returncode
    except OSError as exc:
        raise CliError(f"db psql: cannot run {program}: {exc.strerror or exc}") from None
    finally:
        signal.signal(signal.SIGINT, previous)
        if embedded is not None:
            embedded.stop()


def _cmd_db(args: argparse.Namespace) -> int:
    settings = _settings(args.config)
    if args.db_command == "psql":
        return _psql(settings, args.psql_args)

    async def upgrade(conn: asyncpg.Connection) -> None:
        applied = await migrate.upgrade(
            conn, settings.orders, settings.payments, settings.batching
        )
        print("applied: " + ", ".join(applied) if applied else "up to date")
        print(f"triggers installed on {settings.orders.table}")
        if settings.payments.enabled:
            print(f"payment triggers installed on {settings.payments.table}")

    async def downgrade(conn: asyncpg.Connection) -> None:
        removed = await migrate.downgrade(conn)
        print("removed: " + ", ".join(removed) if removed else "nothing installed")

    async def status(conn: asyncpg.Connection) -> None:
        state = await migrate.status(conn)
        print(f"schema version: {state.current_version} (latest {state.latest_version})")
        print("pending: " + (", ".join(state.pending) or "none"))
        print("triggers on: " + (", ".join(state.trigger_tables) or "no table"))
        print(f"events in log: {state.event_count}")

    actions = {"upgrade": upgrade, "downgrade": downgrade, "status": status}
    try:
        _run(_with_connection(settings, actions[args.db_command]))
    except migrate.SchemaError as exc:
        raise CliError(str(exc)) from None
    except Stopped as exc:
        print(f"tiffin-rt: db {args.db_command}: stopped by {exc}", file=sys.stderr)
        return EXIT_STOPPED
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    settings = _settings(args.config)
    if args.role == "kitchen" and not args.vendor_id:
        raise CliError("--vendor-id is required for --role kitchen")
    try:
        print(
            mint_token(
                settings.auth, sub=args.sub, role=args.role, vendor_id=args.vendor_id, ttl=args.ttl
            )
        )
    except AuthError as exc:
        raise CliError(exc.message) from None
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from tiffin_rt.demo import RIDE_PACE, Ride, Step, simulate
    from tiffin_rt.demo_riders import DemoRiders, RiderUnreachable

    settings = _settings(args.config)
    if args.interval <= 0 or (args.steps is not None and args.steps < 1):
        raise CliError("--interval must be positive and --steps at least 1")
    if args.ride_steps < 0:
        raise CliError("--ride-steps must be 0 or more")
    host = settings.server.host
    if host in ("", "0.0.0.0", "::"):  # listening everywhere: reach it on this machine
        host = "127.0.0.1"
    url = args.url or f"http://{host}:{settings.server.port}"

    def report(step: Step) -> None:
        who = f" ({step.customer_id})" if step.customer_id else ""
        print(f"order {step.order_id}: {step.status}{who}", flush=True)

    riders = DemoRiders(url, settings.auth, report=lambda line: print(line, flush=True))
    riding = args.ride_steps > 0 and settings.tracking.enabled

    async def ride(due: Ride) -> None:
        nonlocal riding
        if not riding:
            return
        try:
            await riders.ride(
                due.order_id,
                due.rider_id,
                due.start,
                due.end,
                steps=args.ride_steps,
                pace=RIDE_PACE,
            )
        except RiderUnreachable as exc:
            riding = False
            print(f"demo simulate: {exc}; orders move on without riders", file=sys.stderr)

    async def run(conn: asyncpg.Connection) -> int:
        try:
            return await simulate(
                conn,
                settings.orders,
                interval=args.interval,
                steps=args.steps,
                report=report,
                ride=ride,
            )
        finally:
            await riders.close()

    try:
        _run(_with_connection(settings, run))
    except (asyncpg.PostgresError, OSError) as exc:
        raise CliError(f"demo simulate: {exc}") from None
    except Stopped:
        pass  # the usual way to end a simulation that runs until stopped
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from tiffin_rt.push.vapid import generate_keys

    keys = generate_keys()
    print("# config.yaml (or TIFFIN_RT__PUSH__VAPID_PRIVATE_KEY); the private key is a secret")
    print("push:")
    print("  enabled: true")
    print(f'  vapid_private_key: "{keys.private_key}"')
    print('  vapid_subject: "mailto:ops@example.com"  # a contact for push services')
    print("# public key (the applicationServerKey, served at /api/push/vapid-public-key):")
    print(f"#   {keys.public_key}")
    return 0


def _cmd_check_config(args: argparse.Namespace) -> int:
    settings = _settings(args.config)
    where = (
        settings.database.dsn.split("@")[-1]
        if settings.database.dsn
        else (f"embedded PostgreSQL in {settings.database.embedded_dir}")
    )
    print(f"{args.config}: ok")
    print(f"  listen on {settings.server.host}:{settings.server.port}")
    print(f"  database: {where}")
    print(f"  orders table: {settings.orders.table}")
    payments = settings.payments
    print(f"  payments table: {payments.table or 'none (payments.table is empty)'}")
    webhook = "on" if payments.webhook_secret.get_secret_value() else "off (no webhook_secret)"
    print(f"  payment webhook: {webhook}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from tiffin_rt.server import serve

    settings = _settings(args.config)
    overrides = {}
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if overrides:
        settings = settings.model_copy(
            update={"server": settings.server.model_copy(update=overrides)}
        )
        problem = metrics_exposure_problem(settings)
        if problem is not None:
            raise CliError(f"--host {settings.server.host}: {problem}")
    try:
        serve(settings)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CliError(
                f"server.port: {settings.server.host}:{settings.server.port} is already in use"
            ) from None
        raise CliError(
            f"cannot listen on {settings.server.host}:{settings.server.port}: {exc.strerror or exc}"
        ) from None
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": _cmd_serve,
    "db": _cmd_db,
    "token": _cmd_token,
    "check-config": _cmd_check_config,
    "demo": _cmd_demo,
    "push": _cmd_push,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CliError as exc:
        print(f"tiffin-rt: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
