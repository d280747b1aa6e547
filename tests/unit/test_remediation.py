"""The Remediator: idempotency across restarts and replays, rate limits, dry run, escalation, shedding, rollback, audit."""

from __future__ import annotations

import dataclasses

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.remediation import RateLimits, Remediator, RemediatorConfig, as_insight, idempotency_key
from schemas.records import (
    ActionSpec, Command, Incident, IncidentStatus, MetricEvent, Outcome, Severity, Status,
    WorkflowDefinition,
)
from schemas.signing import verify
from tests.unit.test_remediation_breaker import KEY, T0, request, workflow

Event = object


def incident(status: IncidentStatus = IncidentStatus.FIRING, ts_ms: int = T0, root: str = "route:a",
             severity: Severity = Severity.CRITICAL) -> Incident:
    return Incident("inc-7", ts_ms, status, severity, root, root, T0, (f"{root}/error_rate",), 3, "errors",
                    ts_ms if status == IncidentStatus.RESOLVED else None)


def outage_events() -> list[tuple[int, list[Event]]]:
    """(advance_at, events) per second: 10 s healthy, 40 s of route a failing, then 40 s recovered."""
    steps: list[tuple[int, list[Event]]] = [(T0, [workflow()])]
    for s in range(90):
        second = T0 + s * 1000
        share = 1.0 if 10 <= s < 50 else 0.0
        events: list[Event] = [request(i, second + i * 40, "b") for i in range(25)]
        events += [request(i, second + i * 40, "a", Status.ERROR if i < share * 25 else Status.OK) for i in range(25)]
        steps.append((second + 999, events))
    return steps


def feed(r: Remediator, steps: list[tuple[int, list[Event]]]) -> list[Command]:
    out: list[Command] = []
    for now, events in steps:
        for e in events:
            if isinstance(e, WorkflowDefinition):
                r.observe_workflow(e)
            elif isinstance(e, Incident):
                r.observe_incident(e)
            elif isinstance(e, MetricEvent):
                r.observe_metric(e)
            elif isinstance(e, Outcome):
                r.observe_outcome(e)
            else:
                r.observe_request(e)  # type: ignore[arg-type]
        out += r.advance(now)
    return out


def test_the_outage_gives_exactly_these_commands_and_keys() -> None:
    commands = feed(Remediator(KEY), outage_events())
    assert [(c.action, c.params.get("state"), (c.ts_ms - T0) // 1000) for c in commands] == [
        ("open_circuit", "open", 11), ("close_circuit", "half_open", 41), ("open_circuit", "open", 42),
        ("close_circuit", "half_open", 87), ("close_circuit", "closed", 88)]
    episode = f"breaker:a:{T0 + 11_999}"
    assert [c.command_id for c in commands] == [idempotency_key(episode, c.action, "a", step)
                                                for c, step in zip(commands, range(5))]
    for c in commands:
        verify(c, KEY)
    # opened on the last 3 s (two failing seconds of three), before the 10 s window's 20 % could
    assert orjson.loads(commands[0].evidence) == {"failure_rate": 0.2, "failures": 50, "fast_failures": 50,
                                                  "fast_requests": 75, "latency_anomalies": 0, "requests": 250,
                                                  "window_s": 10.0}


STEPS = outage_events()
STRAIGHT = feed(Remediator(KEY), STEPS)


@settings(max_examples=10)
@given(split=st.integers(1, 90))
def test_snapshot_restore_mid_stream_gives_the_same_commands(split: int) -> None:
    steps, straight = STEPS, STRAIGHT
    first = Remediator(KEY)
    before = feed(first, steps[:split])
    restored = Remediator(KEY)
    restored.restore(orjson.loads(orjson.dumps(first.snapshot())))  # through JSON, as it is stored
    after = feed(restored, steps[split:])
    assert before + after == straight


def test_a_replay_from_scratch_gives_the_same_keys_and_signatures() -> None:
    assert feed(Remediator(KEY), outage_events()) == feed(Remediator(KEY), outage_events())


def test_after_a_restart_inputs_seen_again_emit_no_duplicate() -> None:
    steps = outage_events()
    first = Remediator(KEY)
    emitted = feed(first, steps[:20])
    assert [c.action for c in emitted] == ["open_circuit"]
    restored = Remediator(KEY)
    restored.restore(orjson.loads(orjson.dumps(first.snapshot())))
    assert feed(restored, steps[10:20]) == []  # redelivered inputs after the restart


def test_rate_limit_holds_back_a_command_and_its_transition() -> None:
    r = Remediator(KEY, RemediatorConfig(per_target_per_hour=1))
    commands = feed(r, outage_events()[:50])
    assert [c.action for c in commands] == ["open_circuit"]
    assert r.breaker_state("a").value == "open"  # the half-open probe was not sent, so not assumed
    held = [e for e in r.audit_log() if e["kind"] == "rate_limited"]
    # the probe falls due at 41 s and is held back at each advance until 48 s
    assert (len(held), held[0]["action"], held[0]["target"]) == (8, "close_circuit", "a")


def test_rate_limits_slide_per_target_and_per_action() -> None:
    limits = RateLimits(per_target=3, per_action=4, window_ms=60_000)
    got = [limits.try_acquire(t, "restart", ts) for t, ts in [("a", 0), ("a", 1), ("a", 2), ("a", 3), ("b", 4),
                                                              ("c", 5), ("c", 60_001)]]
    assert got == [True, True, True, False, True, False, True]


def test_dry_run_publishes_marked_signed_commands() -> None:
    commands = feed(Remediator(KEY, RemediatorConfig(is_dry_run=True)), outage_events())
    assert [c.is_dry_run for c in commands] == [True] * 5
    live = feed(Remediator(KEY), outage_events())
    assert [c.command_id for c in commands] == [c.command_id for c in live]
    verify(commands[0], KEY)


def test_escalation_takes_the_next_declared_action_after_the_deadline() -> None:
    spec = (ActionSpec("restart", {"deadline_s": "60"}), ActionSpec("scale_up", {"factor": "3", "deadline_s": "60"}),
            ActionSpec("scale_down", {"factor": "0.34"}))
    r = Remediator(KEY)
    r.observe_workflow(workflow(remediation=spec))
    r.observe_incident(incident())
    first = r.advance(T0)
    assert r.advance(T0 + 59_999) == []
    second = r.advance(T0 + 60_000)
    assert r.advance(T0 + 200_000) == []  # sequence exhausted
    r.observe_incident(incident(IncidentStatus.RESOLVED, T0 + 250_000))
    revert = r.advance(T0 + 250_000)
    assert [(c.action, c.target, c.params, c.incident_id) for c in first + second + revert] == [
        ("restart", "a", {}, "inc-7"), ("scale_up", "a", {"factor": "3"}, "inc-7"),
        ("scale_down", "a", {"factor": "0.34"}, "inc-7")]
    assert [c.command_id for c in first + second] == [idempotency_key("inc-7", "restart", "a", 0),
                                                       idempotency_key("inc-7", "scale_up", "a", 1)]
    audit = r.audit.for_incident("inc-7")
    assert [(e["action"], e["outcome"], e["outcome_ms"]) for e in audit] == [
        ("restart", "resolved", T0 + 250_000), ("scale_up", "resolved", T0 + 250_000), ("scale_down", "pending", None)]
    assert as_insight(audit[0]).kind == "remediation"


def test_default_escalation_and_ignored_low_severity() -> None:
    r = Remediator(KEY)
    r.observe_workflow(workflow())
    r.observe_incident(dataclasses.replace(incident(severity=Severity.WARNING), incident_id="inc-w"))
    assert r.advance(T0) == []
    r.observe_incident(incident())
    commands = r.advance(T0) + r.advance(T0 + 120_000)
    assert [(c.action, c.params, c.expires_ts_ms - c.ts_ms) for c in commands] == [
        ("reroute", {"weight": "0.2"}, 600_000), ("scale_up", {"factor": "2", "delay_s": "60"}, 600_000)]


def queue(ts_ms: int, source: str, depth: float) -> MetricEvent:
    return MetricEvent(source, ts_ms, "queue_depth", depth, {"workflow": "wf"})


def test_shedding_when_every_route_is_queued_for_long_enough() -> None:
    r = Remediator(KEY)
    r.observe_workflow(workflow())
    out = []
    for s in range(0, 70, 10):
        r.observe_metric(queue(T0 + s * 1000, "a", 50.0))
        r.observe_metric(queue(T0 + s * 1000, "b", 25.0 if s < 60 else 1.0))
        out += r.advance(T0 + s * 1000)
    assert [(c.action, c.target, c.params, (c.ts_ms - T0) // 1000) for c in out] == [
        ("shed_load", "wf", {"fraction": "0.3", "max_priority": "1"}, 30)]


def test_one_saturated_route_is_not_overload() -> None:
    r = Remediator(KEY)
    r.observe_workflow(workflow())
    for s in range(0, 120, 10):
        r.observe_metric(queue(T0 + s * 1000, "a", 90.0))
        r.observe_metric(queue(T0 + s * 1000, "b", 0.5))
    assert r.advance(T0 + 120_000) == []


def versions(r: Remediator, v2_failure_share: float, n: int = 1000) -> list[Command]:
    r.observe_workflow(workflow())
    for i in range(n):
        r.observe_request(request(i, T0 + i, "a", Status.ERROR if i % 100 == 0 else Status.OK))
    r.observe_workflow(dataclasses.replace(workflow(), version="v2", previous_version="v1", ts_ms=T0 + n))
    for i in range(n):
        failed = i < v2_failure_share * n
        r.observe_request(dataclasses.replace(request(i, T0 + n + i, "a", Status.ERROR if failed else Status.OK),
                                              workflow_version="v2", request_id=f"v2-{i}"))
    return r.advance(T0 + 2 * n)


def test_a_regressing_version_is_rolled_back_once() -> None:
    r = Remediator(KEY)
    commands = versions(r, 0.10)
    assert [(c.action, c.target, c.params) for c in commands] == [
        ("rollback", "wf", {"from_version": "v2", "to_version": "v1"})]
    assert r.advance(T0 + 5_000) == []
    r.observe_workflow(dataclasses.replace(workflow(), version="v1", previous_version="v2", ts_ms=T0 + 6_000))
    assert r.advance(T0 + 7_000) == []  # returning to v1 is not a new change to judge


def test_an_equal_version_is_not_rolled_back() -> None:
    assert versions(Remediator(KEY), 0.01) == []


def test_a_version_whose_reward_regresses_is_rolled_back() -> None:
    r = Remediator(KEY)
    r.observe_workflow(workflow())
    r.observe_workflow(dataclasses.replace(workflow(), version="v2", previous_version="v1", ts_ms=T0))

    def outcome(i: int, version: str, reward: float) -> Outcome:
        return Outcome(f"{version}-{i}", T0 + i, T0 + i, "wf", version, "a", "s", Status.OK, 800.0, 0.001, reward,
                       reward, 0.0, 0.0, 0.0, True)

    for i in range(600):
        r.observe_outcome(outcome(i, "v1", 0.70 + 0.1 * (i % 3)))
        r.observe_outcome(outcome(i, "v2", 0.55 + 0.1 * (i % 3)))
    commands = r.advance(T0 + 1_000)
    assert [(c.action, c.reason) for c in commands] == [("rollback", "v2 regressed: reward 0.800 -> 0.650")]


def test_a_late_firing_update_of_a_resolved_incident_starts_nothing() -> None:
    r = Remediator(KEY)
    r.observe_workflow(workflow())
    r.observe_incident(incident())
    assert [c.action for c in r.advance(T0)] == ["reroute"]
    r.observe_incident(incident(IncidentStatus.RESOLVED, T0 + 10_000))
    assert r.advance(T0 + 10_000) == []
    restored = Remediator(KEY)
    restored.restore(orjson.loads(orjson.dumps(r.snapshot())))
    restored.observe_incident(incident(ts_ms=T0 + 11_000))  # redelivered
    assert restored.advance(T0 + 500_000) == []
    assert restored.snapshot()["escalations"] == []
