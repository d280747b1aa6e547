"""The capacity simulation the bench runs: seeded demand, obeyed scale_to, honest job accounting."""

from __future__ import annotations

import numpy as np

from infra.simulator.capacity import (
    PredictiveScaler, ReactiveScaler, make_demand, make_jobs, run_jobs, run_scaling,
)
from infra.simulator.control import ControlState
from infra.simulator.loader import load_scenario
from infra.simulator.truth import Truth
from processors.capacity.jobs import PriceSchedule
from processors.capacity.scaling import ScalingConfig
from schemas.records import Command


def test_demand_is_seeded_and_follows_the_daily_curve() -> None:
    scenario = load_scenario("day")
    a, b = make_demand(scenario, 1, 7), make_demand(scenario, 1, 7)
    assert np.array_equal(a.observed, b.observed)
    total = a.mean.sum(axis=0)
    assert total[14 * 60] > 2 * total[2 * 60]  # 14:00 peak vs the night


def test_scale_to_lands_after_the_provisioning_delay_and_scale_down_at_once() -> None:
    control = ControlState(Truth(load_scenario("day"), 200.0))
    (r,) = control.truth.route_index("gpt-large")
    base = float(control.truth.capacity[r])
    up = Command("c1", 0, "gpt-large", "scale_to", "", "{}", 10**9, "lw", "sig",
                 params={"replicas": "3", "replica_rps": f"{base}"})
    assert control.apply_command(up, 0)
    assert control.capacity_scale(control.provisioning_delay_ms - 1)[r] == 1.0
    assert control.capacity_scale(control.provisioning_delay_ms)[r] == 3.0
    down = Command("c2", 0, "gpt-large", "scale_to", "", "{}", 10**9, "lw", "sig",
                   params={"replicas": "2", "replica_rps": f"{base}"})
    control.apply_command(down, 400_000)
    assert control.capacity_scale(400_000)[r] == 2.0


def test_predictive_scaling_never_changes_direction_twice_in_30_minutes() -> None:
    demand = make_demand(load_scenario("day"), 1, 3)
    n = len(demand.routes)
    run = run_scaling(demand, PredictiveScaler(n, ScalingConfig(replica_rps=10.0), demand.start_ms),
                      replica_rps=10.0)
    reactive = run_scaling(demand, ReactiveScaler(n, 10.0), replica_rps=10.0)
    assert run.max_direction_changes_30m <= 1 < reactive.max_direction_changes_30m


def test_jobs_are_released_after_their_dependencies_and_cheaper_than_fifo() -> None:
    jobs = make_jobs(1, 1, 0, per_day=40)
    prices = PriceSchedule({"*": [0.5] * 7 + [1.3] * 15 + [0.7] * 2})
    fifo = run_jobs(jobs, prices, "fifo", 1, 3 * 86_400_000)
    smart = run_jobs(jobs, prices, "loopwise", 1, 3 * 86_400_000)
    assert smart.released_before_deps == fifo.released_before_deps == 0 and smart.released_twice == 0
    assert smart.missed_deadlines == 0 and smart.cost_usd < fifo.cost_usd
