"""Is the oracle an upper bound? loopwise / oracle on every built-in scenario (offline).

Run: ``.venv/bin/python -m bench.oracle_gap [--seed 1] [--rate 20] [--max-minutes 30]``. Prints each
scenario's reward_ratio of ``loopwise`` and FAIL where it exceeds 1 (the oracle must bound every policy;
the baselines are checked by tests/unit/test_sim_policies.py).
"""

from __future__ import annotations

import argparse

from infra.simulator.loader import builtin_names, load_scenario
from infra.simulator.offline import compare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--max-minutes", type=float, default=30.0)
    args = parser.parse_args()
    worst = 0.0
    for name in builtin_names():
        scenario = load_scenario(name)
        rate = scenario.rate if name == "budget-squeeze" else args.rate  # its budget holds at its own rate
        result = compare(scenario, ["loopwise"], seed=args.seed, duration_s=min(scenario.duration_s,
                                                                               args.max_minutes * 60), rate=rate)
        ratio = float(result["loopwise"].scorecard["reward_ratio"])
        worst = max(worst, ratio)
        print(f"{name:16} loopwise/oracle = {ratio:.4f}  {'FAIL: above the oracle' if ratio > 1 else 'ok'}", flush=True)
    print(f"highest ratio {worst:.4f} (must be <= 1)")


if __name__ == "__main__":
    main()
