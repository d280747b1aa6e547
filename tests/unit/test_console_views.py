"""The console's views: deltas per record, bounded tables, paging of 10 k segments, command states, the timeline."""

from __future__ import annotations

from schemas.records import (
    Approval, ApprovalDecision, Command, DeadLetter, Incident, IncidentStatus, Outcome, RouteProbability, RoutingPolicy,
    Severity, Status,
)
from schemas.signing import sign
from streams.console.views import ConsoleViews

KEY = b"approval-key-0123456789abcdef0123"
NOW_MS = 1_800_000_000_000


def policy(segment: str, p_a: float, version: int = 1, ts_ms: int = NOW_MS) -> RoutingPolicy:
    return RoutingPolicy("wf", segment, ts_ms, version, "m", (RouteProbability("a", p_a, 0.8, 0.1, 10),
                                                              RouteProbability("b", 1 - p_a, 0.7, 0.1, 10)))


def test_routes_are_paged_and_filtered_never_whole() -> None:
    views = ConsoleViews(KEY)
    for i in range(2_000):  # bench.console pages 10 k
        views.apply("decisions.routing", policy(f"seg-{i:05d}", 0.5))
    page = views.page("routes", workflow="wf", offset=50, limit=25)
    assert page["total"] == 2_000 and [r["segment"] for r in page["rows"]][:2] == ["seg-00050", "seg-00051"]
    assert len(page["rows"]) == 25
    assert views.page("routes", workflow="wf", query="seg-0199", limit=500)["total"] == 10
    assert len(views.page("routes", workflow="wf", limit=10**6)["rows"]) == 500  # a page is bounded


def test_a_policy_change_is_a_delta_and_a_timeline_entry_with_its_reasons() -> None:
    views = ConsoleViews(KEY)
    views.apply("decisions.routing", policy("s", 0.9))
    assert [d["ch"] for d in views.apply("decisions.routing", policy("s", 0.9, 2))] == ["routes"]  # nothing moved
    changed = RoutingPolicy("wf", "s", NOW_MS + 1, 3, "m", (RouteProbability("a", 0.1, 0.4, 0.1, 10),
                                                             RouteProbability("b", 0.9, 0.7, 0.1, 10)),
                            ("a circuit open",), {"a": "circuit open"})
    deltas = views.apply("decisions.routing", changed)
    assert [d["ch"] for d in deltas] == ["routes", "timeline"]
    entry = deltas[1]["data"]
    assert (entry["top_before"], entry["top_after"], entry["moved"]) == ("a", "b", {"a": -0.8, "b": 0.8})
    assert entry["reasons"] == ["a circuit open"]


def test_command_states_follow_approvals_and_expiry() -> None:
    views = ConsoleViews(KEY)
    risky = sign(Command("c1", NOW_MS, "wf", "rollback", "", "{}", NOW_MS + 60_000, "lw", "", requires_approval=True),
                 b"s" * 32)
    plain = sign(Command("c2", NOW_MS, "r", "open_circuit", "", "{}", NOW_MS + 60_000, "lw", ""), b"s" * 32)
    views.apply("commands.remediation", risky, now_ms=NOW_MS)
    views.apply("commands.remediation", plain, now_ms=NOW_MS)
    page = views.page("commands", now_ms=NOW_MS)
    assert {r["command_id"]: r["state"] for r in page["rows"]} == {"c1": "pending", "c2": "issued"}
    assert [r["command_id"] for r in page["pending"]] == ["c1"]
    approval = sign(Approval("c1", risky.signature, ApprovalDecision.APPROVE, "ana", NOW_MS + 1), KEY)
    [delta] = views.apply("approvals", approval, now_ms=NOW_MS + 2)
    assert delta["data"]["state"] == "approved" and delta["data"]["decision"]["operator"] == "ana"
    assert views.command_view("c2", NOW_MS + 120_000)["state"] == "issued"  # event time has not passed its expiry
    views.apply("commands.remediation", sign(Command("c3", NOW_MS + 90_000, "r", "close_circuit", "", "{}",
                                                     NOW_MS + 150_000, "lw", ""), b"s" * 32))
    assert views.command_view("c2", NOW_MS + 10**9)["state"] == "expired"


def test_tables_are_bounded_and_incidents_get_their_mitigation_time() -> None:
    views = ConsoleViews(KEY, max_items=3)
    for i in range(5):
        views.apply("dlq", DeadLetter("lw.requests", 0, i, b"x", "bad", "invalid", NOW_MS), where=f"lw.dlq:0:{i}")
    assert list(views.dlq) == ["lw.dlq:0:2", "lw.dlq:0:3", "lw.dlq:0:4"]
    assert views.page("dlq")["by_reason"] == {"invalid": 3}
    views.apply("incidents", Incident("i1", NOW_MS + 1_000, IncidentStatus.FIRING, Severity.CRITICAL, "g",
                                      "route:a", NOW_MS, ("x",), 1, "errors"))
    deltas = views.apply("commands.remediation", sign(Command("c", NOW_MS + 4_000, "a", "open_circuit", "", "{}",
                                                              NOW_MS + 60_000, "lw", "", incident_id="i1"), b"s" * 32))
    assert deltas[0]["ch"] == "incidents" and deltas[0]["data"]["mitigated_ms"] == NOW_MS + 4_000


def test_the_run_scorecard_counts_each_request_once_at_its_first_outcome() -> None:
    views = ConsoleViews(KEY)
    for i, final in ((0, False), (1, True), (0, True)):
        views.apply("outcomes", Outcome(f"r{i}", NOW_MS, NOW_MS + i, "wf", "v1", "a", "s",
                                        Status.ERROR if i else Status.OK, 100.0, 0.01, 0.5 + i * 0.2, 0, 0, 0, 0, final))
    score = views.page("run")["scorecard"]
    assert score["n"] == 2 and abs(score["reward"] - 0.6) < 1e-9 and score["error_rate"] == 0.5
    assert views.spend == {"wf": 0.02}

