"""IncidentCorrelator: log bursts, determinism under arrival order, snapshot/restore mid-stream, bounded memory."""

from __future__ import annotations

import dataclasses
import json
import random
from typing import Any, Union

from hypothesis import example, given
from hypothesis import strategies as st

from processors.incidents import GroupingConfig, IncidentCorrelator
from schemas.records import Anomaly, Incident, IncidentStatus, LogEvent, LogLevel, Severity
from tests.unit.test_incidents import S, T0, anomaly, at, brief, correlator, route_outage

Event = Union[Anomaly, LogEvent]


def log(at_s: float, level: LogLevel = LogLevel.ERROR, route: str | None = "gpt-large",
        workflow: str | None = None, service: str = "gateway") -> LogEvent:
    return LogEvent(service=service, ts_ms=T0 + int(at_s * S), level=level, message="upstream timeout",
                    route=route, workflow=workflow)


def feed(c: IncidentCorrelator, events: list[Event]) -> None:
    for event in events:
        if isinstance(event, Anomaly):
            c.observe_anomaly(event)
        else:
            c.observe_log(event)


# ------------------------------------------------------------------ log bursts


def test_a_burst_of_error_lines_raises_a_signal() -> None:
    c = correlator()
    feed(c, [log(t) for t in (0, 10, 20, 30, 40, 50)])
    (incident,) = at(c, 100)
    assert (incident.ts_ms - T0, incident.members, incident.anomaly_count, incident.severity) == (
        70 * S, ("route:gpt-large/log_errors",), 2, Severity.WARNING)  # fired by the 5th and 6th lines


def test_isolated_error_lines_and_non_error_levels_raise_nothing() -> None:
    c = correlator()
    feed(c, [log(t) for t in range(0, 600, 20)])  # 3 per minute, all day long
    feed(c, [log(t, LogLevel.WARNING, route="local-small") for t in range(0, 50, 5)])
    feed(c, [log(t, LogLevel.INFO, route="local-small") for t in range(0, 50, 5)])
    assert at(c, 2_000) == [] and len(c) == 0


def test_a_critical_line_makes_the_burst_critical_and_the_line_picks_its_entity() -> None:
    c = correlator()
    feed(c, [log(t, route=None, workflow="search") for t in (0, 1, 2, 3)])
    feed(c, [log(4, LogLevel.CRITICAL, route=None, workflow="search")])
    feed(c, [log(t, route=None, service="vector-db") for t in range(5)])
    assert [(i.group_key, i.severity.value) for i in at(c, 100)] == [
        ("root=service:vector-db", "warning"), ("root=workflow:search", "critical")]


def test_a_route_log_burst_joins_the_route_anomaly_incident() -> None:
    c = correlator()
    c.observe_anomaly(route_outage(0))
    feed(c, [log(t) for t in range(1, 6)])
    assert [i.members for i in at(c, 30)] == [("route:gpt-large/error_rate", "route:gpt-large/log_errors")]


# ------------------------------------------------------------------ determinism and state

ROUTES, WORKFLOWS = ("gpt-large", "local-small"), ("support-bot", "search")
signal_events = st.one_of(
    st.builds(anomaly, st.sampled_from(ROUTES), st.just("route"),
              st.sampled_from(("error_rate", "latency_ms", "cost_usd")), st.integers(0, 600),
              st.sampled_from((Severity.WARNING, Severity.CRITICAL))),
    st.builds(anomaly, st.sampled_from(WORKFLOWS), st.just("workflow"),
              st.sampled_from(("latency_ms", "quality", "error_rate")), st.integers(0, 600),
              st.sampled_from((Severity.INFO, Severity.WARNING, Severity.CRITICAL))),
    st.builds(log, st.integers(0, 600), st.sampled_from((LogLevel.ERROR, LogLevel.CRITICAL)),
              st.sampled_from((*ROUTES, None)), st.sampled_from((*WORKFLOWS, None))),
)
FAST = GroupingConfig(group_wait_ms=30 * S, group_interval_ms=120 * S, repeat_interval_ms=300 * S,
                      resolve_after_ms=200 * S, root_tolerance_ms=60 * S, forget_after_ms=600 * S,
                      log_burst_count=2, log_burst_window_ms=60 * S)
configs = st.sampled_from([dataclasses.replace(FAST, group_by=by)
                           for by in (("root",), ("entity",), ("root", "signal"), ("entity_kind",))])


def batches(events: list[Event], step_s: int, late_every: int) -> list[tuple[int, list[Event]]]:
    """Deliver events in watermark steps of ``step_s``; every ``late_every``-th one a step late."""
    ordered = sorted(events, key=lambda e: (e.ts_ms, repr(e)))
    out: list[tuple[int, list[Event]]] = [(w, []) for w in range(step_s, 2_400 + step_s, step_s)]
    for i, event in enumerate(ordered):
        step = (event.ts_ms - T0) // (step_s * S) + (1 if late_every and i % late_every == 0 else 0)
        out[min(step, len(out) - 1)][1].append(event)
    return out


def run(plan: list[tuple[int, list[Event]]], c: IncidentCorrelator | None = None,
        shuffle_seed: int | None = None, config: GroupingConfig = FAST) -> list[Incident]:
    c = correlator(config) if c is None else c  # an empty correlator has len 0: falsy
    out: list[Incident] = []
    for watermark_s, arrived in plan:
        arrived = list(arrived)
        if shuffle_seed is not None:
            random.Random(shuffle_seed + watermark_s).shuffle(arrived)
        feed(c, arrived)
        out += at(c, watermark_s)
    return out


@given(st.lists(signal_events, max_size=60), st.sampled_from((10, 45, 100, 300)), st.integers(0, 4),
       st.integers(0, 2**16), configs)
def test_arrival_order_between_watermarks_does_not_change_the_output(
        events: list[Event], step_s: int, late_every: int, seed: int, config: GroupingConfig) -> None:
    plan = batches(events, step_s, late_every)
    assert run(plan, shuffle_seed=seed, config=config) == run(plan, config=config) == run(plan, config=config)


BY_ENTITY = dataclasses.replace(FAST, group_by=("entity",))


@example([log(5), log(30)], 10, 0, 0.005, FAST)  # a burst window open across the cut
@example([route_outage(0), anomaly("support-bot", "workflow", "latency_ms", 100)], 10, 0, 0.02, BY_ENTITY)
@given(st.lists(signal_events, max_size=60), st.sampled_from((10, 45, 100, 300)), st.integers(0, 4),
       st.floats(0.0, 0.3), configs)
def test_snapshot_restore_mid_stream_gives_identical_output(
        events: list[Event], step_s: int, late_every: int, cut_at: float, config: GroupingConfig) -> None:
    plan = batches(events, step_s, late_every)
    cut = int(cut_at * len(plan))  # the events lie in the first quarter of the plan
    first = correlator(config)
    head = run(plan[:cut], first)
    # the snapshot also carries signals queued for later watermarks
    feed(first, [e for _, arrived in plan[cut:cut + 1] for e in arrived])
    state: dict[str, Any] = json.loads(json.dumps(first.snapshot()))
    resumed = IncidentCorrelator(config)
    resumed.restore(state)
    rest = [(w, [] if i == 0 else arrived) for i, (w, arrived) in enumerate(plan[cut:])]
    assert head + run(rest, resumed) == run(plan, config=config)
    assert resumed.snapshot() == json.loads(json.dumps(resumed.snapshot()))


@given(st.lists(signal_events, max_size=60), st.sampled_from((10, 45)), st.integers(0, 4), configs)
def test_notification_invariants(events: list[Event], step_s: int, late_every: int,
                                 config: GroupingConfig) -> None:
    seen: dict[str, list[Incident]] = {}
    for incident in run(batches(events, step_s, late_every), config=config):
        seen.setdefault(incident.incident_id, []).append(incident)
    for updates in seen.values():
        firing = [u for u in updates if u.status == IncidentStatus.FIRING]
        assert firing and updates[0] == firing[0]
        assert firing[0].ts_ms >= firing[0].started_ms + FAST.group_wait_ms
        assert all(b.ts_ms - a.ts_ms >= FAST.group_interval_ms for a, b in zip(firing, firing[1:]))
        assert [u.status for u in updates[len(firing):]] in ([], [IncidentStatus.RESOLVED])
        assert len({(u.group_key, u.started_ms) for u in updates}) == 1
        assert all(u.members == tuple(sorted(set(u.members))) for u in updates)


def test_snapshot_carries_queued_signals_and_restores_exactly() -> None:
    c = correlator()
    c.observe_anomaly(route_outage(0))
    at(c, 10)
    c.observe_anomaly(anomaly("support-bot", "workflow", "latency_ms", 500))  # beyond the watermark
    resumed = IncidentCorrelator(c.config)
    resumed.restore(json.loads(json.dumps(c.snapshot())))
    assert resumed.snapshot() == c.snapshot()
    assert brief(at(resumed, 1_000)) == brief(at(c, 1_000)) == [
        ("firing", 30, "root=route:gpt-large", "route:gpt-large", ("route:gpt-large/error_rate",), 1),
        ("resolved", 300, "root=route:gpt-large", "route:gpt-large", ("route:gpt-large/error_rate",), 1),
        ("firing", 530, "root=workflow:support-bot", "workflow:support-bot",
         ("workflow:support-bot/latency_ms",), 1),
        ("resolved", 800, "root=workflow:support-bot", "workflow:support-bot",
         ("workflow:support-bot/latency_ms",), 1)]


def test_memory_is_bounded_once_incidents_resolve() -> None:
    c = correlator()
    for i in range(50):
        c.observe_anomaly(anomaly(f"route-{i}", "route", "latency_ms", i))
        c.observe_log(log(i, route=f"route-{i}"))
    assert len(at(c, 100)) == 50
    at(c, 600)
    state = c.snapshot()
    assert (len(c), len(state["resolved_at"]), len(state["bursts"])) == (0, 50, 50)
    at(c, 600 + 3_600 + 300)
    state = c.snapshot()
    assert (state["groups"], state["member_group"], state["resolved_at"], state["bursts"]) == ([], {}, {}, [])
