"""Scenario loading: built-ins, inheritance, and errors that name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.simulator.errors import ScenarioError
from infra.simulator.loader import builtin_names, load_scenario, parse_scenario
from infra.simulator.scenario import LatencyModel, parse_duration_s
from processors.reward import reward, reward_arrays
from schemas.records import Objective, PrivacyLevel

REQUIRED = {"steady", "drift", "outage", "price-change", "traffic-spike", "canary-good", "canary-bad",
            "experiment-lift", "experiment-aa", "privacy-mix", "budget-squeeze", "day"}


def test_every_required_builtin_exists_and_loads() -> None:
    assert REQUIRED <= set(builtin_names())
    for name in builtin_names():
        scenario = load_scenario(name)
        assert scenario.name == name
        assert scenario.duration_s > 0 and scenario.rate > 0


def test_extends_merges_named_lists_by_name() -> None:
    mix = load_scenario("privacy-mix")
    routes = [r.name for r in mix.workflows[0].routes]
    assert routes == ["gpt-large", "claude-mid", "mini-hosted", "llama-local", "mistral-local"]
    initech = next(t for t in mix.workflows[0].tenants if t.name == "initech")
    assert initech.privacy[PrivacyLevel.RESTRICTED] == 0.6
    assert initech.tasks == {"chat": 0.7, "summarize": 0.3}  # inherited from steady
    lift = load_scenario("experiment-lift")
    assert [(v.name, v.effect) for v in lift.workflows[0].variants] == [("base-prompt", 0.0), ("concise-prompt", 0.04)]
    assert lift.workflows[0].experiment == "prompt-lift"


def test_day_has_daily_curve_two_workflows_and_every_event_kind() -> None:
    day = load_scenario("day")
    assert day.duration_s == 86400.0 and day.load.daily_amplitude == 0.6
    assert [w.name for w in day.workflows] == ["assistant", "extract"]
    assert {e.kind for e in day.timeline} == {"degradation", "outage", "price_change", "capacity_squeeze", "canary"}


@pytest.mark.parametrize(("patch", "message"), [
    ({"rate": "fast"}, "rate: expected a number, got 'fast'"),
    ({"duration": "2 weeks"}, "duration: expected a duration like 30s/20m/2h, got '2 weeks'"),
    ({"colour": "red"}, "colour: unknown key"),
    ({"timeline": [{"kind": "meteor", "target": "x", "start": 0}]}, "timeline[0].kind: unknown event kind 'meteor'"),
])
def test_errors_name_the_bad_key(patch: dict[str, object], message: str, tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"extends": "steady", "name": "bad", **patch}))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path=path)
    assert message in str(info.value)


def test_nested_error_path_and_unknown_privacy() -> None:
    data = {"name": "x", "tasks": {"chat": {"tokens_in": 10, "tokens_out": 10}}, "workflows": [{
        "name": "w", "routes": [{"name": "r", "latency": {"median_ms": "slow"}, "quality": {"chat": 0.5}}],
        "tenants": [{"name": "t", "tasks": {"chat": 1.0}}]}]}
    with pytest.raises(ScenarioError, match=r"workflows\[0\]\.routes\[0\]\.latency\.median_ms: expected a number"):
        parse_scenario(data)
    data["workflows"][0]["routes"][0]["latency"] = {"median_ms": 100}  # type: ignore[index]
    data["workflows"][0]["routes"][0]["max_privacy"] = "secret"  # type: ignore[index]
    with pytest.raises(ScenarioError, match=r"workflows\[0\]\.routes\[0\]\.max_privacy: unknown privacy level 'secret'"):
        parse_scenario(data)


def test_unknown_builtin_lists_the_builtins() -> None:
    with pytest.raises(ScenarioError, match="unknown scenario 'nope'; built-ins: .*budget-squeeze, .*canary-bad"):
        load_scenario("nope")


def test_parse_duration() -> None:
    assert [parse_duration_s(v) for v in ("30s", "20m", "2h", "1d", "1.5h", 12)] == [30.0, 1200.0, 7200.0, 86400.0, 5400.0, 12.0]
    with pytest.raises(ScenarioError):
        parse_duration_s("soon")


def test_load_factor_formula() -> None:
    model = LatencyModel(median_ms=1000.0, load_coef=0.1)
    assert model.load_factor(0.0) == 1.0
    assert model.load_factor(0.9) == pytest.approx(1.9)
    assert model.load_factor(5.0) == pytest.approx(1.0 + 0.1 * 0.95 / 0.05)  # capped at u_max


def test_reward_scalar_and_arrays_agree_exactly() -> None:
    import numpy as np
    from hypothesis import given, strategies as st

    objective = Objective(quality_weight=1.0, latency_weight=0.2, cost_weight=0.3, error_weight=0.7)

    @given(st.floats(0, 1), st.floats(0, 60000), st.floats(0, 1), st.booleans())
    def check(q: float, lat: float, cost: float, err: bool) -> None:
        scalar = reward(q, lat, cost, err, objective)
        array = reward_arrays(np.array([q]), np.array([lat]), np.array([cost]), np.array([err]), objective)
        assert array[0] == scalar.total
        assert scalar.total == pytest.approx(scalar.quality - scalar.latency - scalar.cost - scalar.error)
        assert scalar.quality == (0.0 if err else q)

    check()
