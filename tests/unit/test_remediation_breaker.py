"""Circuit breakers in event time: guards, opening, half-open probes, recovery, flap damping, degraded mode."""

from __future__ import annotations

from typing import Iterable

from processors.remediation import BreakerConfig, BreakerState, CircuitBreaker, Remediator, idempotency_key
from schemas.records import (
    ActionSpec, Anomaly, Command, Incident, IncidentStatus, PrivacyLevel, RequestContext, RequestEvent, RouteSpec,
    Severity, SignalKind, Status, WorkflowDefinition,
)

KEY = b"unit-test-signing-key-0123456789"
T0 = 1_000_000


def route(name: str) -> RouteSpec:
    return RouteSpec(name, "p", False, PrivacyLevel.INTERNAL, 0.001, 0.002)


def workflow(routes: Iterable[str] = ("a", "b"), fallback: str | None = None,
             remediation: tuple[ActionSpec, ...] = ()) -> WorkflowDefinition:
    return WorkflowDefinition("wf", "v1", 0, tuple(route(r) for r in routes), fallback_route=fallback,
                              remediation=remediation)


def request(i: int, ts_ms: int, route_name: str, status: Status = Status.OK, error_type: str | None = None) -> RequestEvent:
    return RequestEvent(f"{route_name}-{ts_ms}-{i}", ts_ms, "wf", "v1", route_name, RequestContext("t", "chat"),
                        800.0, 0.001, 100, 50, status, None, error_type)


def drive(r: Remediator, start_ms: int, seconds: int, rates: dict[str, tuple[int, float]]) -> list[Command]:
    """Per second: ``n`` requests per route, the first ``fail_share * n`` failing; advance at each second's end."""
    out: list[Command] = []
    for s in range(seconds):
        second = start_ms + s * 1000
        for name, (n, fail_share) in rates.items():
            for i in range(n):
                failed = i < round(fail_share * n)
                r.observe_request(request(i, second + i * (1000 // max(n, 1)), name, Status.ERROR if failed else Status.OK))
        out += r.advance(second + 999)
    return out


def remediator(**workflow_args: object) -> Remediator:
    r = Remediator(KEY)
    r.observe_workflow(workflow(**workflow_args))  # type: ignore[arg-type]
    return r


def test_a_quiet_route_with_two_errors_stays_closed() -> None:
    r = remediator()
    r.observe_request(request(0, T0, "a", Status.ERROR))
    r.observe_request(request(1, T0 + 10, "a", Status.ERROR))
    assert r.advance(T0 + 1_000) == []
    assert r.breaker_state("a") is BreakerState.CLOSED


def test_throttling_and_client_errors_do_not_trip_a_breaker() -> None:
    r = remediator()
    for i in range(100):
        r.observe_request(request(i, T0 + i, "a", Status.ERROR, "rate_limit" if i % 2 else "unsupported_task"))
    assert r.advance(T0 + 1_000) == []


def test_a_busy_failing_route_opens_within_two_seconds_of_event_time() -> None:
    r = remediator()
    healthy = drive(r, T0, 20, {"a": (50, 0.0), "b": (50, 0.0)})
    failing = drive(r, T0 + 20_000, 10, {"a": (50, 0.9), "b": (50, 0.0)})
    assert healthy == []
    opened = [c for c in failing if c.action == "open_circuit"]
    assert [(c.target, c.ts_ms - (T0 + 20_000), c.params["state"]) for c in opened] == [("a", 1_999, "open")]
    assert r.breaker_state("a") is BreakerState.OPEN and r.breaker_state("b") is BreakerState.CLOSED


def test_open_then_half_open_probe_then_closed_after_recovery() -> None:
    r = remediator()
    drive(r, T0, 10, {"a": (50, 1.0), "b": (50, 0.0)})
    assert r.breaker_state("a") is BreakerState.OPEN
    quiet = drive(r, T0 + 10_000, 20, {"b": (50, 0.0)})        # open: no traffic to a
    probe = drive(r, T0 + 30_000, 2, {"a": (0, 0.0), "b": (50, 0.0)})
    assert quiet == []
    assert [(c.action, c.params) for c in probe] == [("close_circuit", {"state": "half_open", "probe_share": "0.05"})]
    recovered = drive(r, T0 + 32_000, 2, {"a": (10, 0.0), "b": (50, 0.0)})
    assert [(c.action, c.params["state"]) for c in recovered] == [("close_circuit", "closed")]
    assert r.breaker_state("a") is BreakerState.CLOSED
    assert {e["outcome"] for e in r.audit_log() if e["target"] == "a"} == {"recovered"}


def test_failed_probes_reopen_with_a_growing_cooldown() -> None:
    b = CircuitBreaker("a", BreakerConfig())
    moves = []
    for i in range(30):
        b.observe(T0 + 500, is_failure=True)
    for now in range(T0 + 1_000, T0 + 200_000, 500):  # every probe fails
        if b.state is BreakerState.HALF_OPEN:
            for i in range(10):
                b.observe(now, is_failure=True)
        t = b.propose(now)
        if t is not None:
            b.commit(t)
            moves.append((t.target.value, now - T0))
    # cooldowns 30 s, then 45 s (30 x 1.5), then capped at 45 s
    assert moves[:7] == [("open", 1_000), ("half_open", 31_000), ("open", 31_500), ("half_open", 76_500),
                         ("open", 77_000), ("half_open", 122_000), ("open", 122_500)]


def test_flap_damping_caps_full_transitions_per_hour() -> None:
    config = BreakerConfig(max_transitions_per_hour=4, cooldown_ms=10_000, max_cooldown_ms=10_000)
    b = CircuitBreaker("a", config)
    counted = 0
    for cycle in range(20):  # a route that fails 20 s, then works 20 s, again and again
        base = T0 + cycle * 40_000
        for s in range(40):
            now = base + s * 1000
            failing = s < 20
            for i in range(30):
                b.observe(now + i, is_failure=failing)
            t = b.propose(now + 999)
            if t is not None:
                b.commit(t)
                counted += (t.source, t.target) in {(BreakerState.CLOSED, BreakerState.OPEN),
                                                    (BreakerState.HALF_OPEN, BreakerState.CLOSED)}
    # open, close, open; a second close would leave no room to reopen within the hour: held open
    assert counted == 3
    assert b.state is BreakerState.OPEN


def test_all_routes_failing_keeps_the_declared_fallback_serving() -> None:
    r = remediator(fallback="b")
    commands = drive(r, T0, 5, {"a": (50, 1.0), "b": (50, 1.0)})
    assert [(c.action, c.target) for c in commands] == [("open_circuit", "a")]
    assert r.breaker_state("b") is BreakerState.CLOSED
    assert list(r.warnings) == ["every route of wf would be open: keeping b serving"]  # once, not every second
    assert [(e["kind"], e["target"]) for e in r.audit_log()][:2] == [("degraded", "b"), ("command", "a")]


def test_without_a_fallback_the_least_bad_route_keeps_serving() -> None:
    r = remediator(routes=("a", "b", "c"))
    commands = drive(r, T0, 3, {"a": (50, 1.0), "b": (50, 0.6), "c": (50, 0.9)})
    assert sorted(c.target for c in commands if c.action == "open_circuit") == ["a", "c"]
    assert r.breaker_state("b") is BreakerState.CLOSED


def test_a_workflow_that_declares_no_circuit_gets_no_breaker() -> None:
    r = remediator(remediation=(ActionSpec("rollback"),))
    assert drive(r, T0, 5, {"a": (50, 1.0), "b": (50, 0.0)}) == []


def test_declared_parameters_set_the_breaker() -> None:
    r = remediator(remediation=(ActionSpec("open_circuit", {"min_requests": "200", "ttl_s": "120"}),))
    assert drive(r, T0, 3, {"a": (50, 1.0), "b": (50, 0.0)}) == []  # 150 requests in the window < 200
    opened = drive(r, T0 + 3_000, 2, {"a": (50, 1.0), "b": (50, 0.0)})
    assert [(c.target, c.expires_ts_ms - c.ts_ms) for c in opened] == [("a", 120_000)]


def test_breaker_snapshot_round_trips() -> None:
    b = CircuitBreaker("a", BreakerConfig())
    for i in range(30):
        b.observe(T0 + i, is_failure=True)
    b.commit(b.propose(T0 + 1_000))  # type: ignore[arg-type]
    again = CircuitBreaker.restore("a", b.snapshot())
    assert again.snapshot() == b.snapshot()
    assert again.propose(T0 + 31_000) == b.propose(T0 + 31_000)


def test_an_unreadable_declared_parameter_falls_back_to_the_default() -> None:
    assert BreakerConfig.from_params({"error_rate": "lots", "min_requests": "50"}) == BreakerConfig(
        min_requests=50, min_confident_requests=50)


def test_a_starved_route_opens_on_a_confident_failure_rate_but_not_on_a_fluke() -> None:
    # The router has already moved traffic off the route: far fewer than min_requests reach it.
    failing, fluky = CircuitBreaker("a", BreakerConfig()), CircuitBreaker("b", BreakerConfig())
    for i in range(5):
        failing.observe(T0 + i * 1_000, is_failure=True)
        fluky.observe(T0 + i * 1_000, is_failure=i < 3)  # 3 of 5: not above 50 % with confidence
    opened = failing.propose(T0 + 5_000)
    assert opened is not None and opened.target is BreakerState.OPEN and "5 requests" in opened.reason
    assert fluky.propose(T0 + 5_000) is None
    assert CircuitBreaker("c", BreakerConfig()).propose(T0) is None


def latency_anomaly(ts_ms: int, severity: str = "critical") -> Anomaly:
    return Anomaly(f"an-{ts_ms}", ts_ms, "a", "route", "latency_ms", SignalKind.ANOMALY, 0.99, Severity(severity),
                   9000.0, 500.0, 1500.0, ts_ms - 60_000, ts_ms, "robust", "1")


def test_critical_latency_anomalies_open_a_busy_route_but_warnings_do_not() -> None:
    r = remediator()
    drive(r, T0, 2, {"a": (50, 0.0), "b": (50, 0.0)})
    for ts in (T0 + 2_000, T0 + 2_100):
        r.observe_anomaly(latency_anomaly(ts))
    r.observe_anomaly(latency_anomaly(T0 + 2_200, "warning"))
    assert r.advance(T0 + 2_500) == []
    r.observe_anomaly(latency_anomaly(T0 + 2_300))
    assert [(c.action, c.target, c.reason) for c in r.advance(T0 + 2_500)] == [
        ("open_circuit", "a", "3 latency anomalies")]


def test_a_breaker_opened_during_an_incident_carries_its_id_and_uses_it_as_the_episode() -> None:
    r = remediator(remediation=(ActionSpec("open_circuit"),))  # no escalation actions declared
    r.observe_incident(Incident("inc-9", T0, IncidentStatus.FIRING, Severity.CRITICAL, "route:a", "route:a", T0,
                                ("route:a/error_rate",), 2, "errors"))
    commands = drive(r, T0, 2, {"a": (50, 1.0), "b": (50, 0.0)})
    assert [(c.action, c.incident_id, c.command_id) for c in commands] == [
        ("open_circuit", "inc-9", idempotency_key("inc-9", "open_circuit", "a", 0))]
