"""Offline mode: run policies in process on the same seeded traffic and score them against the oracle."""

from __future__ import annotations

from typing import Any, Callable

from infra.simulator.environment import Environment, drive
from infra.simulator.errors import SimulatorError
from infra.simulator.policies import make_policy
from infra.simulator.scenario import Scenario
from infra.simulator.scorecard import RunResult, with_oracle

Progress = Callable[[str, int, int], None]


def run_offline(scenario: Scenario, policy_name: str, seed: int = 1, duration_s: float | None = None,
                rate: float | None = None, progress: Progress | None = None) -> RunResult:
    """Run one policy over ``scenario`` in process; its scorecard's oracle fields are still empty.

    Args:
        scenario: The validated scenario.
        policy_name: One of ``infra.simulator.policies.POLICIES``.
        seed: Traffic and noise seed (same seed, same traffic for every policy).
        duration_s: Override of the scenario's duration.
        rate: Override of the scenario's base rate (requests/s).
        progress: Called as ``progress(policy_name, done_ms, total_ms)`` after every slice.
    """
    policy = make_policy(policy_name, seed)
    env = Environment(scenario, policy, seed=seed, duration_s=duration_s, rate=rate)
    on_progress = None if progress is None else (lambda done, total: progress(policy_name, done, total))
    return drive(env, on_progress=on_progress)


def compare(scenario: Scenario, policies: list[str], seed: int = 1, duration_s: float | None = None,
            rate: float | None = None, progress: Progress | None = None) -> dict[str, RunResult]:
    """Run each policy (and the oracle once) on the same traffic; fill every scorecard's oracle fields.

    Returns:
        Results keyed by policy name, in the given order (the oracle's too if it was asked for).
    """
    if not policies:
        raise SimulatorError("no policy to run")
    names = list(dict.fromkeys(policies))
    results: dict[str, RunResult] = {}
    oracle = run_offline(scenario, "oracle", seed, duration_s, rate, progress)
    for name in names:
        results[name] = oracle if name == "oracle" else run_offline(scenario, name, seed, duration_s, rate, progress)
    oracle_reward = float(oracle.scorecard["reward"])
    for result in results.values():
        result.scorecard = with_oracle(result.scorecard, oracle_reward)
    return results


def report(results: dict[str, RunResult]) -> dict[str, Any]:
    """The JSON report: scorecards keyed by policy name."""
    return {name: result.scorecard for name, result in results.items()}
