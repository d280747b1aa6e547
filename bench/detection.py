"""Detection on the simulator (offline): time to detect injected incidents, false alarms on a healthy platform.

Run: ``.venv/bin/python -m bench.detection [--rate 50] [--seed 1] [--steady-hours 6]``.
The worker's detectors (``DetectorBank`` + drift monitor + ``AnomalyThrottle``) see the records of
the ``outage``, ``drift`` and ``traffic-spike`` scenarios while ``loopwise`` routes; each incident's
time to detect is measured from its true start, in event time. On ``steady`` (no incident at all),
every published warning or critical anomaly is a false alarm; target ≤ 1 warning/hour and 0 critical.
"""

from __future__ import annotations

import argparse
import time

from infra.simulator.detection import DetectingPolicy
from infra.simulator.environment import Environment, drive
from infra.simulator.loader import load_scenario
from infra.simulator.policies import make_policy
from schemas.records import Severity, SignalKind


def run(name: str, seed: int, rate: float, duration_s: float | None = None) -> tuple[DetectingPolicy, dict]:  # type: ignore[type-arg]
    scenario = load_scenario(name)
    policy = DetectingPolicy(make_policy("loopwise", seed))  # type: ignore[arg-type]
    env = Environment(scenario, policy, seed=seed, duration_s=duration_s, rate=rate)
    return policy, drive(env).scorecard


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steady-hours", type=float, default=6.0)
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"time to detect, {args.rate:g} req/s, seed {args.seed} (event time, from the incident's true start)")
    for name in ("outage", "drift", "traffic-spike"):
        policy, card = run(name, args.seed, args.rate)
        pages = [a for a in policy.published if a.kind is SignalKind.ANOMALY and a.severity is not Severity.INFO]
        for incident in card["incidents"]:
            ttd = None if incident["detected_at"] is None else (incident["detected_at"] - incident["start"]) / 1000
            shown = "NOT DETECTED" if ttd is None else f"{ttd:8.1f} s"
            # Which record the scorecard credited, and how many pages came before the incident:
            # a detection is only worth its name when the healthy stretch before it was quiet.
            by = next((f"{a.entity} {a.signal} {a.severity}" for a in pages
                       if a.ts_ms == incident["detected_at"]), "")
            before = sum(1 for a in pages if a.ts_ms < incident["start"])
            print(f"  {name:14} {incident['kind']:12} {incident['entity']:14} {shown}  by {by or '-'}; "
                  f"{before} warnings/criticals before it started")
        if not card["incidents"]:
            print(f"  {name:14} (no incident in the scenario's timeline)")
    policy, card = run("steady", args.seed, args.rate, duration_s=args.steady_hours * 3600)
    hours = args.steady_hours
    warnings = policy.counts[("anomaly", "warning")]
    criticals = policy.counts[("anomaly", "critical")]
    drifts = sum(n for (kind, _), n in policy.counts.items() if kind == "drift")
    print(f"steady, {hours:g} h: {warnings / hours:.2f} warnings/hour (target <= 1: "
          f"{'PASS' if warnings / hours <= 1 else 'FAIL'}), {criticals} critical (target 0: "
          f"{'PASS' if criticals == 0 else 'FAIL'}), {drifts} drift records, {card['requests']:,} requests")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
