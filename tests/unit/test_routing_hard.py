"""Router on issue-13 situations: quality-only regressions seen in feedback alone, hard budgets, and their snapshots."""

from __future__ import annotations

import json
import random

from processors.routing import Router
from processors.routing.budget import HardBudget
from processors.routing.shift import QualityShift
from tests.unit.test_routing import SEG, outcome, request, route, shares, workflow


def feed(router: Router, start_s: int, end_s: int, quality: dict[str, float], rps: int = 10, seed: int = 3) -> dict[str, int]:
    """Decide, then learn same-latency, same-error outcomes whose only difference is the feedback quality."""
    rng = random.Random(seed * 1_000 + start_s)
    counts: dict[str, int] = {}
    for s in range(start_s, end_s):
        for j in range(rps):
            ts = s * 1000 + j * (1000 // rps)
            d = router.decide(request(s * rps + j, ts), ts)
            counts[d.route] = counts.get(d.route, 0) + 1
            if not d.route:  # refused (hard budget)
                continue
            router.learn(outcome(d.request_id, ts, d.route))
            q = min(1.0, max(0.0, quality[d.route] + rng.gauss(0.0, 0.2)))
            router.learn(outcome(d.request_id, ts, d.route, is_final=True, quality=q))
    return counts


def two_routes() -> Router:
    router = Router(seed=2)
    router.update_workflow(workflow(route("a", prior_quality=0.8), route("b", prior_quality=0.8)))
    return router


def test_a_quality_only_regression_is_detected_from_feedback_and_routed_away() -> None:
    router = two_routes()
    feed(router, 0, 600, {"a": 0.85, "b": 0.80})
    assert not router.shift_log, "no shift while nothing changed"
    before = feed(router, 600, 660, {"a": 0.85, "b": 0.80})
    after = feed(router, 660, 780, {"a": 0.60, "b": 0.80})  # a drops by 0.25; latency, errors, cost unchanged
    alarms = [x for x in router.shift_log if x[2] == "a"]
    assert alarms and alarms[0][4] < -0.15 and alarms[0][0] < 700_000
    late = feed(router, 780, 840, {"a": 0.60, "b": 0.80})
    assert late.get("a", 0) < before.get("a", 0) / 2
    assert after  # the regression's evidence came from the requests routed meanwhile
    policy = router.policy("wf", SEG, 840_000)
    assert policy is not None and any("quality shift of a" in r for r in policy.reasons)


def test_no_shift_alarm_in_a_long_steady_run() -> None:
    router = two_routes()
    feed(router, 0, 1800, {"a": 0.85, "b": 0.80}, rps=5)
    assert router.shift_log == []


def test_cusum_finds_the_size_of_a_step() -> None:
    s = QualityShift()
    rng = random.Random(1)
    assert all(s.observe(rng.gauss(0.0, 0.25)) is None for _ in range(3_000))
    found = next(a for a in (s.observe(rng.gauss(-0.25, 0.25)) for _ in range(500)) if a is not None)
    assert -0.4 < found[0] < -0.12 and found[1] < 200


def test_hard_budget_never_lets_the_hour_pass_its_pro_rata_budget() -> None:
    router = Router(seed=1)
    # Expensive "a" is the better route; a $0.36/h hard budget affords ~1 request per 20 s of "a" at 5 req/s.
    router.update_workflow(workflow(route("a", prior_quality=0.95, cost_per_1k_in_usd=0.001),
                                    route("b", prior_quality=0.6, cost_per_1k_in_usd=0.0001, cost_per_1k_out_usd=0.0001),
                                    budget_usd_per_hour=0.36, budget_mode="hard"))
    spent, reasons = 0.0, set()
    for i in range(5 * 600):
        ts = i * 200
        d = router.decide(request(i, ts), ts)
        reasons.add(d.reason)
        if i % 50 == 0:
            policy = router.policy("wf", SEG, ts)
            assert policy is not None
            reasons.update(policy.reasons)
        if d.route:
            cost = 0.002 if d.route == "a" else 0.0001
            spent += cost
            router.learn(outcome(d.request_id, ts, d.route, cost_usd=cost))
        assert spent <= 0.36 * (ts + 1) / 3_600_000 + 1e-9, f"over the pro-rata budget at {ts} ms"
    assert any("hard budget" in r and "degraded to the cheapest route b" in r for r in reasons)


def test_hard_budget_refuses_when_even_the_cheapest_route_does_not_fit() -> None:
    router = Router(seed=1)
    router.update_workflow(workflow(route("a"), budget_usd_per_hour=0.001, budget_mode="hard"))
    d = router.decide(request(1, 1000), 1000)
    assert d.route == "" and "hard budget" in d.reason


def test_soft_is_the_default_and_keeps_pacing_only() -> None:
    router = Router(seed=1)
    router.update_workflow(workflow(route("a"), budget_usd_per_hour=0.001))
    assert router.decide(request(1, 1000), 1000).route == "a"


def test_snapshot_keeps_shift_detectors_and_hard_budget() -> None:
    router = Router(seed=5)
    router.update_workflow(workflow(route("a", prior_quality=0.8), route("b", prior_quality=0.8),
                                    budget_usd_per_hour=50.0, budget_mode="hard"))
    feed(router, 0, 400, {"a": 0.85, "b": 0.80})
    feed(router, 400, 500, {"a": 0.55, "b": 0.80})
    state = json.loads(json.dumps(router.snapshot()))
    twin = Router.restore(state)
    assert twin.snapshot() == router.snapshot()
    assert feed(twin, 500, 560, {"a": 0.55, "b": 0.80}) == feed(router, 500, 560, {"a": 0.55, "b": 0.80})
    assert twin.shift_log == router.shift_log
    assert shares(twin, 560_000) == shares(router, 560_000)


def test_hard_budget_state_round_trips() -> None:
    h = HardBudget(10.0)
    h.reserve("x", 5_000, 0.01)
    h.settle("y", 5_000, 0.002)
    twin = HardBudget.from_dict(json.loads(json.dumps(h.to_dict())))
    assert twin.allowance(6_000) == h.allowance(6_000)
