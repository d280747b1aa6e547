"""Router behaviour: hard constraints, cold start, forgetting, safe exploration, hysteresis, budget pacing."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.reward import reward
from processors.routing import Router, RouterConfig
from processors.routing.segments import typical_cost_usd
from schemas.records import (
    PRIVACY_RANK, Anomaly, Outcome, PrivacyLevel, RequestContext, RouteRequest, RouteSpec, Severity, SignalKind,
    Status, WorkflowDefinition,
)

SEG = "task=chat|privacy_level=public"
LEVELS = list(PrivacyLevel)


def route(name: str, **kw: object) -> RouteSpec:
    fields: dict[str, object] = {"provider": "p", "is_local": False, "max_privacy": PrivacyLevel.INTERNAL,
                                 "cost_per_1k_in_usd": 0.001, "cost_per_1k_out_usd": 0.002}
    fields.update(kw)
    return RouteSpec(name, **fields)  # type: ignore[arg-type]


def workflow(*routes: RouteSpec, **kw: object) -> WorkflowDefinition:
    return WorkflowDefinition("wf", "v1", 0, routes, **kw)  # type: ignore[arg-type]


def request(i: int, ts_ms: int, task: str = "chat", privacy: PrivacyLevel = PrivacyLevel.PUBLIC) -> RouteRequest:
    return RouteRequest(f"q{i}", ts_ms, "wf", RequestContext("acme", task, privacy))


def outcome(rid: str, ts_ms: int, name: str, *, ok: bool = True, latency_ms: float = 1000.0, cost_usd: float = 0.002,
            is_final: bool = False, quality: float | None = None, segment: str = SEG) -> Outcome:
    return Outcome(rid, ts_ms, ts_ms, "wf", "v1", name, segment, Status.OK if ok else Status.ERROR, latency_ms, cost_usd,
                   0.0, 0.0, 0.0, 0.0, 0.0, is_final, quality=quality)


def shares(router: Router, now_ms: int, segment: str = SEG) -> dict[str, float]:
    policy = router.policy("wf", segment, now_ms)
    assert policy is not None
    return {p.route: p.probability for p in policy.routes}


def run(router: Router, start_s: int, end_s: int, truth: dict[str, tuple[float, float]], rps: int = 5) -> dict[str, int]:
    """Decide and learn for ``[start_s, end_s)``; truth maps route -> (error rate as 1-in-k period, latency)."""
    counts: dict[str, int] = {}
    for s in range(start_s, end_s):
        for j in range(rps):
            ts = s * 1000 + j * (1000 // rps)
            d = router.decide(request(s * rps + j, ts), ts)
            counts[d.route] = counts.get(d.route, 0) + 1
            error_every, latency = truth[d.route]
            failed = error_every > 0 and (s * rps + j) % int(error_every) == 0
            router.learn(outcome(d.request_id, ts, d.route, ok=not failed, latency_ms=latency))
            router.learn(outcome(d.request_id, ts, d.route, is_final=True, quality=0.0 if failed else 0.8))
    return counts


@given(st.lists(st.tuples(st.sampled_from(LEVELS), st.sets(st.sampled_from(["chat", "code", "sql"]), max_size=2)),
                min_size=1, max_size=5),
       st.lists(st.tuples(st.sampled_from(LEVELS), st.sampled_from(["chat", "code", "sql"])), min_size=1, max_size=20),
       st.integers(0, 2**16))
def test_privacy_and_capability_are_never_violated(specs: list[tuple[PrivacyLevel, set[str]]],
                                                   contexts: list[tuple[PrivacyLevel, str]], seed: int) -> None:
    routes = tuple(route(f"r{i}", max_privacy=p, capabilities=tuple(sorted(c))) for i, (p, c) in enumerate(specs))
    router = Router(seed=seed)
    router.update_workflow(workflow(*routes, context_keys=("task", "privacy_level")))
    for i, (privacy, task) in enumerate(contexts):
        eligible = {r.name for r in routes if PRIVACY_RANK[r.max_privacy] >= PRIVACY_RANK[privacy]
                    and (not r.capabilities or task in r.capabilities)}
        decision = router.decide(request(i, i * 100, task, privacy), i * 100)
        assert (decision.route in eligible) if eligible else decision.route == ""
        policy = router.policy("wf", decision.segment, i * 100)
        assert policy is not None
        assert {p.route for p in policy.routes if p.probability > 0} <= eligible


def test_open_circuit_gets_probability_zero_and_no_decisions() -> None:
    router = Router(seed=3)
    router.update_workflow(workflow(route("a"), route("b")))
    router.open_circuit("a", until_ms=60_000)
    assert shares(router, 0) == {"b": 1.0}
    policy = router.policy("wf", SEG, 0)
    assert policy is not None and policy.excluded == {"a": "circuit open until 60000"}
    assert {router.decide(request(i, i * 10), i * 10).route for i in range(500)} == {"b"}
    router.close_circuit("a")
    assert "a" in {router.decide(request(i, 10_000 + i * 10), 10_000 + i * 10).route for i in range(500)}


def test_cold_start_follows_the_priors() -> None:
    router = Router(seed=1)
    good, poor = route("good", prior_quality=0.9, prior_latency_ms=800.0), route("poor", prior_quality=0.5)
    router.update_workflow(workflow(poor, good))
    policy = router.policy("wf", SEG, 0)
    assert policy is not None
    by_route = {p.route: p for p in policy.routes}
    expected = reward(0.9, 800.0, typical_cost_usd(good), False, workflow().objective)
    # Prior error rate 2 %: the reward formula with the same plug-in values.
    assert by_route["good"].expected_reward == pytest.approx(
        expected.quality * 0.98 - expected.latency - expected.cost - 0.02 * workflow().objective.error_weight)
    assert by_route["good"].probability > 0.9 > by_route["poor"].probability >= 0.01
    assert by_route["good"].n == 1  # the cost prior's pseudo-observation


def test_a_degraded_route_loses_its_share_within_two_minutes() -> None:
    router = Router(seed=5)
    router.update_workflow(workflow(route("a", prior_quality=0.8), route("b", prior_quality=0.8)))
    run(router, 0, 600, {"a": (0, 700.0), "b": (0, 1200.0)})
    assert shares(router, 600_000)["a"] > 0.9
    run(router, 600, 720, {"a": (2, 700.0), "b": (0, 1200.0)})  # half of a's requests now fail
    assert shares(router, 720_000)["a"] == pytest.approx(0.01)


def test_a_new_route_gets_a_bounded_exploration_share() -> None:
    router = Router(seed=7)
    a, b = route("a", prior_quality=0.7), route("b", prior_quality=0.7)
    router.update_workflow(workflow(a, b))
    run(router, 0, 300, {"a": (0, 900.0), "b": (0, 1000.0)})
    shiny = route("new", prior_quality=1.0, prior_latency_ms=100.0)
    router.update_workflow(dataclasses.replace(workflow(a, b, shiny), version="v2", ts_ms=300_000))
    assert 0.09 < shares(router, 300_000)["new"] <= 0.10
    counts = run(router, 300, 310, {"a": (0, 900.0), "b": (0, 1000.0), "new": (0, 100.0)}, rps=20)
    assert 0 < counts["new"] <= 30  # 10 % of 200 requests, sampling noise included


def test_hysteresis_publishes_big_changes_once_and_tiny_ones_never() -> None:
    router = Router(seed=2)
    router.update_workflow(workflow(route("a"), route("b")))
    router.decide(request(0, 0), 0)
    assert [p.segment for p in router.changed_policies(0)] == [SEG]
    router.learn(outcome("x", 500, "a"))
    assert router.changed_policies(1_000) == []
    router.open_circuit("b", until_ms=10**9)
    published = router.changed_policies(2_000)
    assert [(p.segment, p.excluded) for p in published] == [(SEG, {"b": "circuit open until 1000000000"})]
    assert router.changed_policies(3_000) == []
    assert [p.segment for p in router.changed_policies(2_000 + 300_000)] == [SEG]  # heartbeat


def test_budget_pacing_shifts_weight_to_cost() -> None:
    cheap = route("cheap", prior_quality=0.7, cost_per_1k_in_usd=0.0001, cost_per_1k_out_usd=0.0001)
    dear = route("dear", prior_quality=0.9, cost_per_1k_in_usd=0.002, cost_per_1k_out_usd=0.004)
    free, paced = Router(seed=1), Router(seed=1)
    free.update_workflow(workflow(cheap, dear))
    paced.update_workflow(workflow(cheap, dear, budget_usd_per_hour=1.0))
    for i in range(600):  # $0.002 a second: $7.2/h against a $1/h budget
        for r in (free, paced):
            for name, cost, quality in (("dear", 0.002, 0.9), ("cheap", 0.0002, 0.7)):
                r.learn(outcome(f"{name}{i}", i * 1000, name, cost_usd=cost))
                r.learn(outcome(f"{name}{i}", i * 1000, name, cost_usd=cost, is_final=True, quality=quality))
    assert paced.workflows["wf"].cost_scale == pytest.approx(50.0)
    assert free.workflows["wf"].cost_scale == 1.0
    assert shares(free, 600_000)["dear"] > 0.9
    assert shares(paced, 600_000)["cheap"] > 0.9
    # Under that pressure cheap capacity is planned harder before it is priced (towards the hard cap).
    c = paced.config
    assert free._capacity_target(free.workflows["wf"]) == c.capacity_target
    assert c.capacity_target < paced._capacity_target(paced.workflows["wf"]) <= c.headroom


def test_drift_anomaly_resets_a_route() -> None:
    router = Router(seed=1)
    router.update_workflow(workflow(route("a"), route("b")))
    for i in range(100):
        router.learn(outcome(f"x{i}", 1_000, "a"))
    before = router.workflows["wf"].loads["a"].error.weight
    drift = Anomaly("an1", 1_000, "a", "route", "latency_ms", SignalKind.DRIFT, 1.0, Severity.WARNING, 1.0, 0.0, 1.0,
                    0, 1_000, "drift", "1")
    assert router.on_anomaly(drift)
    assert router.workflows["wf"].loads["a"].error.weight == pytest.approx(before * 0.05)
    assert not router.on_anomaly(dataclasses.replace(drift, kind=SignalKind.ANOMALY))


def test_price_change_rescales_learned_costs_at_once() -> None:
    router = Router(seed=1)
    a = route("a")
    router.update_workflow(workflow(a))
    for i in range(50):
        router.learn(outcome(f"x{i}", 1_000, "a", cost_usd=0.004))
    mean = router.segments[("wf", SEG)].routes["a"].cost.mean
    dearer = dataclasses.replace(a, cost_per_1k_in_usd=0.003, cost_per_1k_out_usd=0.006)
    router.update_workflow(dataclasses.replace(workflow(dearer), version="v2", ts_ms=2_000))
    assert router.segments[("wf", SEG)].routes["a"].cost.mean == pytest.approx(mean * 3.0)


def test_capacity_is_planned_not_exceeded() -> None:
    router = Router(RouterConfig(headroom=0.5), seed=1)
    router.update_workflow(workflow(route("small", prior_quality=0.95, capacity_rps=4.0), route("big")))
    counts = run(router, 0, 60, {"small": (0, 500.0), "big": (0, 1500.0)}, rps=10)
    assert counts["small"] / 60 == pytest.approx(2.0, abs=0.3)  # headroom 0.5 of 4 rps


def test_scarce_capacity_goes_to_the_segment_that_loses_most_without_it() -> None:
    local = route("local", max_privacy=PrivacyLevel.RESTRICTED, capacity_rps=5.0, cost_per_1k_in_usd=0.0)
    cheap = route("cheap", max_privacy=PrivacyLevel.PUBLIC, cost_per_1k_in_usd=0.0)
    dear = route("dear", cost_per_1k_in_usd=0.04)
    router = Router(seed=11)
    router.update_workflow(workflow(local, cheap, dear))
    cost = {"local": 0.0, "cheap": 0.0, "dear": 0.04}
    latency = {"local": 900.0, "cheap": 1000.0, "dear": 1000.0}
    late: dict[tuple[str, str], int] = {}
    for s in range(600):
        for j in range(10):  # 8 public and 2 internal requests a second; local can plan 3
            privacy = PrivacyLevel.INTERNAL if j < 2 else PrivacyLevel.PUBLIC
            ts = s * 1000 + j * 100
            d = router.decide(request(s * 10 + j, ts, privacy=privacy), ts)
            for final, q in ((False, None), (True, 0.8)):
                router.learn(outcome(d.request_id, ts, d.route, latency_ms=latency[d.route], cost_usd=cost[d.route],
                                     is_final=final, quality=q, segment=d.segment))
            if s >= 540:
                late[(str(privacy), d.route)] = late.get((str(privacy), d.route), 0) + 1
    assert late[("internal", "local")] / 120 > 0.9
    assert late.get(("public", "local"), 0) / 480 < 0.3
