"""The ``loopwise`` command line: broker, up, worker, topics, produce, tail, schemas, simulate, detect."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from infra.settings import ConfigError, Settings

log = logging.getLogger("loopwise")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``loopwise`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser(command=next((a for a in argv if not a.startswith("-")), None))
    args, extra = parser.parse_known_args(argv)
    # argparse cannot put a positional after a flag into a list it already filled
    # (`produce TOPIC --raw FILE`): hand such leftovers to the command's positionals.
    if extra and hasattr(args, "target") and not any(item.startswith("-") for item in extra):
        args.target += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"loopwise: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr,
    )
    try:
        return int(args.run(args, settings) or 0)
    except KeyboardInterrupt:
        return 130
    except (ConfigError, LookupError, RuntimeError, OSError) as exc:
        print(f"loopwise: {exc}", file=sys.stderr)
        return 1


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``command`` (the subcommand about to run) loads that subcommand's heavy options only."""
    parser = argparse.ArgumentParser(
        prog="loopwise", description="Self-optimizing control plane for AI workflows on Kafka.",
        epilog="Configuration comes from the environment: see README.md, section Configuration.",
    )
    sub = parser.add_subparsers(metavar="COMMAND")

    broker = _command(sub, "broker", "run the embedded Kafka-protocol broker in the foreground", _run_broker)
    broker.add_argument("--port", type=int, default=None, help="port to listen on (default: LOOPWISE_BROKER_PORT or 9092)")

    up = _command(sub, "up", "broker (unless a cluster is given) + topics + worker, all in one; Ctrl-C stops all", _run_up)
    up.add_argument("--simulate", metavar="SCENARIO", help="also run the simulator's closed loop on this scenario")
    up.add_argument("--port", type=int, default=None, help="embedded broker port (default: a free one)")
    for flag, default, help_ in (("--duration", "20m", "simulated time (with --simulate)"),
                                 ("--rate", "100", "requests per simulated second (with --simulate)"),
                                 ("--speed", "10", "simulated seconds per wall second (with --simulate)"),
                                 ("--seed", "1", "random seed (with --simulate)")):
        up.add_argument(flag, default=default, help=help_)
    up.add_argument("--report", help="write the scorecard JSON here (with --simulate)")

    worker = _command(sub, "worker", "run a loopwise worker (Faust) against the configured cluster", _run_worker)
    worker.add_argument("--no-apply", action="store_true", help="do not create missing topics first")

    topics = sub.add_parser("topics", help="topics as code")
    topics_sub = topics.add_subparsers(metavar="ACTION")
    _command(topics_sub, "apply", "create missing topics; report any that differ from their declaration", _run_topics_apply)
    listing = _command(topics_sub, "list", "list topics with their partitions and configs", _run_topics_list)
    listing.add_argument("--all", action="store_true", help="include topics loopwise does not declare")

    produce = _command(sub, "produce", "send JSON lines to a topic, validated first", _run_produce)
    # One positional list: argparse cannot give an optional positional (FILE) after a flag otherwise.
    produce.add_argument("target", nargs="+", metavar="TOPIC [FILE|-]",
                         help="full topic name (e.g. lw.requests), then a JSON-lines file or - for stdin (default)")
    produce.add_argument("--raw", action="store_true", help="send each line's bytes unvalidated")
    produce.add_argument("--key", help="message key (default: the record's key field)")

    tail = _command(sub, "tail", "print a topic's records as JSON lines, whatever the wire format", _run_tail)
    tail.add_argument("topic", help="full topic name, e.g. lw.dlq")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest message")
    tail.add_argument("--max", type=int, default=None, help="stop after N records")
    tail.add_argument("--timeout", type=float, default=None, help="stop after S seconds without a record")

    schemas = sub.add_parser("schemas", help="schema tools")
    schemas_sub = schemas.add_subparsers(metavar="ACTION")
    check = _command(schemas_sub, "check", "are the schemas backward compatible with the baseline?", _run_schemas_check)
    check.add_argument("--baseline", help="folder of baseline .avsc files (default: schemas/baseline)")

    # These two define their options in modules that import numpy/river/scipy (seconds):
    # load them only when that command runs, so every other command starts fast.
    simulate = _command(sub, "simulate", "run the AI-platform simulator against a policy", _run_simulate)
    if command == "simulate":
        _extend(simulate, "infra.simulator.cli", "add_simulate_arguments")
    detect = _command(sub, "detect", "score a CSV series (timestamp,value on stdin) for anomalies", _run_detect)
    if command == "detect":
        _extend(detect, "infra.detect", "add_detect_arguments")
    for module in _COMMAND_MODULES:
        _extend_commands(sub, module)
    return parser


#: Modules that add subcommands of one capability: each has ``register(sub, command)``, where
#: ``command(sub, name, help, run)`` adds one (as ``_command`` does). They import their heavy
#: dependencies inside their ``run`` functions, so every command starts fast.
_COMMAND_MODULES: tuple[str, ...] = ("streams.cli_commands", "streams.cli_console", "streams.cli_lake", "streams.cli_dlq")

_COMMAND_MODULES += ("streams.cli_insights",)  # loopwise report experiments | errors | satisfaction
_COMMAND_MODULES += ("streams.cli_workflows",)  # loopwise workflows … | loopwise rollout …
_COMMAND_MODULES += ("streams.cli_models",)  # loopwise models list | show | rollback


def _extend_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", module: str) -> None:
    import importlib

    importlib.import_module(module).register(sub, _command)


def _command(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", name: str, help_: str,
             run: Callable[[argparse.Namespace, Settings], int]) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_, description=help_)
    parser.set_defaults(run=run)
    return parser


def _extend(parser: argparse.ArgumentParser, module: str, function: str) -> None:
    import importlib

    getattr(importlib.import_module(module), function)(parser)


def _run_broker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.runner import run_broker

    return run_broker(settings, port=args.port if args.port is not None else (settings.broker_port or 9092))


def _run_up(args: argparse.Namespace, settings: Settings) -> int:
    from streams.runner import run_up

    return run_up(settings, args)


def _run_worker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.runner import run_worker

    return run_worker(settings, apply=not args.no_apply)


def _run_topics_apply(args: argparse.Namespace, settings: Settings) -> int:
    from streams.tools import topics_apply

    return topics_apply(settings)


def _run_topics_list(args: argparse.Namespace, settings: Settings) -> int:
    from streams.tools import topics_list

    return topics_list(settings, include_all=args.all)


def _run_produce(args: argparse.Namespace, settings: Settings) -> int:
    from streams.tools import produce

    if len(args.target) > 2:
        print("loopwise produce: expected TOPIC [FILE|-]", file=sys.stderr)
        return 2
    topic, path = (args.target + ["-"])[:2]
    return produce(settings, topic, path, is_raw=args.raw, key=args.key)


def _run_tail(args: argparse.Namespace, settings: Settings) -> int:
    from streams.tools import tail

    return tail(settings, args.topic, from_beginning=args.from_beginning, max_records=args.max, idle_timeout_s=args.timeout)


def _run_schemas_check(args: argparse.Namespace, settings: Settings) -> int:
    from schemas.compat import run_check

    return run_check(baseline_dir=args.baseline)


def _run_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from infra.simulator.cli import simulate_main

    args.settings = settings  # live mode talks to the configured cluster
    return simulate_main(args)


def _run_detect(args: argparse.Namespace, settings: Settings) -> int:
    from infra.detect import detect_main

    return detect_main(sys.stdin, sys.stdout, detector=args.detector, warmup=args.warmup)


if __name__ == "__main__":
    sys.exit(main())
