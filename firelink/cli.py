"""The `firelink` command line: `run` (the whole system) plus each part's own commands.

Every command reads the same configuration (`--config`, `$FIRELINK_CONFIG`, config/firelink.yaml, embedded
defaults) and names its handler (``set_defaults(handler=...)``): no command list to keep in step.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys

from config.loader import ConfigError, load
from config.schema import FirelinkConfig
from detectors import cli as detectors_cli
from dispatch import cli as dispatch_cli
from dispatch import logsetup
from dispatch.camera_leases import worker_assignment

# The cyclic GC, set for latency. A burst allocates many short-lived ORM/JSON objects: with the default thresholds
# it ran full collections under load (bench, 1,000 alarms/s: p99 ~1 s); with young collections every 100,000 net
# allocations each took 20-45 ms (a few per 15 s); every 10,000 they take ~2 ms (bench/README.md, session 10).
# The heap built at start-up is frozen out of every collection once the core is up (`_freeze_startup_heap`).
gc.set_threshold(10_000, 50, 1000)

CONFIG_HELP = "YAML config (default: $FIRELINK_CONFIG, config/firelink.yaml, embedded)"


async def _freeze_startup_heap(_app: object) -> None:
    gc.collect()
    gc.freeze()


def cmd_run(cfg: FirelinkConfig, _args: argparse.Namespace) -> int:
    from aiohttp import web

    from dispatch.lease import LeaseHeld
    from firelink.app import create_app
    from notify.channels import CHANNELS, ChannelConfigError

    try:
        CHANNELS.check(cfg)  # a configured channel nobody provides: refuse before anything starts
    except ChannelConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2

    # paho's network thread and the event loop share the GIL: hand it over every 0.5 ms instead of
    # 5 ms, so a burst being parsed does not hold up commits and WebSocket pushes (measured in bench/).
    sys.setswitchinterval(0.0005)
    lost: list[bool] = []

    def lease_lost() -> None:  # another core took the database over: stop (cleanly) and exit non-zero
        lost.append(True)
        os.kill(os.getpid(), signal.SIGTERM)

    app = create_app(cfg, on_lease_lost=lease_lost)
    app.on_startup.append(_freeze_startup_heap)  # after every start-up context (they run first)
    try:
        web.run_app(app, host=cfg.console.host, port=cfg.console.port, print=None, access_log=None,
                    handle_signals=True)
    except LeaseHeld as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 3
    if lost:
        print("error: stopped: another core took over this database (core lease lost)", file=sys.stderr)
        return 3
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="firelink", description="Firelink alarm & dispatch command system")
    p.add_argument("--config", help=CONFIG_HELP)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the core, MQTT ingest and the web console").set_defaults(handler=cmd_run)
    dispatch_cli.add_commands(sub)  # press, user add, db upgrade, audit verify
    # detect-image, detect-video, detect (worker; cluster mode: by camera lease), train, train-verifier
    detectors_cli.add_commands(sub, camera_assignment=worker_assignment)
    _config_everywhere(p)
    return p


def _config_everywhere(parser: argparse.ArgumentParser) -> None:
    """`--config FILE` is accepted after the command too (`firelink run --config FILE`), as users type it.

    The sub-command's option has no default of its own (SUPPRESS), so it never overwrites one given
    before the command.
    """
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                if not any("--config" in a.option_strings for a in child._actions):
                    child.add_argument("--config", default=argparse.SUPPRESS, help=CONFIG_HELP)
                _config_everywhere(child)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        cfg, source = load(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logsetup.configure(cfg.log_level)
    if args.command == "run":
        print(f"config: {source}", flush=True)
    code: int = args.handler(cfg, args)
    return code


if __name__ == "__main__":
    sys.exit(main())
