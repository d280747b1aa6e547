"""``loopwise simulate``: arguments, the offline run with a progress bar, the table, the report and the plot."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from infra.simulator.errors import SimulatorError
from infra.simulator.loader import builtin_names, load_scenario
from infra.simulator.offline import compare, report
from infra.simulator.policies import POLICIES
from infra.simulator.scenario import parse_duration_s
from infra.simulator.scorecard import RunResult

_PROGRESS_MIN_REQUESTS = 200_000


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Define the ``simulate`` subcommand's arguments on ``parser``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--scenario", metavar="NAME", help=f"built-in scenario: {', '.join(builtin_names())}")
    source.add_argument("--scenario-file", metavar="F", help="a scenario YAML file (may `extends:` a built-in)")
    parser.add_argument("--duration", metavar="D", help="simulated duration, e.g. 30s, 20m, 2h (default: the scenario's)")
    parser.add_argument("--rate", type=float, metavar="RPS", help="base requests/s (default: the scenario's)")
    parser.add_argument("--seed", type=int, default=1, help="traffic and noise seed (default 1)")
    parser.add_argument("--speed", type=float, default=60.0, help="live mode: simulated seconds per second (default 60)")
    parser.add_argument("--offline", action="store_true", help="run in process, no Kafka")
    parser.add_argument("--policy", default="loopwise", help=f"policy to score (default loopwise): {', '.join(POLICIES)}")
    parser.add_argument("--compare", metavar="P1,P2", default="", help="more policies to run on the same traffic")
    parser.add_argument("--report", metavar="F.json", help="write the scorecards as JSON")
    parser.add_argument("--plot", metavar="F.png", help="plot reward/cost/latency over time per policy")


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def render_table(results: dict[str, RunResult], title: str) -> Table:
    """One row per policy with the scorecard's headline numbers."""
    table = Table(title=title)
    columns = ("policy", "reward", "ratio", "cost $", "p95 ms", "quality", "errors", "privacy", "overrun $",
               "incidents", "MTTD s", "MTTM s", "false act.", "requests", "dropped", "impl")
    for column in columns:
        table.add_column(column, justify="left" if column in ("policy", "impl") else "right")
    for name, result in results.items():
        c = result.scorecard
        table.add_row(name, _fmt(c["reward"], 4), _fmt(c["reward_ratio"]), _fmt(c["cost_usd"], 2), _fmt(c["p95_latency_ms"], 0),
                      _fmt(c["quality"]), _fmt(c["error_rate"], 4), _fmt(c["privacy_violations"]), _fmt(c["budget_overrun_usd"], 2),
                      _fmt(len(c["incidents"])), _fmt(c["mean_time_to_detect_s"], 1), _fmt(c["mean_time_to_mitigate_s"], 1),
                      _fmt(c["false_actions"]), _fmt(c["requests"]), _fmt(c["dropped"]), c["policy_impl"])
    return table


def _policies(args: argparse.Namespace) -> list[str]:
    names = [args.policy] + [p.strip() for p in args.compare.split(",") if p.strip()]
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise SimulatorError(f"unknown policy {unknown[0]!r}; one of {', '.join(POLICIES)}")
    return list(dict.fromkeys(names))


def simulate_main(args: argparse.Namespace) -> int:
    """Run ``loopwise simulate`` with parsed ``args``; return the exit code (errors go to stderr)."""
    err = Console(stderr=True)
    try:
        scenario = load_scenario(args.scenario, None) if args.scenario else load_scenario(None, args.scenario_file)
        duration_s = parse_duration_s(args.duration, "--duration") if args.duration else scenario.duration_s
        rate = args.rate if args.rate else scenario.rate
        policies = _policies(args)
        if not args.offline:
            return _run_live(args, scenario, duration_s, rate)
        results = _run_with_progress(scenario, policies, args.seed, duration_s, rate, err)
        out = Console() if sys.stdout.isatty() else Console(width=200)
        out.print(render_table(results, f"{scenario.name}: {duration_s:g} s at {rate:g} req/s, seed {args.seed}"))
        if args.report:
            Path(args.report).parent.mkdir(parents=True, exist_ok=True)
            Path(args.report).write_text(json.dumps(report(results), indent=2))
        if args.plot:
            from infra.simulator.plot import plot_runs

            plot_runs(results, args.plot, f"{scenario.name} (seed {args.seed})")
    except SimulatorError as exc:
        err.print(f"[red]simulate: {exc}[/red]")
        return 2
    return 0


def _run_live(args: argparse.Namespace, scenario: Any, duration_s: float, rate: float) -> int:
    """Against the worker(s) on the configured cluster (``args.settings``, set by the CLI entry point)."""
    from infra.simulator.kafka_loop import live_main

    settings = getattr(args, "settings", None)
    if settings is None or not settings.bootstrap_servers:
        raise SimulatorError("live mode needs a cluster with a loopwise worker: set KAFKA_BOOTSTRAP_SERVERS, "
                             "or use `loopwise up --simulate SCENARIO`, or pass --offline")
    if args.policy != "loopwise" or args.compare:
        raise SimulatorError("live mode scores loopwise itself; compare baselines with --offline")
    return live_main(settings, scenario, seed=args.seed, duration_s=duration_s, rate=rate, speed=args.speed,
                     report_path=args.report, plot_path=args.plot)


def _run_with_progress(scenario: Any, policies: list[str], seed: int, duration_s: float, rate: float,
                       err: Console) -> dict[str, RunResult]:
    # A bar only for long runs on a terminal: short runs and pipes stay quiet.
    runs = len(set(policies) | {"oracle"})
    if not sys.stderr.isatty() or duration_s * rate < _PROGRESS_MIN_REQUESTS:
        return compare(scenario, policies, seed, duration_s, rate)
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("simulating", total=runs * duration_s * 1000)
        done: dict[str, int] = {}

        def on_progress(policy: str, done_ms: int, total_ms: int) -> None:
            done[policy] = done_ms
            bar.update(task, completed=sum(done.values()), description=f"simulating {policy}")

        return compare(scenario, policies, seed, duration_s, rate, progress=on_progress)
