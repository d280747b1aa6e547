"""IncidentCorrelator: grouping, group_wait/interval/repeat timers, dedup, inhibition, resolution, root cause."""

from __future__ import annotations

import dataclasses

import pytest

from processors.incidents import GroupingConfig, IncidentCorrelator, incident_id
from schemas.records import Anomaly, Incident, IncidentStatus, Severity, SignalKind
from schemas.serde import json_codec
from tests.factories import make_route, make_workflow

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z
S = 1_000
CONFIG = GroupingConfig(group_wait_ms=30 * S, group_interval_ms=300 * S, repeat_interval_ms=3_600 * S,
                        resolve_after_ms=300 * S, root_tolerance_ms=60 * S)
FIRING, RESOLVED = IncidentStatus.FIRING, IncidentStatus.RESOLVED


def anomaly(entity: str, kind: str, signal: str, at_s: float, severity: Severity = Severity.WARNING,
            anomaly_id: str | None = None) -> Anomaly:
    ts_ms = T0 + int(at_s * S)
    return Anomaly(anomaly_id=anomaly_id or f"{entity}/{signal}@{ts_ms}", ts_ms=ts_ms, entity=entity,
                   entity_kind=kind, signal=signal, kind=SignalKind.ANOMALY, score=0.9, severity=severity,
                   value=1.0, expected_low=0.0, expected_high=0.5, window_start_ms=ts_ms - 60 * S,
                   window_end_ms=ts_ms, detector="robust", detector_version="1")


def route_outage(at_s: float, route: str = "gpt-large") -> Anomaly:
    return anomaly(route, "route", "error_rate", at_s, Severity.CRITICAL)


def correlator(config: GroupingConfig = CONFIG) -> IncidentCorrelator:
    """support-bot uses gpt-large and local-small; search uses local-small only."""
    c = IncidentCorrelator(config)
    c.observe_workflow(make_workflow("support-bot"))
    c.observe_workflow(make_workflow("search", routes=(make_route("local-small"),)))
    return c


def at(c: IncidentCorrelator, at_s: float) -> list[Incident]:
    return c.advance(T0 + int(at_s * S))


def brief(incidents: list[Incident]) -> list[tuple[object, ...]]:
    return [(i.status.value, (i.ts_ms - T0) // S, i.group_key, i.root_cause, i.members, i.anomaly_count)
            for i in incidents]


def test_simultaneous_anomalies_form_one_incident_with_every_field_exact() -> None:
    c = correlator()
    for a in (route_outage(0), anomaly("gpt-large", "route", "latency_ms", 1),
              anomaly("support-bot", "workflow", "latency_ms", 2)):
        c.observe_anomaly(a)
    (incident,) = at(c, 30)
    assert incident == Incident(
        incident_id=incident_id("root=route:gpt-large", T0), ts_ms=T0 + 30 * S, status=FIRING,
        severity=Severity.CRITICAL, group_key="root=route:gpt-large", root_cause="route:gpt-large",
        started_ms=T0, members=("route:gpt-large/error_rate", "route:gpt-large/latency_ms",
                                "workflow:support-bot/latency_ms"),
        anomaly_count=3, resolved_ms=None,
        summary=("critical firing: route:gpt-large error_rate,latency_ms since 2023-11-14T22:13:20Z"
                 "; 3 members on 2 entities, 3 signals; also workflow:support-bot"))


def test_unrelated_entities_form_separate_incidents_in_key_order() -> None:
    c = correlator()
    c.observe_anomaly(anomaly("gpu-7", "metric_source", "memory", 0))
    c.observe_anomaly(anomaly("search", "workflow", "quality", 0))
    assert [(i.group_key, i.root_cause) for i in at(c, 30)] == [
        ("root=metric_source:gpu-7", "metric_source:gpu-7"), ("root=workflow:search", "workflow:search")]


def test_group_wait_delays_the_first_notification_exactly() -> None:
    c = correlator()
    c.observe_anomaly(anomaly("gpt-large", "route", "latency_ms", 10))
    assert at(c, 39.999) == []
    assert brief(at(c, 40)) == [("firing", 40, "root=route:gpt-large", "route:gpt-large",
                                 ("route:gpt-large/latency_ms",), 1)]
    assert at(c, 100) == []


def test_signals_within_group_wait_ride_along_and_a_change_waits_group_interval() -> None:
    c = correlator()
    # queued all at once: advance applies them in event time, whatever the arrival order
    for t in range(0, 1_001, 100):
        c.observe_anomaly(anomaly("gpt-large", "route", "latency_ms", t))
    for signal, t in (("tokens", 900), ("quality", 400), ("error_rate", 60), ("cost_usd", 29)):
        c.observe_anomaly(anomaly("gpt-large", "route", signal, t))
    assert [i.members for i in at(c, 30)] == [("route:gpt-large/cost_usd", "route:gpt-large/latency_ms")]
    assert at(c, 329.999) == []  # changed at 60 s, but the last notification was at 30 s
    (update,) = at(c, 330)
    assert (update.members[1], update.anomaly_count, update.incident_id) == (
        "route:gpt-large/error_rate", 6, incident_id("root=route:gpt-large", T0))
    assert at(c, 629.999) == []  # changed at 400 s
    assert [(len(i.members), i.anomaly_count) for i in at(c, 630)] == [(4, 10)]
    assert at(c, 929.999) == []  # changed at 900 s, 270 s after the last update
    assert [((i.ts_ms - T0) // S, len(i.members)) for i in at(c, 930)] == [(930, 5)]


def test_a_change_after_a_quiet_interval_is_notified_at_once() -> None:
    c = correlator()
    for t in (0, 200, 400):
        c.observe_anomaly(anomaly("gpt-large", "route", "latency_ms", t))
    c.observe_anomaly(anomaly("gpt-large", "route", "cost_usd", 500))
    assert [(i.ts_ms - T0) // S for i in at(c, 30) + at(c, 600)] == [30, 500]


def test_repeat_interval_renotifies_an_unchanged_firing_group() -> None:
    c = correlator(GroupingConfig(group_wait_ms=30 * S, repeat_interval_ms=600 * S, resolve_after_ms=300 * S))
    out = []
    for t in range(0, 1300, 100):
        c.observe_anomaly(anomaly("gpt-large", "route", "latency_ms", t))
        out += at(c, t + 99)
    assert [((i.ts_ms - T0) // S, i.anomaly_count, i.members) for i in out] == [
        (30, 1, ("route:gpt-large/latency_ms",)), (630, 7, ("route:gpt-large/latency_ms",)),
        (1230, 13, ("route:gpt-large/latency_ms",))]


def test_repeated_firings_are_one_member_and_redeliveries_count_once() -> None:
    c = correlator()
    for t in range(5):
        c.observe_anomaly(route_outage(t))
    c.observe_anomaly(route_outage(2))  # the very same record again (same anomaly_id)
    assert brief(at(c, 30)) == [("firing", 30, "root=route:gpt-large", "route:gpt-large",
                                 ("route:gpt-large/error_rate",), 5)]


def test_info_anomalies_and_drift_do_not_open_incidents() -> None:
    c = correlator()
    c.observe_anomaly(anomaly("gpt-large", "route", "latency_ms", 0, Severity.INFO))
    drift = anomaly("gpt-large", "route", "latency_ms", 1)
    c.observe_anomaly(dataclasses.replace(drift, kind=SignalKind.DRIFT))
    assert at(c, 1_000) == [] and len(c) == 0


def test_route_outage_inhibits_workflow_latency_alerts_even_when_grouping_by_entity() -> None:
    by_entity = GroupingConfig(group_by=("entity",), group_wait_ms=30 * S, resolve_after_ms=300 * S)
    c = correlator(by_entity)
    c.observe_anomaly(route_outage(0))
    c.observe_anomaly(anomaly("support-bot", "workflow", "latency_ms", 5))
    c.observe_anomaly(anomaly("search", "workflow", "latency_ms", 5))  # does not use gpt-large
    assert brief(at(c, 30)) == [("firing", 30, "entity=route:gpt-large", "route:gpt-large",
                                 ("route:gpt-large/error_rate", "workflow:support-bot/latency_ms"), 2)]
    assert brief(at(c, 35)) == [
        ("firing", 35, "entity=workflow:search", "workflow:search", ("workflow:search/latency_ms",), 1)]


def test_without_an_outage_workflow_latency_is_its_own_incident_when_grouping_by_entity() -> None:
    c = correlator(GroupingConfig(group_by=("entity",), group_wait_ms=30 * S))
    c.observe_anomaly(anomaly("gpt-large", "route", "latency_ms", 0, Severity.CRITICAL))  # not an outage signal
    c.observe_anomaly(anomaly("support-bot", "workflow", "latency_ms", 0))
    assert [i.group_key for i in at(c, 30)] == ["entity=route:gpt-large", "entity=workflow:support-bot"]


def test_inhibition_ends_when_the_outage_stops_firing() -> None:
    c = correlator(GroupingConfig(group_by=("entity",), group_wait_ms=30 * S, resolve_after_ms=300 * S))
    c.observe_anomaly(route_outage(0))
    for t in (100, 200, 300, 400):  # keeps the route's incident open, but it is no outage
        c.observe_anomaly(anomaly("gpt-large", "route", "latency_ms", t))
    c.observe_anomaly(anomaly("support-bot", "workflow", "latency_ms", 300))  # outage last fired 300 s ago
    assert [((i.ts_ms - T0) // S, i.group_key) for i in at(c, 400)] == [
        (30, "entity=route:gpt-large"), (330, "entity=route:gpt-large"), (330, "entity=workflow:support-bot")]


def test_a_workflow_incident_moves_into_a_later_outage_and_then_resolves() -> None:
    c = correlator(GroupingConfig(group_by=("entity",), group_wait_ms=30 * S, resolve_after_ms=300 * S))
    c.observe_anomaly(anomaly("support-bot", "workflow", "latency_ms", 0))
    assert [i.group_key for i in at(c, 30)] == ["entity=workflow:support-bot"]
    c.observe_anomaly(route_outage(100))
    c.observe_anomaly(anomaly("support-bot", "workflow", "latency_ms", 110))
    out = at(c, 500)
    assert brief(out) == [
        ("firing", 130, "entity=route:gpt-large", "route:gpt-large",
         ("route:gpt-large/error_rate", "workflow:support-bot/latency_ms"), 2),
        ("resolved", 300, "entity=workflow:support-bot", "workflow:support-bot",
         ("workflow:support-bot/latency_ms",), 1),
        ("resolved", 410, "entity=route:gpt-large", "route:gpt-large",
         ("route:gpt-large/error_rate", "workflow:support-bot/latency_ms"), 2)]


def test_resolution_after_signals_stop_and_a_new_incident_when_they_return() -> None:
    c = correlator()
    c.observe_anomaly(route_outage(0))
    c.observe_anomaly(route_outage(50))
    first = at(c, 30)
    assert at(c, 349.999) == []
    (resolved,) = at(c, 350)
    assert (resolved.status, resolved.ts_ms, resolved.resolved_ms, resolved.incident_id, resolved.anomaly_count) == (
        RESOLVED, T0 + 350 * S, T0 + 350 * S, first[0].incident_id, 2)
    assert resolved.summary.endswith("; resolved 2023-11-14T22:19:10Z")
    assert len(c) == 0
    c.observe_anomaly(route_outage(1_000))
    (again,) = at(c, 1_030)
    assert (again.status, again.started_ms, again.incident_id) == (
        FIRING, T0 + 1_000 * S, incident_id("root=route:gpt-large", T0 + 1_000 * S))
    assert again.incident_id != first[0].incident_id


def test_a_group_resolved_before_its_first_notification_pages_nobody() -> None:
    c = correlator(GroupingConfig(group_wait_ms=600 * S, resolve_after_ms=300 * S))
    c.observe_anomaly(route_outage(0))
    assert at(c, 2_000) == [] and len(c) == 0


def test_a_late_signal_from_before_the_resolution_does_not_reopen_it() -> None:
    c = correlator()
    c.observe_anomaly(route_outage(0))
    assert [i.status for i in at(c, 30) + at(c, 400)] == [FIRING, RESOLVED]
    c.observe_anomaly(route_outage(299))  # arrives after its incident resolved
    assert at(c, 1_000) == [] and c.late_dropped == 1


def test_root_cause_prefers_the_route_when_starts_are_close() -> None:
    c = correlator()
    c.observe_anomaly(anomaly("support-bot", "workflow", "latency_ms", 0))
    c.observe_anomaly(anomaly("gpt-large", "route", "latency_ms", 20))
    # the route's group takes over the workflow's, which had not notified yet
    assert brief(at(c, 100)) == [("firing", 30, "root=route:gpt-large", "route:gpt-large",
                                  ("route:gpt-large/latency_ms", "workflow:support-bot/latency_ms"), 2)]


def test_root_cause_is_the_earliest_when_starts_are_far_apart() -> None:
    c = correlator(GroupingConfig(group_wait_ms=30 * S, root_tolerance_ms=10 * S))
    c.observe_anomaly(anomaly("support-bot", "workflow", "latency_ms", 0))
    c.observe_anomaly(anomaly("gpt-large", "route", "latency_ms", 20))
    assert [(i.group_key, i.root_cause, (i.ts_ms - T0) // S) for i in at(c, 100)] == [
        ("root=workflow:support-bot", "workflow:support-bot", 30), ("root=route:gpt-large", "route:gpt-large", 50)]


def test_workflow_signal_joins_its_misbehaving_route_and_the_route_is_the_root() -> None:
    c = correlator()
    c.observe_anomaly(anomaly("local-small", "route", "latency_ms", 0))
    c.observe_anomaly(anomaly("search", "workflow", "quality", 40))
    c.observe_anomaly(anomaly("support-bot", "workflow", "cost_usd", 40))
    members = ("route:local-small/latency_ms", "workflow:search/quality", "workflow:support-bot/cost_usd")
    assert brief(at(c, 400)) == [
        ("firing", 30, "root=route:local-small", "route:local-small", ("route:local-small/latency_ms",), 1),
        ("firing", 330, "root=route:local-small", "route:local-small", members, 3),
        ("resolved", 340, "root=route:local-small", "route:local-small", members, 3)]


def test_config_rejects_unknown_labels_and_bad_timers() -> None:
    with pytest.raises(ValueError):
        GroupingConfig(group_by=("tenant",))
    with pytest.raises(ValueError):
        GroupingConfig(resolve_after_ms=0)


def test_emitted_incidents_round_trip_through_the_wire_codec() -> None:
    c = correlator()
    c.observe_anomaly(route_outage(0))
    out = at(c, 30) + at(c, 1_000)
    codec = json_codec(Incident)
    assert [codec.decode(codec.encode(i)) for i in out] == out and [i.status for i in out] == [FIRING, RESOLVED]
