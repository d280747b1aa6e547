"""Experiment engine quality and cost: A/A false winners, power at a 5 % lift, time to decision, µs per call.

Run: ``.venv/bin/python -m bench.experiments [--runs 200] [--workers 2] [--arms 3] [--compare-thompson]``
(about 2 minutes on 2 idle cores for the defaults; ``--compare-thompson`` repeats
the runs with plain Thompson sampling, the alternative to top-two).

Simulation (seeded, event time, no broker): one request per second of event
time, each assigned by ``ExperimentEngine.assign`` (unit = request, not sticky);
its final outcome reaches the engine when the feedback window closes, 600 s
later (the correlator's behaviour, with a short window); ``decide`` runs every
60 s of event time. The primary metric is the reward, Gaussian with mean 0.50
and sd 0.30 (the platform's reward is on that scale: quality 0–1 less small
penalties); the treatment's mean is 0.525 under a 5 % relative lift, 0.50 in
A/A. 2 % of requests fail, in both arms (an ``error_rate`` guardrail watches
them). Horizon: 6,000 requests per arm (12,000 and 3 h 20 min of event time
with two arms); a run that has not decided by then counts as "no winner".
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from processors.experiments import ExperimentConfig, ExperimentEngine
from schemas.records import ExperimentSpec, Outcome, Status, VariantSpec

BASE_MEAN, SD, LIFT = 0.50, 0.30, 0.05
ERROR_P = 0.02
HORIZON_PER_ARM = 6_000
STEP_MS = 1_000
WINDOW_MS = 600_000
DECIDE_EVERY_MS = 60_000
START_MS = 1_700_000_000_000
SPEC = ExperimentSpec("greeting", min_share=0.05, guardrails=("error_rate",))
VARIANTS = (VariantSpec("control", is_control=True), VariantSpec("treatment"))
#: ``--arms 3`` adds a second challenger as good as control (A/B/A): top-two allocation then adapts.
THIRD = VariantSpec("challenger")


def _outcome(i: int, variant: str, reward: float, is_error: bool, request_ts_ms: int) -> Outcome:
    return Outcome(request_id=f"r{i}", ts_ms=request_ts_ms + WINDOW_MS, request_ts_ms=request_ts_ms,
                   workflow="bot", workflow_version="v1", route="m", segment="all",
                   status=Status.ERROR if is_error else Status.OK, latency_ms=800.0, cost_usd=0.002,
                   reward=reward, reward_quality=reward, reward_latency=0.0, reward_cost=0.0, reward_error=0.0,
                   is_final=True, variant=variant)


def run_one(seed: int, lift: float, beta: float | None = 0.5, arms: int = 2) -> dict[str, Any]:
    """One seeded experiment; its winner (or None), the samples and event time it took, whether SRM ever alarmed."""
    rng = np.random.default_rng(seed)
    horizon = HORIZON_PER_ARM * arms
    noise = rng.standard_normal(horizon) * SD
    errors = rng.random(horizon) < ERROR_P
    means = {"control": BASE_MEAN, "treatment": BASE_MEAN * (1.0 + lift), "challenger": BASE_MEAN}
    variants = VARIANTS + (THIRD,) * (arms - 2)
    engine = ExperimentEngine(SPEC, "bot", variants, ExperimentConfig(seed=seed, top_two_beta=beta))
    srm_alarm = False
    pending: list[Outcome] = []
    head = 0
    next_decide = START_MS + DECIDE_EVERY_MS
    for i in range(horizon + WINDOW_MS // STEP_MS + 1):
        now = START_MS + i * STEP_MS
        while head < len(pending) and pending[head].ts_ms <= now:
            engine.observe(pending[head])
            head += 1
        if now >= next_decide:
            decision = engine.decide(now)
            next_decide += DECIDE_EVERY_MS
            srm_alarm |= decision is not None and decision.srm_p_value < engine.config.srm_alpha
            if decision is not None and decision.winner is not None:
                return {"winner": decision.winner, "n": sum(a.n for a in decision.arms),
                        "t_s": (now - START_MS) / 1000.0, "guard_retired": 0, "srm_alarm": srm_alarm}
        if i < horizon:
            variant = engine.assign(f"r{seed}-{i}", now)
            pending.append(_outcome(i, variant, means[variant] + float(noise[i]), bool(errors[i]), now))
    retired = sum(1 for r in engine.state.reasons.values() if r == "guardrail breach")
    return {"winner": None, "n": sum(engine.state.observed), "t_s": None, "guard_retired": retired,
            "srm_alarm": srm_alarm}


def quality(runs: int, workers: int, beta: float | None = 0.5, arms: int = 2) -> dict[str, Any]:
    """A/A and lift runs (seeds 0..runs-1 and runs..2*runs-1), summarised."""
    with ProcessPoolExecutor(max_workers=workers) as pool:
        aa = list(pool.map(run_one, range(runs), [0.0] * runs, [beta] * runs, [arms] * runs, chunksize=8))
        ab = list(pool.map(run_one, range(runs, 2 * runs), [LIFT] * runs, [beta] * runs, [arms] * runs, chunksize=8))
    decided = [r for r in ab if r["winner"] is not None]
    return {
        "aa_false_winner": sum(r["winner"] is not None for r in aa) / runs,
        "aa_guardrail_retired": sum(r["guard_retired"] for r in aa) / runs,
        "aa_srm_alarm": sum(r["srm_alarm"] for r in aa) / runs,
        "right_winner": sum(r["winner"] == "treatment" for r in ab) / runs,
        "wrong_winner": sum(r["winner"] not in (None, "treatment") for r in ab) / runs,
        "median_n": statistics.median(r["n"] for r in decided) if decided else float("nan"),
        "median_t_s": statistics.median(r["t_s"] for r in decided) if decided else float("nan"),
    }


def cost(n: int = 100_000) -> dict[str, float]:
    """CPU µs per observe, per assign, per decide; and a bare loop over the same outcomes (the floor)."""
    rng = np.random.default_rng(7)
    outcomes = [_outcome(i, "control" if i % 2 else "treatment", float(x), False, START_MS + i)
                for i, x in enumerate(rng.normal(0.5, 0.3, n))]
    engine = ExperimentEngine(SPEC, "bot", VARIANTS)
    t0 = time.process_time()
    for o in outcomes:
        _ = (o.is_final, o.variant)
    floor = time.process_time() - t0
    t0 = time.process_time()
    for o in outcomes:
        engine.observe(o)
    observe = time.process_time() - t0
    units = [f"user-{i}" for i in range(n)]
    t0 = time.process_time()
    for u in units:
        engine.assign(u, START_MS + n)
    assign = time.process_time() - t0
    t0 = time.process_time()
    for i in range(1000):
        engine.decide(START_MS + n + i * 60_000)
    decide = time.process_time() - t0
    return {"floor_us": floor / n * 1e6, "observe_us": observe / n * 1e6, "assign_us": assign / n * 1e6,
            "decide_us": decide / 1000 * 1e6}


def main() -> None:
    """Print every figure with its target and PASS/FAIL."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--arms", type=int, choices=(2, 3), default=2,
                        help="3 adds a challenger as good as control (A/A/A and A/B/A runs)")
    parser.add_argument("--compare-thompson", action="store_true",
                        help="also run plain Thompson sampling (beta=None) to compare with top-two")
    args = parser.parse_args()
    t0 = time.perf_counter()
    q = quality(args.runs, args.workers, arms=args.arms)
    wall = time.perf_counter() - t0
    c = cost()
    print(f"simulation: reward N({BASE_MEAN}, {SD}^2), treatment +{LIFT:.0%} relative ({BASE_MEAN * (1 + LIFT):.3f}), "
          f"1 req/s, outcome final after {WINDOW_MS // 1000} s, decide every {DECIDE_EVERY_MS // 1000} s, "
          f"horizon {HORIZON_PER_ARM * args.arms} requests, {args.arms} arms; "
          f"{args.runs} A/A + {args.runs} lift runs in {wall:.1f} s")
    rows = [("A/A false winner rate", q["aa_false_winner"], "<= 5 %", q["aa_false_winner"] <= 0.05),
            ("lift: right winner rate", q["right_winner"], ">= 80 %", q["right_winner"] >= 0.80),
            ("lift: wrong winner rate", q["wrong_winner"], "<= 5 %", q["wrong_winner"] <= 0.05)]
    for name, value, target, ok in rows:
        print(f"  {name:<28} {value:7.1%}   target {target:<8} {'PASS' if ok else 'FAIL'}")
    print(f"  {'A/A guardrail retirements':<28} {q['aa_guardrail_retired']:7.3f} per run (error_rate, no true breach)")
    print(f"  {'A/A runs with an SRM alarm':<28} {q['aa_srm_alarm']:7.1%}   (chi-square p < 0.001 at any look)")
    print(f"  {'median samples to decision':<28} {q['median_n']:7.0f}   (final outcomes, all arms)")
    window_min = WINDOW_MS // 60000
    print(f"  {'median event time to decision':<28} {q['median_t_s'] / 60:7.1f} min "
          f"(incl. the {window_min} min feedback window)")
    if args.compare_thompson:
        t = quality(args.runs, args.workers, beta=None, arms=args.arms)
        print(f"plain Thompson sampling, same runs: A/A false winner {t['aa_false_winner']:.1%}, right winner "
              f"{t['right_winner']:.1%}, wrong {t['wrong_winner']:.1%}, median samples {t['median_n']:.0f}, "
              f"A/A SRM alarms {t['aa_srm_alarm']:.1%}")
    print(f"cost (CPU µs per call, one core): observe {c['observe_us']:.2f}, assign {c['assign_us']:.2f}, "
          f"decide {c['decide_us']:.1f}; bare loop over the same outcomes {c['floor_us']:.2f}")


if __name__ == "__main__":
    main()
