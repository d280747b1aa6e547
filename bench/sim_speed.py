"""Offline simulator speed: steady 2 h at 200 requests/s (1.44 M requests) under least-latency.

Run: ``.venv/bin/python -m bench.sim_speed [--policy least-latency] [--duration 2h] [--rate 200]``.
Prints requests/s and total seconds of the policy's run and of the oracle's
run on the same traffic (``compare`` needs both), against the issue's ceiling
of 120 s for the policy run.
"""

from __future__ import annotations

import argparse
import time

from infra.simulator.loader import load_scenario
from infra.simulator.offline import run_offline
from infra.simulator.scenario import parse_duration_s

CEILING_S = 120.0


def main() -> None:
    """Time one policy run and one oracle run; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", default="steady")
    parser.add_argument("--policy", default="least-latency")
    parser.add_argument("--duration", default="2h")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    duration_s = parse_duration_s(args.duration)
    for policy in (args.policy, "oracle"):
        started = time.perf_counter()
        result = run_offline(scenario, policy, args.seed, duration_s, args.rate)
        elapsed = time.perf_counter() - started
        n = result.scorecard["requests"]
        print(f"{args.scenario} {args.duration}@{args.rate:g}/s {policy:>14}: {n:,} requests in {elapsed:6.1f} s "
              f"= {n / elapsed:,.0f} requests/s (ceiling {CEILING_S:.0f} s: {'ok' if elapsed < CEILING_S else 'TOO SLOW'}); "
              f"reward {result.scorecard['reward']:.4f}")


if __name__ == "__main__":
    main()
