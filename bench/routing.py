"""Routing bench: reward_ratio per built-in scenario × policy (vs the issue's targets), µs per decision/learn, memory.

Run: ``.venv/bin/python -m bench.routing [--seeds 1,2,3] [--scenarios steady,drift] [--config '{"exploration": "ucb"}']``

Each scenario runs at its default duration with a lower rate (``RUNS``) so
the whole table takes minutes; ``budget-squeeze`` runs at its own 200 req/s
because the simulator publishes the scenario's budget unscaled by ``--rate``
(the scorecard scales it), so only at the scenario's rate do loopwise and the
scorecard see the same budget.

Last run (seeds 1, 2, 3; mean reward_ratio; ~55 min on the shared 2 cores)::

    scenario         random round-robin static-best cost-first least-lat fallback loopwise
    steady           0.6173  0.6194      0.9073      0.6969     0.8748    0.9751   0.9885  (target 0.95) PASS
    drift            0.5161  0.5197      0.9538      0.5969     0.8952    0.9350   0.9567  (target 0.95) PASS
    outage           0.4226  0.4299      0.9233      0.6978     0.8855    0.8834   0.9612  (target 0.90) PASS
    price-change     0.6241  0.6296      0.8904      0.4595     0.8629    0.9747   0.9912  (target 0.90) PASS
    traffic-spike    0.4075  0.4074      0.6346      0.1592     0.5244    0.9180   0.9684  (target 0.90) PASS
    budget-squeeze   0.6111  0.6119      0.9739      0.6992     0.9263    0.9582   0.9826  overrun $0    PASS
    privacy-mix      0.4528  0.4511      0.5381      0.4452     0.7979    0.9185   0.9834                PASS
    canary-good      0.6310  0.6327      0.9122      0.7025     0.8827    0.9683   0.9873                PASS
    canary-bad       0.3315  0.3330      0.5983      0.4216     0.5802    0.6312   0.6697                PASS
    experiment-aa    0.6150  0.6204      0.9084      0.6960     0.8777    0.9703   0.9874                PASS
    experiment-lift  0.6056  0.6107      0.8847      0.6825     0.8557    0.9256   0.9586                PASS

``day`` (24 h, two workflows sharing route names) ran at 2 req/s in that run, before
the router held each workflow to its own declared capacity: 0.763, below the
fallback's 0.799 (above static-best's 0.685). At 20 req/s after the fix, seeds 1
and 2: 0.914 and 0.915 (static-best 0.816/0.818, fallback 0.883/0.888); ~17 min per
seed on the shared cores. budget-squeeze asks $800/h at 200 req/s
(it asked $350/h, which no routing meets: a linear program over its traffic classes,
prices and capacities puts the least possible spend at $391/h with every route at
100 % utilisation; cost-first spends $650/h). canary-bad is low for every policy:
its canary is bad and the oracle rolls it back at once.
decide ~14 µs, learn ~2 µs, ~3.3 MB per 1k workflow×segment policies (4 routes);
twice that while other benchmarks share the cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
import tracemalloc
from typing import Any

from infra.simulator.environment import Environment, drive
from infra.simulator.loader import load_scenario
from infra.simulator.loopwise_policy import LoopwisePolicy
from infra.simulator.offline import compare
from infra.simulator.scorecard import with_oracle
from processors.routing import Router, RouterConfig
from schemas.records import (
    Outcome, PrivacyLevel, RequestContext, RouteRequest, RouteSpec, Status, WorkflowDefinition,
)

BASELINES = ["random", "round-robin", "static-best", "cost-first", "least-latency", "loopwise-fallback"]
#: scenario -> (duration_s or None for the scenario's own, rate req/s, reward_ratio target or None)
RUNS: dict[str, tuple[float | None, float, float | None]] = {
    "steady": (None, 20.0, 0.95), "drift": (None, 20.0, 0.95), "outage": (None, 20.0, 0.90),
    "price-change": (None, 20.0, 0.90), "traffic-spike": (None, 20.0, 0.90), "budget-squeeze": (1200.0, 200.0, None),
    "privacy-mix": (1200.0, 20.0, None), "canary-good": (None, 20.0, None), "canary-bad": (None, 20.0, None),
    "experiment-aa": (None, 20.0, None), "experiment-lift": (None, 20.0, None), "day": (None, 20.0, None),
    # Hard scenarios (issue 13), written before tuning: single incidents 0.90, compound 0.85, steady-like 0.95.
    "quality-regression": (None, 50.0, 0.90), "quality-regression-gradual": (None, 50.0, 0.90),
    "route-improves": (None, 20.0, 0.90), "repricing": (None, 20.0, 0.90), "capacity-squeeze": (None, 20.0, 0.90),
    "compound-storm": (None, 20.0, 0.85), "flapping-outage": (None, 20.0, 0.90), "route-added": (None, 20.0, 0.90),
    "route-removed": (None, 20.0, 0.90), "tenant-shift": (None, 20.0, 0.90), "heavy-tail-latency": (None, 20.0, 0.95),
    "prompt-length": (None, 20.0, 0.95), "budget-hard": (1200.0, 50.0, None),
}
#: The issue-13 scenarios (``--scenarios hard``).
HARD = ("quality-regression", "quality-regression-gradual", "route-improves", "repricing", "capacity-squeeze",
        "compound-storm", "flapping-outage", "route-added", "route-removed", "tenant-shift", "heavy-tail-latency",
        "prompt-length", "budget-hard")


def run_scenario(name: str, seed: int, config: RouterConfig | None, window_s: float | None,
                 max_duration_s: float | None = None) -> dict[str, dict[str, Any]]:
    """Scorecards of every baseline and loopwise on one scenario and seed.

    ``max_duration_s`` shortens long runs, but never to less than 10 minutes past the last timeline event's start.
    """
    duration, rate, _ = RUNS[name]
    scenario = load_scenario(name)
    if max_duration_s is not None:
        last = max((e.start_s for e in scenario.timeline), default=0.0)
        duration = min(duration or scenario.duration_s, max(max_duration_s, last + 600.0))
    results = compare(scenario, BASELINES, seed=seed, duration_s=duration, rate=rate)
    cards = {k: v.scorecard for k, v in results.items()}
    oracle = float(cards["random"]["oracle_reward"])
    env = Environment(scenario, LoopwisePolicy(seed, config, window_s), seed=seed, duration_s=duration, rate=rate)
    cards["loopwise"] = with_oracle(drive(env).scorecard, oracle)
    return cards


class _Counting(LoopwisePolicy):
    """LoopwisePolicy that counts its choices per route and per 30 s of event time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counts: dict[int, dict[str, int]] = {}

    def choose(self, request: RouteRequest, workflow: WorkflowDefinition, now_ms: int) -> Any:
        choice = super().choose(request, workflow, now_ms)
        bucket = self.counts.setdefault(now_ms // 30_000, {})
        bucket[choice.route or ""] = bucket.get(choice.route or "", 0) + 1
        return choice


def regression_timing(name: str, seed: int, config: RouterConfig | None, duration_s: float | None = None,
                      rate: float | None = None) -> dict[str, Any]:
    """Quality-only regression: time from its start to the router's first shift alarm on the route, and until
    the route's traffic share is half its share over the 5 minutes before (both in event-time seconds)."""
    scenario = load_scenario(name)
    event = next(e for e in scenario.timeline if e.kind == "degradation")
    policy = _Counting(seed, config, 300.0)
    env = Environment(scenario, policy, seed=seed, duration_s=duration_s, rate=rate or RUNS[name][1])
    card = drive(env).scorecard
    start_ms = scenario.start_ms + int(event.start_s * 1000)
    alarms = [a for a in policy.router.shift_log if a[2] == event.target and a[4] < 0 and a[0] >= start_ms]
    share = {b: c.get(event.target, 0) / max(sum(c.values()), 1) for b, c in sorted(policy.counts.items())}
    before = [v for b, v in share.items() if start_ms - 300_000 <= b * 30_000 < start_ms]
    base = statistics.mean(before) if before else 0.0
    halved = next((b * 30_000 for b, v in share.items() if b * 30_000 >= start_ms and v <= base / 2), None)
    return {"detect_s": None if not alarms else (alarms[0][0] - start_ms) / 1000,
            "halved_s": None if halved is None else (halved - start_ms) / 1000, "share_before": round(base, 3),
            "share_end": round(list(share.values())[-1], 3), "false_alarms_before": sum(
                1 for a in policy.router.shift_log if a[0] < start_ms), "reward": card["reward"]}


def _workflow(n_routes: int = 4) -> WorkflowDefinition:
    routes = tuple(RouteSpec(f"r{i}", "p", i == 0, PrivacyLevel.RESTRICTED if i == 0 else PrivacyLevel.INTERNAL,
                             0.001 * (i + 1), 0.002 * (i + 1), capacity_rps=1e6, prior_quality=0.6 + 0.05 * i)
                   for i in range(n_routes))
    return WorkflowDefinition("wf", "v1", 0, routes, context_keys=("tenant", "task", "privacy_level"),
                              budget_usd_per_hour=100.0)


def micro(n: int = 20_000) -> dict[str, float]:
    """µs per decision, per learn step (provisional + final), and KiB per 1k workflow×segment policies."""
    router = Router(seed=1)
    router.update_workflow(_workflow())
    ctxs = [RequestContext(f"t{i % 5}", ("chat", "code", "summarize")[i % 3]) for i in range(15)]
    reqs = [RouteRequest(f"q{i}", i * 10, "wf", ctxs[i % 15]) for i in range(n)]
    t0 = time.perf_counter()
    decisions = [router.decide(r, r.ts_ms) for r in reqs]
    decide_us = (time.perf_counter() - t0) / n * 1e6
    outs = [Outcome(d.request_id, d.ts_ms, d.ts_ms, "wf", "v1", d.route, d.segment, Status.OK, 800.0, 0.002,
                    0.5, 0.5, 0.1, 0.05, 0.0, False) for d in decisions]
    finals = [dataclasses.replace(o, is_final=True, quality=0.8) for o in outs]
    t0 = time.perf_counter()
    for o in outs:
        router.learn(o)
    for o in finals:
        router.learn(o)
    learn_us = (time.perf_counter() - t0) / (2 * n) * 1e6
    big = Router(seed=1)
    big.update_workflow(_workflow())
    big.policy("wf", "warm-up", 0)  # lazy imports and numpy caches are not per-policy memory
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i in range(1000):
        big.policy("wf", f"tenant=t{i}|task=chat|privacy_level=public", 0)
    size = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    return {"decide_us": decide_us, "learn_us": learn_us, "kib_per_1k_policies": size / 1024}


def main() -> None:
    """Print the scenario × policy table and the cost figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--scenarios", default=",".join(n for n in RUNS if n not in HARD),
                        help="comma-separated names, or 'hard' for the issue-13 scenarios")
    parser.add_argument("--config", default="{}", help="RouterConfig overrides as JSON")
    parser.add_argument("--window", type=float, default=300.0, help="feedback window of the correlator (s); 0: 1 h default")
    parser.add_argument("--json", default=None, help="also write all scorecards here")
    parser.add_argument("--max-duration", type=float, default=None, help="cap each run's duration (s)")
    args = parser.parse_args()
    config = RouterConfig(**json.loads(args.config))
    seeds = [int(s) for s in args.seeds.split(",")]
    window = args.window or None
    table: dict[str, dict[str, list[float]]] = {}
    checks: dict[str, list[str]] = {}
    dump: dict[str, Any] = {}
    names = list(HARD) if args.scenarios == "hard" else args.scenarios.split(",")
    for name in names:
        for seed in seeds:
            cards = run_scenario(name, seed, config, window, args.max_duration)
            dump[f"{name}/{seed}"] = cards
            for policy, card in cards.items():
                table.setdefault(name, {}).setdefault(policy, []).append(float(card["reward_ratio"]))
            lw = cards["loopwise"]
            bad = [f"privacy_violations={lw['privacy_violations']}"] if lw["privacy_violations"] else []
            if name in ("budget-squeeze", "budget-hard") and lw["budget_overrun_usd"] > 0:
                bad.append(f"budget_overrun_usd={lw['budget_overrun_usd']:.2f}")
            checks.setdefault(name, []).extend(f"seed {seed}: {b}" for b in bad)
            print(f"# {name} seed {seed}: " + " ".join(f"{p}={float(c['reward_ratio']):.4f}" for p, c in cards.items())
                  + f" overrun={float(lw['budget_overrun_usd']):.2f}", flush=True)
    policies = BASELINES + ["loopwise"]
    print("scenario        " + " ".join(f"{p[:12]:>12}" for p in policies) + "  target  verdict")
    for name, row in table.items():
        means = {p: statistics.mean(row[p]) for p in policies}
        target = RUNS[name][2]
        lw_min = min(row["loopwise"])
        ok = all(means["loopwise"] > means[p] for p in BASELINES) and not checks[name]
        ok = ok and (target is None or lw_min >= target)
        cells = " ".join(f"{means[p]:12.4f}" for p in policies)
        print(f"{name:15} {cells}  {target or '-':>6}  {'PASS' if ok else 'FAIL'} (loopwise min {lw_min:.4f})"
              + ("; " + "; ".join(checks[name]) if checks[name] else ""))
    print(f"settings: seeds {seeds}; " + "; ".join(f"{n} {d or 'default'}s@{r}/s" for n, (d, r, _) in RUNS.items()
                                                    if n in table) + f"; window {window}s; {config}")
    print(json.dumps({k: round(v, 2) for k, v in micro().items()}))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dump, fh, default=str)


if __name__ == "__main__":
    main()
