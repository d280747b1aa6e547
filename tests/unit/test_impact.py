"""Change impact: the projection moves recent traffic onto the new routes; risks cross thresholds."""

from __future__ import annotations

from processors.impact import observe, project, risks
from schemas.records import (
    PrivacyLevel, RequestContext, RequestEvent, RouteProbability, RouteSpec, RoutingPolicy, Status, WorkflowDefinition,
)

A = RouteSpec("a", "p", False, PrivacyLevel.RESTRICTED, 0.001, 0.002, capacity_rps=20)
B = RouteSpec("b", "p", False, PrivacyLevel.PUBLIC, 0.001, 0.002, capacity_rps=5, prior_latency_ms=3000.0)


def _requests() -> list[RequestEvent]:
    out = []
    for i in range(400):
        route, level = ("a", PrivacyLevel.RESTRICTED) if i % 4 == 0 else ("b", PrivacyLevel.PUBLIC)
        out.append(RequestEvent(f"r{i}", i * 100, "wf", "v1", route, RequestContext("t", "x", level),
                                1000.0 + i % 100, 0.003, 1000, 1000, Status.OK))
    return out


def test_removing_the_private_route_loses_coverage_and_overloads_the_other() -> None:
    mix = observe(_requests(), "wf")
    live = WorkflowDefinition("wf", "v1", 0, (A, B), budget_usd_per_hour=100.0)
    new = WorkflowDefinition("wf", "v2", 0, (B,), budget_usd_per_hour=100.0)
    before, after = project(mix, live, live), project(mix, new, live)
    assert abs(before.shares["a"] - 0.25) < 1e-9 and after.shares == {"b": 1.0}
    assert before.privacy_coverage == 1.0 and after.privacy_coverage == 0.75 and after.unserved_privacy == ("restricted",)
    found = risks(before, after)
    assert any("privacy levels restricted" in r for r in found)
    assert any(r.startswith("route b at") for r in found)  # 10 req/s on a 5 req/s route


def test_a_price_rise_shows_in_cost_and_budget_and_an_unchanged_version_has_no_risk() -> None:
    mix = observe(_requests(), "wf")
    live = WorkflowDefinition("wf", "v1", 0, (A, B), budget_usd_per_hour=120.0)
    pricier = WorkflowDefinition("wf", "v2", 0, (A, RouteSpec("b", "p", False, PrivacyLevel.PUBLIC, 0.002, 0.004,
                                                               capacity_rps=50)), budget_usd_per_hour=120.0)
    policy = RoutingPolicy("wf", "all", 0, 1, "m", (RouteProbability("a", 0.5, 0.9, 0.1, 100),
                                                  RouteProbability("b", 0.5, 0.7, 0.1, 100)))
    before, after = project(mix, live, live, [policy]), project(mix, pricier, live, [policy])
    assert abs(after.cost_per_hour_usd / before.cost_per_hour_usd - 1.75) < 1e-6  # b's 75 % share costs double
    assert abs(before.quality - (0.25 * 0.9 + 0.75 * 0.7)) < 1e-9
    assert any(r.startswith("cost/hour") for r in risks(before, after))
    assert risks(before, project(mix, live, live, [policy]), max_utilisation=10.0) == []
