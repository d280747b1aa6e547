"""Self-healing on the simulator: outage, steady, canary-bad/good and reward in incident windows, PASS/FAIL.

Runs ``infra.simulator.remediation_policy.RemediationPolicy`` (the ``loopwise``
epsilon-greedy fallback for routing + ``processors.remediation.Remediator``)
offline, on the same seeded traffic as the ``least-latency`` gateway baseline
(with its failure cooldowns) and the oracle.

    .venv/bin/python -m bench.remediation                      # every figure
    .venv/bin/python -m bench.remediation --steady-rate 20     # steady 24 h at 20 req/s (default)

Figures (targets from issue 6):
  outage_open_s        outage start → circuit open, event time        ≤ 10 s at 200 req/s
  outage_restore_s     route recovered → circuit fully closed          ≤ 60 s
  outage_full_opens    closed→open transitions of the failing route    1 (no flapping)
  steady_commands      commands over 24 h of a healthy platform        0 (false_actions = 0)
  canary_bad_rollback  the worse version is rolled back                yes
  canary_good_rollback the better version is left alone                no
  incident_reward_ratio reward / oracle over incident windows          > least-latency's
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable

from infra.simulator.environment import Environment, drive
from infra.simulator.loader import load_scenario
from infra.simulator.offline import run_offline
from infra.simulator.remediation_policy import RemediationPolicy
from infra.simulator.scorecard import RunResult
from schemas.records import Command


def run_policy(scenario_name: str, seed: int, duration_s: float | None = None,
               rate: float | None = None) -> tuple[RunResult, RemediationPolicy, Any]:
    """Run the remediation policy on a built-in scenario; return its result, the policy and the scenario."""
    scenario = load_scenario(scenario_name)
    policy = RemediationPolicy(seed)
    result = drive(Environment(scenario, policy, seed=seed, duration_s=duration_s, rate=rate))
    return result, policy, scenario


def _since_start_s(command: Command, start_ms: int) -> float:
    return (command.ts_ms - start_ms) / 1000.0


def outage_figures(seed: int) -> dict[str, Any]:
    """Open delay, restore delay, full opens and the incident-window reward ratios on ``outage``."""
    result, policy, scenario = run_policy("outage", seed)
    event = next(e for e in scenario.timeline if e.kind == "outage")
    start_ms = scenario.start_ms + int(event.start_s * 1000)
    end_ms = scenario.start_ms + int(event.end_s * 1000)
    on_target = [c for c in policy.commands if c.target == event.target]
    opens = [c for c in on_target if c.action == "open_circuit" and c.ts_ms >= start_ms]
    full_opens = [c for c in on_target if c.action == "open_circuit" and c.reason.startswith("failure rate")]
    closes = [c for c in on_target if c.action == "close_circuit" and c.params.get("state") == "closed" and c.ts_ms >= end_ms]
    other = [c for c in policy.commands if c.target != event.target]
    windows = [(start_ms, end_ms)]
    return {
        "outage_open_s": (opens[0].ts_ms - start_ms) / 1000.0 if opens else None,
        "outage_restore_s": (closes[0].ts_ms - end_ms) / 1000.0 if closes else None,
        "outage_full_opens": len(full_opens),
        "outage_commands": len(policy.commands), "outage_other_commands": len(other),
        "outage_false_actions": result.scorecard["false_actions"],
        **window_ratios("outage", seed, result, windows, scenario.start_ms),
        # The same router without the remediator: what the commands themselves are worth.
        "outage_router_only_ratio": window_ratios("outage", seed, run_offline(scenario, "loopwise-fallback", seed),
                                                  windows, scenario.start_ms)["outage_reward_ratio"],
    }


def window_ratios(name: str, seed: int, ours: RunResult, windows: list[tuple[int, int]], start_ms: int,
                  ) -> dict[str, float]:
    """Mean per-minute reward inside ``windows``, divided by the oracle's, for us and ``least-latency``."""
    scenario = load_scenario(name)
    baseline, oracle = run_offline(scenario, "least-latency", seed), run_offline(scenario, "oracle", seed)

    def mean_in(result: RunResult) -> float:
        # A minute bin counts when it starts inside a window.
        values = [r for t, r in zip(result.series["t_s"], result.series["reward"])
                  if any(lo <= start_ms + t * 1000 < hi for lo, hi in windows)]
        return sum(values) / len(values)

    best = abs(mean_in(oracle))
    return {f"{name}_reward_ratio": mean_in(ours) / best, f"{name}_least_latency_ratio": mean_in(baseline) / best}


def steady_figures(seed: int, hours: float, rate: float) -> dict[str, Any]:
    """Commands and false actions over ``hours`` of the healthy ``steady`` platform at ``rate`` req/s."""
    result, policy, _ = run_policy("steady", seed, duration_s=hours * 3600, rate=rate)
    return {"steady_commands": len(policy.commands), "steady_false_actions": result.scorecard["false_actions"],
            "steady_requests": result.scorecard["requests"]}


def canary_figures(seed: int) -> dict[str, Any]:
    """Whether each canary was rolled back, when, and the reward ratio over canary-bad's window."""
    out: dict[str, Any] = {}
    for name in ("canary-bad", "canary-good"):
        result, policy, scenario = run_policy(name, seed)
        event = next(e for e in scenario.timeline if e.kind == "canary")
        rollbacks = [c for c in policy.commands if c.action == "rollback"]
        key = name.replace("-", "_")
        out[f"{key}_rollback"] = bool(rollbacks)
        out[f"{key}_rollback_after_s"] = (rollbacks[0].ts_ms - scenario.start_ms - event.start_s * 1000) / 1000.0 \
            if rollbacks else None
        out[f"{key}_commands"] = len(policy.commands)
        if name == "canary-bad":
            start_ms = scenario.start_ms + int(event.start_s * 1000)
            out.update(window_ratios(name, seed, result, [(start_ms, result.end_ms)], scenario.start_ms))
    return out


def checks(f: dict[str, Any]) -> list[tuple[str, Any, str, bool]]:
    """(figure, value, target, passed) for every target of issue 6."""
    def ok(value: Any, test: Callable[[Any], bool]) -> bool:
        return value is not None and bool(test(value))

    rows = [
        ("outage_open_s", f["outage_open_s"], "<= 10 s", ok(f["outage_open_s"], lambda v: v <= 10)),
        ("outage_restore_s", f["outage_restore_s"], "<= 60 s", ok(f["outage_restore_s"], lambda v: v <= 60)),
        ("outage_full_opens", f["outage_full_opens"], "== 1 (no flapping)", f["outage_full_opens"] == 1),
        ("steady_commands", f["steady_commands"], "== 0", f["steady_commands"] == 0),
        ("steady_false_actions", f["steady_false_actions"], "== 0", f["steady_false_actions"] == 0),
        ("canary_bad_rollback", f["canary_bad_rollback"], "True", f["canary_bad_rollback"] is True),
        ("canary_good_rollback", f["canary_good_rollback"], "False", f["canary_good_rollback"] is False),
    ]
    for name in ("outage", "canary-bad"):
        ours, base = f[f"{name}_reward_ratio"], f[f"{name}_least_latency_ratio"]
        rows.append((f"{name}_reward_ratio", round(ours, 4), f"> least-latency {base:.4f}", ours > base))
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run every scenario, print each figure with its target and PASS/FAIL; exit 1 if any fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steady-hours", type=float, default=24.0)
    parser.add_argument("--steady-rate", type=float, default=20.0, help="req/s for steady (200 is ~25 min per hour)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    figures: dict[str, Any] = {}
    figures.update(outage_figures(args.seed))
    figures.update(canary_figures(args.seed))
    figures.update(steady_figures(args.seed, args.steady_hours, args.steady_rate))
    rows = checks(figures)
    print(f"remediation bench (seed {args.seed}; outage/canary at 200 req/s; "
          f"steady {args.steady_hours:g} h at {args.steady_rate:g} req/s)")
    for name, value, target, passed in rows:
        print(f"  {name:<24} {str(value):>12}   target {target:<28} {'PASS' if passed else 'FAIL'}")
    shown = {k: v for k, v in figures.items() if k not in {r[0] for r in rows}}
    print("  other:", ", ".join(f"{k}={v if not isinstance(v, float) else round(v, 4)}" for k, v in shown.items()))
    print(f"  ({time.perf_counter() - started:.0f} s)")
    return 0 if all(r[3] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
