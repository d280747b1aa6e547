"""Canary rollouts on the simulator: rollback speed, bad-version exposure, promotion time, A/A false rollbacks, power.

Scenario figures run the simulator offline with ``infra.simulator.rollout_policy``:
``loopwise-rollout`` (the product's ``OutcomeCorrelator`` + ``RolloutController``
deciding the split; each request runs under the version it assigns) against
``deploy-and-hope`` (same routing; the canary steps on the plan's schedule and
is never rolled back) and the oracle, on the same seeded traffic.

The many-seed figures run the same ``RolloutController`` (the verdict processor)
on simulated samples shaped like ``steady`` (200 req/s, 0.5 % errors, log-normal
latency and cost, quality feedback on half the requests 5 min later), for an
A/A canary and for a canary whose quality is 5 % lower, over the plan 5/25/50/100 %
every 3 min, for 40 min of event time.

    .venv/bin/python -m bench.rollouts                 # everything (~15 min on a busy 2-core machine)
    .venv/bin/python -m bench.rollouts --seeds 200 --skip-scenarios

Targets (issue 14): canary-bad rolled back ≤ 180 s after the canary starts and ≤ 5 % of
requests on the bad version; canary-good promoted to 100 % without rollback;
A/A false rollbacks ≤ 5 %; 5 % quality regression rolled back in ≥ 80 % of seeds;
reward/oracle above deploy-and-hope on both canary scenarios.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any, Sequence

import numpy as np

from infra.simulator.environment import Environment, drive
from infra.simulator.loader import load_scenario
from infra.simulator.offline import run_offline
from infra.simulator.rollout_policy import BENCH_KEY, DeployAndHopePolicy, RolloutPolicy
from processors.experiments.sequential import Moments
from processors.rollout import RolloutController, RolloutStatus, VersionSample
from schemas.records import PrivacyLevel, RequestEvent, RolloutPlan, RolloutVerdict, RouteSpec, WorkflowDefinition

_DURATIONS_S = {"canary-bad": 900.0, "canary-good": 1800.0, "canary-aa": 1800.0}


# ---------------------------------------------------------------------------- scenarios


def scenario_figures(name: str, seed: int) -> dict[str, Any]:
    """Run loopwise-rollout, deploy-and-hope and the oracle on one canary scenario."""
    scenario = load_scenario(name)
    event = next(e for e in scenario.timeline if e.kind == "canary")
    start_ms = scenario.start_ms + int(event.start_s * 1000)
    duration_s = _DURATIONS_S.get(name)
    oracle = float(run_offline(scenario, "oracle", seed, duration_s).scorecard["reward"])
    out: dict[str, Any] = {}
    for policy in (RolloutPolicy(seed), DeployAndHopePolicy(seed)):
        served: Counter[str] = Counter()

        def count(records: Sequence[Any]) -> None:
            for r in records:
                if isinstance(r, RequestEvent):
                    served[r.workflow_version] += 1

        started = time.perf_counter()
        result = drive(Environment(scenario, policy, seed=seed, duration_s=duration_s), sink=count)
        key = policy.name
        out[f"{key}_reward_oracle"] = float(result.scorecard["reward"]) / oracle
        out[f"{key}_canary_share"] = served[str(event.params.get("version"))] / max(sum(served.values()), 1)
        out[f"{key}_wall_s"] = time.perf_counter() - started
        steps = getattr(policy, "steps", [])
        for verdict in (RolloutVerdict.ROLLBACK, RolloutVerdict.PROMOTE):
            found = [s for s in steps if s.verdict is verdict]
            out[f"{key}_{verdict}_after_s"] = (found[0].ts_ms - start_ms) / 1000.0 if found else None
        if steps:
            out[f"{key}_steps"] = [(round((s.ts_ms - start_ms) / 1000.0), str(s.verdict), s.traffic_share) for s in steps]
    return out


# ---------------------------------------------------------------------------- many seeds


def _merge(m: Moments, xs: np.ndarray) -> None:
    """Fold a batch into running moments (Chan et al.'s parallel update)."""
    n_b = len(xs)
    if not n_b:
        return
    mean_b = float(xs.mean())
    m2_b = float(((xs - mean_b) ** 2).sum())
    n = m.n + n_b
    delta = mean_b - m.mean
    m.mean += delta * n_b / n
    m.m2 += m2_b + delta * delta * m.n * n_b / n
    m.n = n


def _add_requests(sample: VersionSample, rng: np.random.Generator, n: int) -> None:
    errors = (rng.random(n) < 0.005).astype(float)
    _merge(sample.errors, errors)
    _merge(sample.cost, rng.lognormal(np.log(0.004), 0.5, n))
    latency = rng.lognormal(np.log(1100.0), 0.4, int(n - errors.sum()))
    index = np.minimum((np.log(np.maximum(latency, 1.0)) / np.log(1.05)).astype(np.int64), 400)  # LatencyHistogram.bucket
    buckets, counts = np.unique(index, return_counts=True)
    for b, c in zip(buckets.tolist(), counts.tolist()):
        sample.latency.counts[b] = sample.latency.counts.get(b, 0) + c
    sample.latency.n += int(counts.sum())


def one_canary(seed: int, quality_factor: float, minutes: float = 40.0, rate: float = 200.0) -> str:
    """One simulated canary: ``rolled_back``, ``promoted`` or ``running`` at the end."""
    rng = np.random.default_rng(seed)
    plan = RolloutPlan(steps=(0.05, 0.25, 0.5, 1.0), step_duration_s=180.0, max_regression=0.05)
    route = RouteSpec("r", "p", False, PrivacyLevel.PUBLIC, 0.001, 0.001)
    controller = RolloutController(BENCH_KEY, "bench")
    controller.on_definition(WorkflowDefinition("wf", "v1", 0, (route,)), 0)
    controller.on_definition(WorkflowDefinition("wf", "v2", 1, (route,), previous_version="v1", rollout=plan), 0)
    rollout = controller.rollouts["wf"]
    pending: list[tuple[int, np.ndarray, np.ndarray]] = []  # (due ms, baseline quality, canary quality)
    chunk_s = 5
    for t_s in range(0, int(minutes * 60), chunk_s):
        now_ms = t_s * 1000
        n = int(rng.poisson(rate * chunk_s))
        n_c = int(rng.binomial(n, rollout.share))
        _add_requests(rollout.baseline, rng, n - n_c)
        _add_requests(rollout.canary, rng, n_c)
        with_feedback = (rng.random(n) < 0.5)
        q = np.clip(rng.normal(0.85, 0.2, n), 0.0, 1.0)
        q[:n_c] *= quality_factor
        pending.append((now_ms + 300_000, q[n_c:][with_feedback[n_c:]], q[:n_c][with_feedback[:n_c]]))
        while pending and pending[0][0] <= now_ms:
            _, q_b, q_c = pending.pop(0)
            _merge(rollout.baseline.quality, q_b)
            _merge(rollout.canary.quality, q_c)
        controller.advance(now_ms)
        if rollout.status is RolloutStatus.ROLLED_BACK:
            return "rolled_back"
        if rollout.status is RolloutStatus.PROMOTED:
            return "promoted"
    return "running"


def seed_figures(seeds: int) -> dict[str, Any]:
    started = time.perf_counter()
    aa = Counter(one_canary(seed, 1.0) for seed in range(seeds))
    bad = Counter(one_canary(10_000 + seed, 0.95) for seed in range(seeds))
    return {"aa": dict(aa), "aa_false_rollback_rate": aa["rolled_back"] / seeds,
            "regression5": dict(bad), "regression5_rollback_rate": bad["rolled_back"] / seeds,
            "seeds": seeds, "seeds_wall_s": time.perf_counter() - started}


# ---------------------------------------------------------------------------- report


def checks(f: dict[str, Any]) -> list[tuple[str, Any, str, bool]]:
    rows: list[tuple[str, Any, str, bool]] = []
    if "aa_false_rollback_rate" in f:
        rows += [("A/A false rollbacks", f"{f['aa_false_rollback_rate']:.3f} of {f['seeds']} seeds {f['aa']}", "<= 0.05",
                  f["aa_false_rollback_rate"] <= 0.05),
                 ("5 % quality regression rolled back", f"{f['regression5_rollback_rate']:.3f} {f['regression5']}",
                  ">= 0.80", f["regression5_rollback_rate"] >= 0.80)]
    bad, good = f.get("canary-bad"), f.get("canary-good")
    if bad:
        after = bad.get("loopwise-rollout_rollback_after_s")
        rows += [("canary-bad rollback after (event s)", after, "<= 180", after is not None and after <= 180),
                 ("canary-bad requests on v2", f"{bad['loopwise-rollout_canary_share']:.4f}", "<= 0.05",
                  bad["loopwise-rollout_canary_share"] <= 0.05)]
    if good:
        rows += [("canary-good promoted after (event s)", good.get("loopwise-rollout_promote_after_s"), "promoted, no rollback",
                  good.get("loopwise-rollout_promote_after_s") is not None
                  and good.get("loopwise-rollout_rollback_after_s") is None)]
    for name in ("canary-bad", "canary-good", "canary-aa"):
        s = f.get(name)
        if s:
            ours, base = s["loopwise-rollout_reward_oracle"], s["deploy-and-hope_reward_oracle"]
            rows.append((f"{name} reward/oracle", f"{ours:.4f}", f"> deploy-and-hope {base:.4f}",
                         ours > base if name != "canary-aa" else ours >= base - 0.005))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--skip-scenarios", action="store_true")
    parser.add_argument("--scenarios", default="canary-bad,canary-good,canary-aa")
    args = parser.parse_args(argv)
    figures: dict[str, Any] = seed_figures(args.seeds) if args.seeds else {}
    if figures:
        print(f"many-seed figures in {figures['seeds_wall_s']:.1f} s", flush=True)
    if not args.skip_scenarios:
        for name in args.scenarios.split(","):
            figures[name] = scenario_figures(name, args.seed)
            print(name, {k: v for k, v in figures[name].items() if not k.endswith("_steps")}, flush=True)
            print("  loopwise-rollout steps (s after canary start, verdict, share):",
                  figures[name].get("loopwise-rollout_steps"), flush=True)
    rows = checks(figures)
    print(f"\nrollouts bench (seed {args.seed}; scenarios at 200 req/s; verdict processor over {args.seeds} seeds)")
    width = max(len(r[0]) for r in rows) if rows else 10
    for name, value, target, passed in rows:
        print(f"  {name:<{width}}  {str(value):<40} target {target:<28} {'PASS' if passed else 'FAIL'}")
    return 0 if all(r[3] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
