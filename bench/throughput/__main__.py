"""``python -m bench.throughput``: every throughput/latency figure of issue 7, in one run, on the same data.

Each benchmark gets its own embedded broker (memory-only: nothing one leaves
behind slows the next) and every run its own fresh topics. Progress goes to
stderr, the tables to stdout, the figures to ``bench/results.json``.
"""

from __future__ import annotations

import argparse
import platform
import signal
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from bench.throughput.harness import REPO, BenchError, Result, on_fresh_topics, progress

BENCHES = ("raw_ceiling", "faust_idiomatic", "quix", "loopwise_standard", "processors_inprocess", "loopwise_full",
           "latency", "route_latency", "latency_floor", "scale", "memory")
PARTITIONS = 4


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__)
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(BENCHES)}")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; the median is reported (default 3)")
    parser.add_argument("--events", type=int, default=100_000,
                        help="count-and-forward events for quix, loopwise_standard and scale (default 100000)")
    parser.add_argument("--raw-events", type=int, default=200_000, help="events for the raw ceiling (default 200000)")
    parser.add_argument("--faust-events", type=int, default=6_000,
                        help="events for the slow Faust-idiomatic run (default 6000)")
    parser.add_argument("--sim-events", type=int, default=30_000,
                        help="simulator records for processors_inprocess and loopwise_full (default 30000)")
    parser.add_argument("--latency-s", type=float, default=6.0, help="seconds of paced load per offered rate")
    parser.add_argument("--memory-series", type=int, default=20_000,
                        help="series filled for the memory figure, scaled to 100 k (default 20000)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks; 0 when all produced their figures, 1 otherwise (tables printed either way)."""
    args = _parser().parse_args(argv)
    chosen = args.only.split(",") if args.only else list(BENCHES)
    unknown = [name for name in chosen if name not in BENCHES]
    if unknown:
        print(f"unknown benchmark {unknown[0]!r}; one of: {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    # SIGTERM must run the finally blocks that stop brokers and pipelines.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from bench.throughput.report import Report

    report = Report(settings={key: str(value) for key, value in vars(args).items()})
    report.settings.update(python=platform.python_version(), machine=platform.machine())
    log_dir = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    progress(f"bench: {', '.join(chosen)}; {args.runs} runs each; child logs in {log_dir}")
    started = time.monotonic()
    context: dict[str, Any] = {}
    for name in BENCHES:
        if name not in chosen:
            continue
        progress(f"{name} ...")
        began = time.monotonic()
        try:
            RUNNERS[name](args, report, log_dir, context)
        except BenchError as exc:
            report.errors[_figure(name)] = str(exc)
            progress(f"{name} FAILED: {exc}")
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            report.errors[_figure(name)] = f"{type(exc).__name__}: {exc}"
            progress(f"{name} CRASHED:\n{traceback.format_exc()}")
        progress(f"{name} done in {time.monotonic() - began:.0f} s")
    report.seconds = time.monotonic() - started
    report.print()
    report.write(args.out)
    progress(f"wrote {args.out} ({report.seconds:.0f} s in all)")
    return 1 if report.errors else 0


def _figure(name: str) -> str:
    return {"latency": "latency", "route_latency": "route_latency", "latency_floor": "latency_floor",
            "scale": "scale_2_workers", "memory": "rss_mb_per_100k_entities",
            "raw_ceiling": "raw_ceiling_eps"}.get(name, f"{name}_eps")


def _count_forward(args: argparse.Namespace, n: int, prefix: str,
                   pipeline: Callable[[str, str, str, int], Result]) -> list[float]:
    """``args.runs`` runs of ``pipeline`` on fresh topics of one fresh broker, same events each time."""
    from bench.throughput.data import make_events
    from infra.broker import EmbeddedBroker

    events = make_events(n)
    values = []
    with EmbeddedBroker() as broker:
        for run in range(args.runs):
            result = on_fresh_topics(broker.bootstrap_servers, events, PARTITIONS, prefix, pipeline)
            values.append(result.eps)
            progress(f"  {prefix} run {run + 1}/{args.runs}: {result.eps:,.0f} events/s "
                     f"({result.events:,} in {result.seconds:.2f} s)")
    return values


def _raw(args: argparse.Namespace, report: Any, log_dir: Path, context: dict[str, Any]) -> None:
    from bench.throughput.raw import run_raw

    values = _count_forward(args, args.raw_events, "raw", lambda b, i, o, n: run_raw(b, i, o, n, log_dir))
    report.add_runs("raw_ceiling_eps", values, f"{args.raw_events:,} events")


def _faust(args: argparse.Namespace, report: Any, log_dir: Path, context: dict[str, Any]) -> None:
    from bench.throughput.faust_idiomatic import run_faust_idiomatic

    values = _count_forward(args, args.faust_events, "faust",
                            lambda b, i, o, n: run_faust_idiomatic(b, i, o, n, log_dir))
    report.add_runs("faust_idiomatic_eps", values, f"only {args.faust_events:,} events (it is slow)")


def _quix(args: argparse.Namespace, report: Any, log_dir: Path, context: dict[str, Any]) -> None:
    from bench.throughput.quix import run_quix

    values = _count_forward(args, args.events, "quix", lambda b, i, o, n: run_quix(b, i, o, n, log_dir))
    report.add_runs("quix_eps", values, f"{args.events:,} events, .venv-quix")


def _standard(args: argparse.Namespace, report: Any, log_dir: Path, context: dict[str, Any]) -> None:
    from bench.throughput.loopwise import run_loopwise_count_forward

    values = _count_forward(args, args.events, "loopwise",
                            lambda b, i, o, n: run_loopwise_count_forward(b, i, o, n, PARTITIONS, workers=1))
    context["one_worker_eps"] = values
    report.add_runs("loopwise_standard_eps", values, f"{args.events:,} events, 1 worker")


def _sim_records(args: argparse.Namespace, context: dict[str, Any], n: int) -> Any:
    from bench.throughput.data import make_sim_records
    from bench.throughput.latency import WARMUP_RECORDS

    if len(context.get("sim", ())) < n:
        # Once, enough for every user, so all of them read the same records.
        n = max(n, args.sim_events, WARMUP_RECORDS + int(5000 * args.latency_s))
        progress(f"  generating {n:,} simulator records (steady scenario, least-latency policy)")
        context["sim"] = make_sim_records(n)
    return context["sim"]


def _inprocess(args: argparse.Namespace, report: Any, log_dir: Path, context: dict[str, Any]) -> None:
    from bench.throughput.inprocess import run_inprocess

    records = _sim_records(args, context, args.sim_events)[:args.sim_events]
    values = []
    for run in range(args.runs):
        values.append(run_inprocess(records).eps)
        progress(f"  inprocess run {run + 1}/{args.runs}: {values[-1]:,.0f} events/s")
    report.add_runs("processors_inprocess_eps", values, f"{len(records):,} simulator records, batches of 500")


def _full(args: argparse.Namespace, report: Any, log_dir: Path, context: dict[str, Any]) -> None:
    from bench.throughput.fullworker import run_full
    from bench.throughput.harness import unique
    from infra.broker import EmbeddedBroker

    records = _sim_records(args, context, args.sim_events)[:args.sim_events]
    values = []
    with EmbeddedBroker() as broker:
        for run in range(args.runs):
            result = run_full(broker.bootstrap_servers, records, unique("benchfull"), log_dir,
                              timeout_s=60 + len(records) / 500)
            values.append(result.eps)
            progress(f"  full run {run + 1}/{args.runs}: {result.eps:,.0f} events/s")
    report.add_runs("loopwise_full_eps", values, f"{len(records):,} simulator records, input events/s")


def _latency(args: argparse.Namespace, report: Any, log_dir: Path, context: dict[str, Any]) -> None:
    from bench.throughput.latency import WARMUP_RECORDS, run_latency
    from infra.broker import EmbeddedBroker

    rates = (1000.0, 5000.0)
    records = _sim_records(args, context, WARMUP_RECORDS + int(max(rates) * args.latency_s))
    with EmbeddedBroker() as broker:
        found = run_latency(broker.bootstrap_servers, records, rates, args.latency_s, "benchlat", log_dir)
    for rate, cut in found.items():
        report.latency_ms[str(int(rate))] = _cut(cut)


def _cut(found: Any) -> dict[str, float]:
    return {"p50": round(found.p50_ms, 2), "p95": round(found.p95_ms, 2), "p99": round(found.p99_ms, 2),
            "achieved_eps": round(found.achieved_eps, 1), "requests": found.requests, "missing": found.missing}


def _route_latency(args: argparse.Namespace, report: Any, log_dir: Path, context: dict[str, Any]) -> None:
    from bench.throughput.latency import run_route_latency
    from infra.broker import EmbeddedBroker

    records = _sim_records(args, context, 1)
    with EmbeddedBroker() as broker:
        found = run_route_latency(broker.bootstrap_servers, records, 1000.0, args.latency_s, unique_name("benchroute"),
                                  log_dir)
    report.route_latency_ms["1000"] = _cut(found)


def _floor(args: argparse.Namespace, report: Any, log_dir: Path, context: dict[str, Any]) -> None:
    from bench.throughput.floor import run_floor
    from infra.broker import EmbeddedBroker
    from infra.settings import Settings

    records = _sim_records(args, context, 1)
    wait_ms = Settings(bootstrap_servers="x:1", is_embedded=True).effective_fetch_max_wait_ms or 10
    for mode, rates in (("eos", (1000.0, 5000.0)), ("alo", (1000.0,))):
        with EmbeddedBroker() as broker:
            found = run_floor(broker.bootstrap_servers, records, rates, args.latency_s, mode, wait_ms, log_dir)
        for rate, cut in found.items():
            report.floor_ms[f"{mode}@{int(rate)}"] = _cut(cut)


def unique_name(prefix: str) -> str:
    from bench.throughput.harness import unique

    return unique(prefix)


def _scale(args: argparse.Namespace, report: Any, log_dir: Path, context: dict[str, Any]) -> None:
    from bench.throughput.data import make_events
    from bench.throughput.scale import run_scale
    from infra.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        ratio, two, one = run_scale(broker.bootstrap_servers, make_events(args.events), PARTITIONS, args.runs,
                                    context.get("one_worker_eps", ()))
    report.figures["scale_2_workers"] = ratio
    report.runs["scale_2_workers"] = [round(v, 1) for v in two]
    report.notes["scale_2_workers"] = (f"2 workers {statistics.median(two):,.0f}/s over 1 worker "
                                       f"{statistics.median(one):,.0f}/s (runs listed: 2 workers)")


def _memory(args: argparse.Namespace, report: Any, log_dir: Path, context: dict[str, Any]) -> None:
    from bench.throughput.memory import run_memory

    mb, figures = run_memory(args.memory_series)
    report.figures["rss_mb_per_100k_entities"] = mb
    report.runs["rss_mb_per_100k_entities"] = [round(mb, 1)]
    report.notes["rss_mb_per_100k_entities"] = (f"{int(figures['series']):,} series × 64 values measured "
                                                f"({figures['rss_bytes'] / 1e6:.0f} MB), scaled linearly")


RUNNERS: dict[str, Callable[[argparse.Namespace, Any, Path, dict[str, Any]], None]] = {
    "raw_ceiling": _raw, "faust_idiomatic": _faust, "quix": _quix, "loopwise_standard": _standard,
    "processors_inprocess": _inprocess, "loopwise_full": _full, "latency": _latency,
    "route_latency": _route_latency, "latency_floor": _floor, "scale": _scale,
    "memory": _memory,
}

if __name__ == "__main__":
    sys.exit(main())
