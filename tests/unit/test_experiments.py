"""ExperimentEngine: allocation floors, stickiness, SRM, winner rules, guardrails, determinism, snapshots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.experiments import ExperimentConfig, ExperimentEngine, Rules, unit_of
from processors.experiments.allocation import bucket
from schemas.records import (
    ArmStatus, ExperimentDecision, ExperimentSpec, ExperimentStatus, Outcome, RequestContext, Status, VariantSpec,
)
from tests.factories import make_workflow

T0 = 1_700_000_000_000
AB = (VariantSpec("control", is_control=True), VariantSpec("treatment"))
ABC = AB + (VariantSpec("third"),)


def outcome(variant: str, reward: float, i: int = 0, *, is_final: bool = True, status: Status = Status.OK,
            workflow: str = "bot") -> Outcome:
    ts = T0 + i * 1000
    return Outcome(request_id=f"r{i}", ts_ms=ts, request_ts_ms=ts, workflow=workflow, workflow_version="v1",
                   route="m", segment="all", status=status, latency_ms=800.0, cost_usd=0.002, reward=reward,
                   reward_quality=reward, reward_latency=0.0, reward_cost=0.0, reward_error=0.0,
                   is_final=is_final, variant=variant)


def engine(variants: Sequence[VariantSpec] = AB, min_samples: int = 100, seed: int = 0,
           **spec: object) -> ExperimentEngine:
    config = ExperimentConfig(rules=Rules(min_samples_per_arm=min_samples), seed=seed)
    return ExperimentEngine(ExperimentSpec("exp", **spec), "bot", variants, config)  # type: ignore[arg-type]


def feed(eng: ExperimentEngine, means: dict[str, float], n: int, seed: int, start: int = 0,
         decide_every: int = 50, sd: float = 0.3) -> list[ExperimentDecision]:
    """Assign request ``i`` by the split in force, observe its outcome at once, decide every ``decide_every``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(start, start + n):
        name = eng.assign(f"r{i}", T0 + i * 1000)
        eng.observe(outcome(name, means[name] + sd * float(rng.standard_normal()), i))
        if (i + 1) % decide_every == 0:
            d = eng.decide(T0 + i * 1000)
            if d is not None:
                out.append(d)
    return out


def test_provisional_and_foreign_outcomes_are_ignored() -> None:
    eng = engine()
    assert eng.observe(outcome("control", 1.0, is_final=False)) is False
    assert eng.observe(outcome("nope", 1.0)) is False
    assert eng.observe(outcome("control", 1.0, workflow="other")) is False
    assert eng.observe(outcome("control", 1.0)) is True
    assert [m.n for m in eng.state.primary] == [1, 0]
    assert eng.state.ignored == 3


def test_min_share_respected_for_a_hopeless_arm() -> None:
    eng = engine(ABC, min_samples=10_000, min_share=0.1)
    feed(eng, {"control": 0.5, "treatment": 0.6, "third": 0.0}, 600, seed=1)
    shares = eng.allocation(T0 + 10_000_000)
    # third never wins and is never the challenger: it keeps exactly its floor, the others split the rest.
    assert shares == pytest.approx({"control": 0.45, "treatment": 0.45, "third": 0.1}, abs=1e-12)


def test_two_arm_top_two_split_stays_even() -> None:
    eng = engine(min_samples=10_000)
    feed(eng, {"control": 0.5, "treatment": 0.7}, 400, seed=2)
    assert eng.allocation(T0 + 10_000_000) == pytest.approx({"control": 0.5, "treatment": 0.5}, abs=1e-12)


def test_assignment_is_sticky_while_the_split_holds() -> None:
    eng = engine()
    first = {f"user-{i}": eng.assign(f"user-{i}", T0) for i in range(200)}
    again = {u: eng.assign(u, T0 + 5000) for u in first}
    assert first == again
    assert 80 <= sum(v == "control" for v in first.values()) <= 120


def test_bucket_is_stable_across_processes() -> None:
    code = "from processors.experiments.allocation import bucket; print(repr(bucket('exp', 'user-1')))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2], env=env).stdout.strip()
    assert float(out) == bucket("exp", "user-1")
    assert round(bucket("exp", "user-1"), 6) == 0.399088
    assert bucket("other-exp", "user-1") != bucket("exp", "user-1")


def test_unit_of_follows_sticky_by() -> None:
    ctx = RequestContext(tenant="t", task="x", session_id="s9", attributes={"org": "o1"})
    assert unit_of(ctx, "r1", "user") == "r1"  # no user id: falls back to the request
    assert unit_of(ctx, "r1", "session") == "s9"
    assert unit_of(ctx, "r1", "org") == "o1"


def test_srm_on_a_60_40_split_blocks_the_winner() -> None:
    eng = engine(min_samples=100)
    rng = np.random.default_rng(3)
    for i in range(1000):
        name = "control" if i % 5 < 3 else "treatment"
        mean = 0.5 if name == "control" else 0.9
        eng.observe(outcome(name, mean + 0.3 * float(rng.standard_normal()), i))
    d = eng.decide(T0 + 2_000_000)
    assert d is not None
    assert 2.5e-10 < d.srm_p_value < 2.6e-10  # chi2 = 40 on 1 dof
    assert json.loads(d.evidence)["srm"]["is_ok"] is False
    assert d.winner is None and d.status is ExperimentStatus.RUNNING


def test_no_winner_before_the_minimum_sample_then_winner() -> None:
    eng = engine(min_samples=100)
    decisions = feed(eng, {"control": 0.5, "treatment": 0.9}, 300, seed=4, decide_every=1)
    first = next(i for i, d in enumerate(decisions) if d.winner is not None)
    # The effect is overwhelming long before: only the minimum sample holds the decision back.
    assert min(a.n for a in decisions[first].arms) == 100
    assert all(min(a.n for a in d.arms) < 100 for d in decisions[:first])
    assert decisions[first].winner == "treatment"
    assert json.loads(decisions[first].evidence)["comparisons"][0]["always_valid_p"] < 1e-5


def test_huge_effect_declares_the_right_winner_and_retires_the_loser() -> None:
    eng = engine(min_samples=100)
    decisions = feed(eng, {"control": 0.5, "treatment": 0.8}, 400, seed=6)
    final = decisions[-1]
    assert final.status is ExperimentStatus.WINNER and final.winner == "treatment"
    assert {a.variant: (a.status, a.allocation) for a in final.arms} == {
        "control": (ArmStatus.RETIRED, 0.0), "treatment": (ArmStatus.WINNER, 1.0)}
    assert eng.assign("anyone", T0 + 10**9) == "treatment"
    evidence = json.loads(final.evidence)
    assert evidence["comparisons"][0]["always_valid_p"] <= 0.05
    assert eng.decide(T0 + 10**9) is None  # decided: nothing more to publish


def test_aa_seeded_runs_declare_no_winner() -> None:
    winners = []
    for seed in range(6):
        eng = engine(min_samples=200, seed=seed)
        decisions = feed(eng, {"control": 0.5, "treatment": 0.5}, 1000, seed=100 + seed, decide_every=25)
        winners += [d.winner for d in decisions if d.winner]
    assert winners == []


def test_guardrail_breach_retires_the_variant() -> None:
    eng = engine(min_samples=200, guardrails=("error_rate:0.02",))
    for i in range(1200):
        name = AB[i % 2].name
        failed = (i % 10 < 3) if name == "treatment" else (i % 50 == 0)  # 30 % vs 2 % errors
        eng.observe(outcome(name, 0.5, i, status=Status.ERROR if failed else Status.OK))
    d = eng.decide(T0 + 2_000_000)
    assert d is not None
    assert {a.variant: a.status for a in d.arms} == {"control": ArmStatus.ACTIVE, "treatment": ArmStatus.RETIRED}
    assert d.status is ExperimentStatus.STOPPED and d.winner is None
    assert eng.allocation(T0 + 3_000_000) == {"control": 1.0, "treatment": 0.0}
    rows = json.loads(d.evidence)["guardrails"]
    assert [(r["variant"], r["is_breach"]) for r in rows] == [("treatment", True)]


def test_three_arms_retire_the_clear_loser_first() -> None:
    eng = engine(ABC, min_samples=100, min_share=0.2)
    decisions = feed(eng, {"control": 0.5, "treatment": 0.52, "third": 0.0}, 900, seed=7)
    assert eng.state.arm_status == [ArmStatus.ACTIVE, ArmStatus.ACTIVE, ArmStatus.RETIRED]
    assert eng.state.reasons == {"third": "beaten by treatment"}
    assert eng.allocation(T0 + 10**9) == {"control": 0.5, "treatment": 0.5, "third": 0.0}
    retired_at = next(d for d in decisions if d.arms[2].status is ArmStatus.RETIRED)
    assert retired_at.arms[2].n == 103 and retired_at.status is ExperimentStatus.RUNNING


def test_decisions_are_deterministic_for_a_seed() -> None:
    def run() -> list[ExperimentDecision]:
        return feed(engine(ABC, min_samples=150, seed=11), {"control": 0.5, "treatment": 0.56, "third": 0.5},
                    1800, seed=12)

    first, second = run(), run()
    assert first == second and len(first) >= 3


def test_snapshot_restore_gives_identical_decisions() -> None:
    means = {"control": 0.5, "treatment": 0.55, "third": 0.45}
    original = engine(ABC, min_samples=150, seed=3, guardrails=("error_rate",), sticky_by="user")
    feed(original, means, 900, seed=13)
    restored = ExperimentEngine.restore(json.loads(json.dumps(original.snapshot())))
    assert restored.spec == original.spec and restored.config == original.config
    rest_a = feed(original, means, 1500, seed=14, start=900)
    rest_b = feed(restored, means, 1500, seed=14, start=900)
    assert rest_a == rest_b and len(rest_a) >= 1
    assert [restored.assign(f"u{i}", T0 + 10**8) for i in range(50)] == \
        [original.assign(f"u{i}", T0 + 10**8) for i in range(50)]


def test_no_publication_without_material_change() -> None:
    eng = engine(min_samples=10_000)
    assert eng.decide(T0) is not None
    assert eng.decide(T0 + 1000) is None
    eng.observe(outcome("control", 0.5, 1))
    assert eng.decide(T0 + 2000) is None  # one outcome moves no chance to win by 0.05
    assert eng.decide(T0 + 2000 + 3_600_000) is not None  # heartbeat with new data


def test_max_duration_stops_and_sends_traffic_to_control() -> None:
    eng = engine(min_samples=10_000, max_duration_s=60.0)
    feed(eng, {"control": 0.5, "treatment": 0.5}, 100, seed=15)
    assert eng.state.status is ExperimentStatus.STOPPED
    assert eng.allocation(T0 + 10**9) == {"control": 1.0, "treatment": 0.0}


def test_for_workflow_needs_an_experiment_and_two_variants() -> None:
    spec = ExperimentSpec("exp")
    assert ExperimentEngine.for_workflow(make_workflow()) is None
    assert ExperimentEngine.for_workflow(make_workflow(experiment=spec, variants=AB[:1])) is None
    eng = ExperimentEngine.for_workflow(make_workflow(experiment=spec, variants=AB))
    assert eng is not None and eng.names == ("control", "treatment") and eng.workflow == "support-bot"
    with pytest.raises(ValueError):
        ExperimentEngine(replace(spec, guardrails=("bogus",)), "bot", AB)


@given(st.lists(st.tuples(st.integers(0, 2), st.floats(-1.0, 1.0)), max_size=60), st.floats(0.0, 0.3))
def test_allocation_is_always_a_distribution_with_floors(rows: list[tuple[int, float]], min_share: float) -> None:
    eng = engine(ABC, min_samples=5, min_share=min_share)
    for i, (arm, reward) in enumerate(rows):
        eng.observe(outcome(ABC[arm].name, reward, i))
        if i % 10 == 9:
            eng.decide(T0 + i * 1000)
    shares = eng.allocation(T0 + 10**9)
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-9)
    for name, status in zip(eng.names, eng.state.arm_status):
        if eng.state.status is ExperimentStatus.RUNNING and status is not ArmStatus.RETIRED:
            assert shares[name] >= min(min_share, 1 / 3) - 1e-12
        elif status is ArmStatus.RETIRED:
            assert shares[name] == 0.0
