"""Insights against the simulator's truth: template grouping accuracy and pattern-stage lines/s,
root-cause ranking and detection delay over seeded satisfaction drops, false root causes on a
healthy 24 h, and cache savings against the true savings.

Run: ``.venv/bin/python -m bench.insights`` (``--drops 52 --healthy-h 24``; ``--quick`` for a smoke run).
Throughput is printed beside its ceiling measured in the same run: the same stage with the miner
replaced by nothing (decode and gate only).
"""

from __future__ import annotations

import argparse
import statistics
import time

from infra.settings import Settings
from infra.simulator.insight_logs import error_logs, grouping_accuracy
from infra.simulator.insight_truth import CAUSES, cache_requests, satisfaction_outcomes
from processors.insights.cache import CacheConfig, CacheDetector
from processors.insights.patterns import ErrorLine, PatternMiner
from processors.insights.satisfaction import SatisfactionMonitor
from schemas.records import LogEvent
from schemas.serde import json_codec
from sinks.prometheus import Metrics
from streams.edge import RawMessage
from streams.stages.insights import PatternStage
from streams.stages.base import StageEnv

T0 = 1_700_000_000_000


def patterns(n: int, repeats: int) -> None:
    lines = error_logs(7, n)
    miner = PatternMiner()
    predicted = [miner.observe(ErrorLine(x.event.ts_ms, x.event.message, x.event.service, x.event.route,
                                         x.event.workflow)) for x in lines]
    accuracy = grouping_accuracy(predicted, [x.template_id for x in lines])
    print(f"template grouping accuracy: {accuracy:.4f} over {n} lines, {len({x.template_id for x in lines})} true "
          f"templates, {len(set(predicted))} mined (target >= 0.95)")
    codec = json_codec(LogEvent)
    batch = [RawMessage("lw.logs", 0, i, x.event.service.encode(), codec.encode(x.event), x.event.ts_ms)
             for i, x in enumerate(lines)]
    settings = Settings(bootstrap_servers="unused:9092")
    for label, is_bare in (("ceiling: gate only (decode, validate)", True), ("pattern stage", False)):
        rates = []
        for _ in range(repeats):
            stage = PatternStage(StageEnv(settings, Metrics(), now_ms=lambda: T0 + 10 ** 10))
            if is_bare:
                stage.on_record = lambda *args: None  # type: ignore[method-assign]
            started = time.process_time()
            for i in range(0, len(batch), 500):
                stage.handle(batch[i:i + 500])
                stage.state_changes()
            rates.append(len(batch) / (time.process_time() - started))
        median = statistics.median(rates)
        print(f"{label}: {median:,.0f} lines/s, {1e6 / median:.0f} CPU µs/line (median of {repeats})")


def root_cause(drops: int, healthy_h: float) -> None:
    right = detected = 0
    delays = []
    for seed in range(drops):
        cause = CAUSES[seed % len(CAUSES)]
        outcomes, truth = satisfaction_outcomes(1000 + seed, cause)
        assert truth is not None
        monitor = SatisfactionMonitor()
        first = None
        for outcome in outcomes:
            monitor.observe(outcome)
            found = [i for i in monitor.advance() if i.kind == "root_cause"]
            if found and first is None:
                first = found[0]
        if first is None:
            print(f"  drop {seed} ({truth.dimension}={truth.value}) not detected")
            continue
        detected += 1
        delay_min = (first.ts_ms - truth.start_ms) / 60_000
        is_right = first.evidence.get("cause_1", "").startswith(f"{truth.dimension}={truth.value} ")
        right += is_right and delay_min <= 15
        delays.append(delay_min)
        if not is_right:
            print(f"  drop {seed} ({truth.dimension}={truth.value}) ranked first: {first.evidence.get('cause_1')}")
    print(f"root cause: {drops} seeded drops ({', '.join(CAUSES)}): detected {detected}, true cause ranked first and "
          f"detected within 15 min: {right} = {right / drops:.1%} (target >= 90 %)")
    if delays:
        print(f"detection delay after the drop's start (request event time): median {statistics.median(delays):.1f} "
              f"min, max {max(delays):.1f} min (target <= 15)")
    outcomes, _ = satisfaction_outcomes(99, None, duration_ms=int(healthy_h * 3_600_000))
    monitor = SatisfactionMonitor()
    started = time.process_time()
    insights = []
    for outcome in outcomes:
        monitor.observe(outcome)
        insights += monitor.advance()
    cpu = time.process_time() - started
    false = [i for i in insights if i.kind == "root_cause"]
    print(f"healthy {healthy_h:g} h ({len(outcomes):,} final outcomes): {len(false)} root-cause insights (target 0), "
          f"{sum(i.kind == 'satisfaction_kpis' for i in insights)} KPI reports; {1e6 * cpu / len(outcomes):.0f} CPU "
          f"µs/outcome")


def cache(n: int) -> None:
    requests, truth = cache_requests(5, n)
    detector = CacheDetector(CacheConfig(report_ms=10 ** 15))
    for request in requests:
        detector.observe(request)
    est = detector.totals["faq-bot"]
    usd_err = est["saved_usd"] / truth.saved_usd - 1
    ms_err = est["saved_latency_ms"] / truth.saved_latency_ms - 1
    print(f"cache: {n:,} requests, true would-be hits {truth.hits:,} (${truth.saved_usd:.2f}, "
          f"{truth.saved_latency_ms / 1000:,.0f} s); estimated {est['hits']:,.0f} (${est['saved_usd']:.2f}, "
          f"{est['saved_latency_ms'] / 1000:,.0f} s): error ${usd_err:+.2%}, latency {ms_err:+.2%} (target within ±10 %)")


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.insights", description=__doc__)
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--drops", type=int, default=52)
    parser.add_argument("--healthy-h", type=float, default=24.0)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run, not the figures)")
    args = parser.parse_args()
    if args.quick:
        args.lines, args.drops, args.healthy_h, args.requests, args.repeats = 3_000, 4, 2.0, 10_000, 1
    patterns(args.lines, args.repeats)
    cache(args.requests)
    root_cause(args.drops, args.healthy_h)


if __name__ == "__main__":
    main()
