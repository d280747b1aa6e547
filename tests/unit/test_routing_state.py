"""Router determinism, JSON snapshots, once-only learning, and the parts (estimates, bandit, budget)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.routing import Router
from processors.routing.bandit import safe_shares, thompson_shares, total_variation
from processors.routing.budget import BudgetPacer
from processors.routing.estimates import DecayedMean
from tests.unit.test_routing import SEG, outcome, request, route, run, workflow


def trained(seed: int) -> Router:
    router = Router(seed=seed)
    router.update_workflow(workflow(route("a", prior_quality=0.8), route("b", prior_quality=0.75),
                                    route("c", capacity_rps=3.0), budget_usd_per_hour=5.0))
    run(router, 0, 120, {"a": (50, 900.0), "b": (0, 1100.0), "c": (3, 400.0)})
    return router


def decisions(router: Router, start_s: int, n: int = 300) -> list[tuple[str, float, int]]:
    out = []
    for i in range(n):
        ts = start_s * 1000 + i * 50
        d = router.decide(request(10_000 + i, ts), ts)
        out.append((d.route, d.probability, d.policy_version))
    return out


def test_same_seed_same_decisions_and_another_seed_differs() -> None:
    assert decisions(trained(4), 120) == decisions(trained(4), 120)
    assert [d[0] for d in decisions(trained(4), 120)] != [d[0] for d in decisions(trained(5), 120)]


def test_snapshot_restore_gives_identical_subsequent_decisions() -> None:
    original = trained(9)
    state = json.loads(json.dumps(original.snapshot()))  # plain JSON, no pickle
    restored = Router.restore(state)
    assert decisions(restored, 120) == decisions(original, 120)
    assert restored.snapshot() == original.snapshot()
    p1, p2 = original.policy("wf", SEG, 200_000), restored.policy("wf", SEG, 200_000)
    assert p1 == p2


def test_provisional_and_final_outcomes_are_counted_once() -> None:
    router = Router(seed=1)
    router.update_workflow(workflow(route("a")))
    load, = router.workflows["wf"].loads.values()
    w0 = load.latency.weight
    assert router.learn(outcome("r1", 1_000, "a", latency_ms=500.0))
    assert not router.learn(outcome("r1", 1_000, "a", latency_ms=500.0))  # a replayed provisional
    assert load.latency.weight == pytest.approx(w0 * 0.5 ** (1 / 120) + 1.0)
    quality = router.segments[("wf", SEG)].routes["a"].quality
    q0 = quality.weight
    assert router.learn(outcome("r1", 1_000, "a", is_final=True, quality=1.0))
    assert quality.weight == pytest.approx(q0 * 0.5 ** (1 / 900) + 1.0)
    assert load.latency.weight == pytest.approx(w0 * 0.5 ** (1 / 120) + 1.0)  # final adds no latency
    # A final whose provisional was never seen (a restart) teaches latency once, and quality.
    assert router.learn(outcome("r2", 2_000, "a", is_final=True, quality=0.0, latency_ms=1500.0))
    assert load.latency.weight == pytest.approx((w0 * 0.5 ** (1 / 120) + 1.0) * 0.5 ** (1 / 120) + 1.0)
    assert not router.learn(outcome("r9", 2_000, "unknown-route"))


def test_decayed_mean_halves_its_weight_per_half_life() -> None:
    m = DecayedMean(1_000, prior_mean=0.0, prior_std=1.0, prior_weight=0.0, ts_ms=0)
    for _ in range(4):
        m.add(2.0, 0)
    m.decay_to(2_000)
    assert (m.weight, m.mean) == (1.0, 2.0)
    assert m.std_of_mean(0.5) == 0.5  # variance 0 -> the floor, over weight 1
    assert DecayedMean.from_dict(json.loads(json.dumps(m.to_dict()))).to_dict() == m.to_dict()


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8), st.data())
def test_safe_shares_sum_to_one_respect_floor_and_cap(raw: list[float], data: st.DataObject) -> None:
    is_new = data.draw(st.lists(st.booleans(), min_size=len(raw), max_size=len(raw)))
    shares = safe_shares(raw if sum(raw) > 0 else [1.0] * len(raw), is_new, 0.01, 0.1)
    assert sum(shares) == pytest.approx(1.0)
    assert min(shares) >= min(0.01, 1 / len(raw)) - 1e-9
    if any(is_new) and not all(is_new) and len(raw) * 0.01 <= 1:
        assert max(s for s, new in zip(shares, is_new) if new) <= 0.1 + 1e-9


def test_thompson_shares_split_equal_routes_and_pick_a_clear_winner() -> None:
    z = np.random.default_rng(0).standard_normal((4096, 3))
    equal = thompson_shares([0.5, 0.5, 0.5], [0.1, 0.1, 0.1], z)
    assert total_variation(equal, [1 / 3] * 3) < 0.02
    assert thompson_shares([0.9, 0.5, 0.1], [0.01, 0.01, 0.01], z) == [1.0, 0.0, 0.0]


def test_budget_pacer_relaxes_back_to_one_under_budget() -> None:
    pacer = BudgetPacer(36.0, half_life_ms=60_000)
    for t in range(0, 300_000, 1_000):
        pacer.add(0.05, t)  # $180/h
    high = pacer.cost_scale
    for t in range(300_000, 2_700_000, 1_000):
        pacer.add(0.001, t)  # $3.6/h: the $15 spent early is paid back by ~27 min, then the scale decays
    assert high == pytest.approx(50.0) and pacer.cost_scale == 1.0


@pytest.mark.parametrize("overspend", [1.5, 3.0, 10.0])
def test_budget_pacer_pays_back_an_early_overrun_within_the_hour(overspend: float) -> None:
    # A workflow whose spend falls as its cost weight rises (spend = base / scale), starting far over budget.
    budget = 36.0
    pacer = BudgetPacer(budget, gain=3.0)
    spent = 0.0
    for t in range(0, 3_600_000, 1_000):
        cost = overspend * budget / 3600.0 / pacer.cost_scale
        pacer.add(cost, t)
        spent += cost
    assert 0.8 * budget < spent <= budget
