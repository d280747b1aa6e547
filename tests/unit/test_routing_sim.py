"""The loopwise simulator adapter: registered by name, runs correlator + router, breaks no constraint."""

from __future__ import annotations

from infra.simulator.environment import Environment, drive
from infra.simulator.fallback import EpsilonGreedyFallback
from infra.simulator.loader import load_scenario
from infra.simulator.loopwise_policy import IMPL, LoopwisePolicy
from infra.simulator.policies import make_policy


def test_loopwise_is_the_router_and_the_fallback_stays_available() -> None:
    assert isinstance(make_policy("loopwise", seed=3), LoopwisePolicy)
    assert make_policy("loopwise").impl == IMPL == "loopwise-router v1"
    assert isinstance(make_policy("loopwise-fallback"), EpsilonGreedyFallback)


def test_a_short_privacy_mix_run_learns_and_breaks_no_constraint() -> None:
    policy = LoopwisePolicy(seed=2)
    env = Environment(load_scenario("privacy-mix"), policy, seed=2, duration_s=120, rate=10)
    card = drive(env).scorecard
    assert (card["privacy_violations"], card["dropped"], card["policy_impl"]) == (0, 0, IMPL)
    assert policy.outcomes == card["requests"]  # one provisional outcome per request, no finals yet (300 s window)
    segments = {seg for (_, seg) in policy.router.segments}
    assert "task=code|privacy_level=restricted" in segments
    restricted = policy.router.policy("assistant", "task=code|privacy_level=restricted", env.now_ms)
    assert restricted is not None and {p.route for p in restricted.routes if p.probability > 0} == {"llama-local"}
