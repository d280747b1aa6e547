"""Policies on the same seeded traffic: constraints, oracle dominance, experiments, the loopwise fallback."""

from __future__ import annotations

import pytest

from infra.simulator.environment import Environment, drive
from infra.simulator.loader import builtin_names, load_scenario
from infra.simulator.offline import compare, run_offline
from infra.simulator.policies import make_policy
from infra.simulator.scorecard import SCORECARD_FIELDS
from schemas.records import ArmStats, ArmStatus, ExperimentDecision, ExperimentStatus

BASELINES = ["random", "round-robin", "static-best", "cost-first", "least-latency"]
SHORT = {"seed": 1, "duration_s": 600.0, "rate": 50.0}


@pytest.mark.parametrize("name", builtin_names())
def test_oracle_beats_every_baseline(name: str) -> None:
    results = compare(load_scenario(name), BASELINES, **SHORT)  # type: ignore[arg-type]
    oracle = results["random"].scorecard["oracle_reward"]
    rewards = {policy: result.scorecard["reward"] for policy, result in results.items()}
    assert all(reward <= oracle for reward in rewards.values()), rewards
    assert all(r.scorecard["privacy_violations"] == 0 for r in results.values())
    assert len({r.scorecard["requests"] for r in results.values()}) == 1  # identical traffic


def test_no_policy_sends_restricted_requests_to_hosted_routes() -> None:
    results = compare(load_scenario("privacy-mix"), BASELINES + ["oracle", "loopwise"], seed=2, duration_s=300, rate=50)
    assert {name: r.scorecard["privacy_violations"] for name, r in results.items()} == dict.fromkeys(results, 0)
    assert {name: r.scorecard["dropped"] for name, r in results.items()} == dict.fromkeys(results, 0)


def test_scorecard_fields_and_ratio() -> None:
    results = compare(load_scenario("steady"), ["least-latency", "random"], seed=1, duration_s=120, rate=50)
    card = results["least-latency"].scorecard
    assert tuple(card) == SCORECARD_FIELDS
    assert card["reward_ratio"] == pytest.approx(card["reward"] / card["oracle_reward"])
    assert card["oracle_reward"] == results["random"].scorecard["oracle_reward"]
    assert card["policy_impl"] == "least-latency"
    assert card["requests"] == 6025  # seed 1, 120 s of Poisson(50) arrivals


def test_loopwise_fallback_is_marked_and_learns() -> None:
    result = run_offline(load_scenario("steady"), "loopwise-fallback", seed=1, duration_s=300, rate=50)
    random = run_offline(load_scenario("steady"), "random", seed=1, duration_s=300, rate=50)
    assert result.policy_impl == result.scorecard["policy_impl"] == "fallback-epsilon-greedy"
    assert result.scorecard["reward"] > random.scorecard["reward"] + 0.1


def test_experiment_truth_and_declared_winner() -> None:
    assert run_offline(load_scenario("experiment-aa"), "random", **SHORT).scorecard["experiments"] == [  # type: ignore[arg-type]
        {"experiment": "prompt-aa", "true_winner": "none", "declared_winner": None, "decided_at": None}]
    scenario = load_scenario("experiment-lift")
    env = Environment(scenario, make_policy("random"), seed=1, duration_s=120, rate=20)
    env.step(scenario.start_ms + 60_000)
    arms = tuple(ArmStats(v, a, 100, 0.5, 0.4, 0.6, p, 0.0, s) for v, a, p, s in (
        ("base-prompt", 0.0, 0.02, ArmStatus.RETIRED), ("concise-prompt", 1.0, 0.98, ArmStatus.WINNER)))
    env.apply(ExperimentDecision("prompt-lift", "assistant", env.now_ms, ExperimentStatus.WINNER, arms, 0.5, "test",
                                 "concise-prompt", env.now_ms))
    drive(env)
    assert env.result().scorecard["experiments"] == [{"experiment": "prompt-lift", "true_winner": "concise-prompt",
                                                      "declared_winner": "concise-prompt", "decided_at": scenario.start_ms + 60_000}]


def test_oracle_rolls_back_a_bad_canary_at_once() -> None:
    card = run_offline(load_scenario("canary-bad"), "oracle", **SHORT).scorecard  # type: ignore[arg-type]
    start = load_scenario("canary-bad").start_ms + 300_000
    # The rollback goes out with the first slice (1 s) in which the canary served traffic.
    assert card["incidents"] == [{"kind": "bad_version", "entity": "assistant", "start": start, "detected_at": None,
                                  "mitigated_at": start + 1000, "resolved_at": start + 1000}]
    assert card["mean_time_to_mitigate_s"] == 1.0 and card["false_actions"] == 0


def test_least_latency_cools_down_a_failing_route() -> None:
    results = compare(load_scenario("outage"), ["least-latency", "round-robin"], **SHORT)  # type: ignore[arg-type]
    # round-robin keeps a third of its traffic on claude-mid while it is down; least-latency's cooldown moves away.
    errors = {name: round(r.scorecard["error_rate"], 4) for name, r in results.items()}
    assert errors == {"least-latency": 0.0192, "round-robin": 0.2177}


def test_unknown_policy_is_refused() -> None:
    from infra.simulator.errors import SimulatorError

    with pytest.raises(SimulatorError, match="unknown policy 'best-guess'"):
        make_policy("best-guess")
