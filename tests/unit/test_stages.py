"""Stages driven in memory: what they send for a batch, with no Kafka."""

from __future__ import annotations

from dataclasses import replace

import orjson

from infra.settings import Settings
from infra.topics import BY_NAME
from schemas.records import FeedbackEvent, Outcome, RequestEvent, WorkflowDefinition
from schemas.serde import json_codec
from sinks.prometheus import Metrics
from streams.edge import RawMessage
from streams.stages import CorrelateStage, ObserveStage, StageEnv, WorkflowStage
from tests.factories import make_feedback, make_metric, make_request, make_workflow

T0 = 1_700_000_000_000


#: The wall clock the gates see: after every event of these tests (no event is from the future).
NOW_MS = T0 + 365 * 86_400_000


def env() -> StageEnv:
    return StageEnv(Settings(bootstrap_servers="unused:9092", topic_prefix="p."), Metrics(), now_ms=lambda: NOW_MS)


def msg(topic: str, record: object, offset: int = 0, partition: int = 0) -> RawMessage:
    value = json_codec(type(record)).encode(record)
    key = getattr(record, BY_NAME[topic.removeprefix("p.")].key, None)  # the topic's key, as producers send it
    return RawMessage(topic, partition, offset, None if key is None else str(key).encode(), value, T0)


def decode(outgoing, record_type):  # type: ignore[no-untyped-def]
    return json_codec(record_type).decode(outgoing.value)


def test_correlate_stage_emits_provisional_final_and_dead_letters() -> None:
    e = env()
    stage = CorrelateStage(e)
    batch = [
        msg("p.requests", make_request("r1", ts_ms=T0), 0),
        msg("p.feedback", make_feedback("r1", ts_ms=T0 + 10, kind="thumbs", value=1, feedback_id="f1"), 0),
        msg("p.feedback", make_feedback("r1", ts_ms=T0 + 20, kind="thumbs", value=1, feedback_id="f1"), 1),
        msg("p.requests", make_request("r2", ts_ms=T0 + 3_600_000), 1),
        msg("p.feedback", make_feedback("r1", ts_ms=T0 + 3_600_001, kind="rating", value=1, feedback_id="f2"), 2),
    ]
    out = stage.handle(batch)
    topics = [o.topic for o in out]
    assert topics == ["p.outcomes", "p.dlq", "p.outcomes", "p.dlq", "p.outcomes"]
    first, second, final = (decode(o, Outcome) for o in out if o.topic == "p.outcomes")
    assert (first.request_id, first.is_final) == ("r1", False)
    assert (second.request_id, second.is_final) == ("r2", False)
    assert (final.request_id, final.is_final, final.quality, final.feedback_count) == ("r1", True, 1.0, 1)
    reasons = [orjson.loads(o.value)["reason"] for o in out if o.topic == "p.dlq"]
    assert reasons == ["duplicate", "too_late"]
    assert e.metrics.value("loopwise_events_in_total", topic="p.requests") == 2
    assert e.metrics.value("loopwise_dlq_total", topic="p.feedback", reason="too_late") == 1


def test_workflow_stage_feeds_the_shared_registry() -> None:
    e = env()
    WorkflowStage(e).handle([msg("p.workflows", make_workflow(context_keys=("tenant",)))])
    out = CorrelateStage(e).handle([msg("p.requests", make_request("r1"))])
    assert decode(out[0], Outcome).segment == "tenant=acme"


def test_observe_stage_counts_and_dead_letters() -> None:
    e = env()
    bad = RawMessage("p.metrics", 0, 1, None, b"{}", T0)
    out = ObserveStage(e).handle([msg("p.metrics", make_metric()), bad])
    assert [o.topic for o in out] == ["p.dlq"]
    assert e.metrics.value("loopwise_events_in_total", topic="p.metrics") == 1


def test_correlate_stage_flags_an_error_burst_once_per_series() -> None:
    import random

    from schemas.records import Anomaly, Status

    rng = random.Random(7)
    e = env()
    stage = CorrelateStage(e)
    normal = [msg("p.requests", make_request(f"ok{i}", ts_ms=T0 + i * 100, latency_ms=800 + rng.gauss(0, 40)), i)
              for i in range(400)]
    assert [o for o in stage.handle(normal) if o.topic == "p.anomalies"] == []
    burst = [msg("p.requests", make_request(f"err{i}", ts_ms=T0 + 40_000 + i * 100, status=Status.ERROR), 400 + i)
             for i in range(50)]
    found = [decode(o, Anomaly) for o in stage.handle(burst) if o.topic == "p.anomalies"]
    error_rate = [(a.entity, a.severity) for a in found if a.signal == "error_rate"]
    assert {entity for entity, _ in error_rate} == {"gpt-large", "support-bot"}
    rank = {"info": 0, "warning": 1, "critical": 2}
    for entity in ("gpt-large", "support-bot"):
        # Throttled: the start, then each rise in severity once (info → warning → critical at most).
        seen = [rank[str(severity)] for name, severity in error_rate if name == entity]
        assert 1 <= len(seen) <= 3 and seen == sorted(set(seen)), seen
        assert seen[-1] == rank["critical"]  # 50 errors in a row on a healthy route


def test_incident_stage_groups_anomalies_and_resolves_in_event_time() -> None:
    from schemas.records import Incident, IncidentStatus
    from streams.stages import IncidentStage
    from tests.factories import make_anomaly

    e = env()
    WorkflowStage(e).handle([msg("p.workflows", make_workflow())])
    stage = IncidentStage(e)
    first = [msg("p.anomalies", make_anomaly("gpt-large", ts_ms=T0, severity="critical"), 0),
             msg("p.anomalies", make_anomaly("support-bot", ts_ms=T0 + 2_000, signal="latency_ms",
                                             entity_kind="workflow"), 1)]
    assert stage.handle(first) == []  # group_wait: gathering related signals
    later = [msg("p.anomalies", make_anomaly("gpt-large", ts_ms=T0 + 60_000, severity="critical"), 2)]
    [firing] = [decode(o, Incident) for o in stage.handle(later)]
    assert firing.status is IncidentStatus.FIRING and firing.root_cause == "route:gpt-large"
    assert "workflow:support-bot/latency_ms" in firing.members  # inhibited into the route's outage
    quiet = [msg("p.anomalies", make_anomaly("other-route", ts_ms=T0 + 3_600_000, severity="warning"), 3)]
    updates = [decode(o, Incident) for o in stage.handle(quiet)]
    assert [(i.incident_id, i.status) for i in updates if i.root_cause == "route:gpt-large"] == [
        (firing.incident_id, IncidentStatus.RESOLVED)]


def test_incident_stage_restored_from_its_snapshot_resolves_the_incident_it_had_open() -> None:
    from schemas.records import Incident, IncidentStatus
    from streams.stages import IncidentStage
    from tests.factories import make_anomaly

    e = env()
    WorkflowStage(e).handle([msg("p.workflows", make_workflow())])
    stage = IncidentStage(e)
    stage.handle([msg("p.anomalies", make_anomaly("gpt-large", ts_ms=T0, severity="critical"), 0)])
    [firing] = [decode(o, Incident) for o in stage.handle(
        [msg("p.anomalies", make_anomaly("gpt-large", ts_ms=T0 + 60_000, severity="critical"), 1)])]
    [(partition, key, snapshot)] = stage.state_changes()
    assert (partition, key) == (0, b"incidents")
    restarted_env = env()
    WorkflowStage(restarted_env).handle([msg("p.workflows", make_workflow())])
    restarted = IncidentStage(restarted_env)
    restarted.restore(0, [(key, snapshot)])
    quiet = [msg("p.anomalies", make_anomaly("other-route", ts_ms=T0 + 3_600_000, severity="warning"), 2)]
    updates = [decode(o, Incident) for o in restarted.handle(quiet)]
    # The same incident resolves (not a new one firing, not forgotten and never resolved).
    assert [(i.incident_id, i.status) for i in updates if i.root_cause == "route:gpt-large"] == [
        (firing.incident_id, IncidentStatus.RESOLVED)]


def learn_msg(record: object, offset: int = 0, partition: int = 0) -> RawMessage:
    """A record as the learn stage reads it: from its repartition topic, keyed by workflow."""
    logical = {"Outcome": "outcomes", "Anomaly": "anomalies", "Command": "commands.remediation"}[type(record).__name__]
    return RawMessage(f"p.repartition.loopwise.learn.{logical}", partition, offset, b"support-bot",
                      json_codec(type(record)).encode(record), T0)


def test_learn_stage_publishes_experiment_decisions_from_final_outcomes_only() -> None:
    from processors.correlation import OutcomeCorrelator
    from schemas.records import ExperimentDecision, ExperimentSpec, ExperimentStatus, VariantSpec
    from streams.stages import LearnStage

    e = env()
    workflow = make_workflow(variants=(VariantSpec("a", is_control=True), VariantSpec("b")),
                             experiment=ExperimentSpec("support-prompt"))
    WorkflowStage(e).handle([msg("p.workflows", workflow)])
    stage = LearnStage(e)
    correlator = OutcomeCorrelator(e.registry)
    provisional = [correlator.on_request(make_request(f"r{i}", ts_ms=T0 + i, variant="ab"[i % 2])) for i in range(10)]
    finals = correlator.advance(T0 + 3_600_000 + 10)
    out = stage.handle([learn_msg(o, i) for i, o in enumerate(provisional)])
    [first] = [decode(o, ExperimentDecision) for o in out if o.topic == "p.decisions.experiments"]
    assert first.experiment == "support-prompt" and first.status is ExperimentStatus.RUNNING
    assert sum(arm.n for arm in first.arms) == 0  # provisional outcomes are not counted
    engine = stage.cores[0].experiments["support-prompt"]
    assert (sum(engine.state.observed), engine.state.ignored) == (0, 10)
    stage.handle([learn_msg(o, 10 + i) for i, o in enumerate(finals)])
    assert sum(engine.state.observed) == 10 and engine.state.observed == [5, 5]


def test_learn_rekey_sends_outcomes_to_their_workflow_and_route_signals_to_every_workflow_using_the_route() -> None:
    from streams.stages import LearnRekeyStage
    from tests.factories import make_anomaly

    e = env()
    first = make_workflow()
    second = make_workflow(workflow="extract", routes=(first.routes[0],))
    WorkflowStage(e).handle([msg("p.workflows", first), msg("p.workflows", second, 1)])
    rekey = LearnRekeyStage(e)
    from processors.correlation import OutcomeCorrelator
    outcome = OutcomeCorrelator(e.registry).on_request(make_request("r1", ts_ms=T0))
    shared_route = first.routes[0].name
    other_route = next(r.name for r in first.routes if r.name != shared_route)
    out = rekey.handle([msg("p.outcomes", outcome), msg("p.anomalies", make_anomaly(shared_route, ts_ms=T0), 1),
                        msg("p.anomalies", make_anomaly(other_route, ts_ms=T0), 2)])
    sent = [(o.topic.rsplit(".", 1)[1], o.key) for o in out]
    assert sent == [("outcomes", b"support-bot"), ("anomalies", b"support-bot"), ("anomalies", b"extract"),
                    ("anomalies", b"support-bot")]


def test_learn_stage_restored_from_its_snapshot_publishes_no_decision_from_less_than_it_knew() -> None:
    from processors.correlation import OutcomeCorrelator
    from schemas.records import ExperimentDecision, ExperimentSpec, RoutingPolicy, VariantSpec
    from streams.stages import LearnStage

    e = env()
    workflow = make_workflow(variants=(VariantSpec("a", is_control=True), VariantSpec("b")),
                             experiment=ExperimentSpec("support-prompt"))
    WorkflowStage(e).handle([msg("p.workflows", workflow)])
    stage = LearnStage(e)
    correlator = OutcomeCorrelator(e.registry)
    outcomes = [correlator.on_request(make_request(f"r{i}", ts_ms=T0 + i * 100, variant="ab"[i % 2]))
                for i in range(300)]
    stage.handle([learn_msg(o, i) for i, o in enumerate(outcomes[:200])])
    changes = stage.state_changes()
    assert {(partition, key) for partition, key, _ in changes} == {(0, b"core"), (0, b"core/0")}
    # A new worker restores the snapshot, then replays what came after it (the engine seeks there).
    restarted_env = env()
    WorkflowStage(restarted_env).handle([msg("p.workflows", workflow)])
    restarted = LearnStage(restarted_env)
    restarted.restore(0, [(key, value) for _, key, value in changes])
    tail = [learn_msg(o, 200 + i) for i, o in enumerate(outcomes[200:])]
    original_out, restarted_out = stage.handle(tail), restarted.handle(tail)
    assert [(o.topic, o.key, o.value) for o in restarted_out] == [(o.topic, o.key, o.value) for o in original_out]
    assert restarted.cores[0].snapshot() == stage.cores[0].snapshot()
    # Without the snapshot it would start from priors and publish that over what was learned.
    fresh = LearnStage(restarted_env)
    fresh.handle(tail)

    def evidence(learn: LearnStage) -> float:
        [(workflow, segment)] = learn.cores[0].router.segments
        policy = learn.cores[0].router.policy(workflow, segment, T0 + 60_000)
        assert isinstance(policy, RoutingPolicy)
        return sum(r.n for r in policy.routes)

    assert evidence(restarted) == evidence(stage) > evidence(fresh)
    assert all(decode(o, ExperimentDecision).experiment == "support-prompt"
               for o in restarted_out if o.topic == "p.decisions.experiments")


def test_remediate_stage_opens_a_failing_route_with_a_signed_command_once() -> None:
    from schemas.records import Command, Status
    from schemas.signing import verify
    from streams.stages import RemediateStage

    e = env()
    WorkflowStage(e).handle([msg("p.workflows", make_workflow(fallback_route="local-small"))])
    stage = RemediateStage(e)
    traffic = [msg("p.requests", make_request(f"r{i}", ts_ms=T0 + i * 50, status=Status.ERROR if i >= 200 else Status.OK,
                                              error_type="upstream_5xx" if i >= 200 else None), i)
               for i in range(400)]
    commands = [decode(o, Command) for o in stage.handle(traffic) if o.topic == "p.commands.remediation"]
    opened = [c for c in commands if c.action == "open_circuit"]
    assert [c.target for c in opened] == ["gpt-large"]
    verify(opened[0], e.settings.signing_key_bytes)  # raises if unsigned or forged
    [(partition, key, snapshot)] = stage.state_changes()
    assert (partition, key) == (0, b"remediator")
    restarted = RemediateStage(env())  # a new worker: restores, then sees the same batch again
    restarted.restore(0, [(key, snapshot)])
    again = [decode(o, Command) for o in restarted.handle(traffic) if o.topic == "p.commands.remediation"]
    assert not {c.command_id for c in again} & {c.command_id for c in opened}


def test_route_stage_answers_from_published_policies_without_a_learn_stage_beside_it() -> None:
    from processors.correlation import OutcomeCorrelator
    from schemas.records import PrivacyLevel, RouteDecision, RouteRequest, RoutingPolicy
    from streams.stages import LearnStage, RouteStage
    from tests.factories import make_context

    learner_env = env()
    WorkflowStage(learner_env).handle([msg("p.workflows", make_workflow())])
    learn = LearnStage(learner_env)
    correlator = OutcomeCorrelator(learner_env.registry)
    outcomes = [learn_msg(correlator.on_request(make_request(f"r{i}", ts_ms=T0 + i * 100)), i) for i in range(50)]
    published = [o for o in learn.handle(outcomes) if o.topic == "p.decisions.routing"]
    policies = [decode(o, RoutingPolicy) for o in published]
    assert policies and {p.workflow for p in policies} == {"support-bot"}
    assert all(abs(sum(r.probability for r in p.routes) - 1.0) < 1e-6 for p in policies)
    route = RouteStage(env())  # another worker: it knows only what is on the topics
    restricted = RouteRequest("q1", T0 + 10_000, "support-bot", make_context(privacy_level=PrivacyLevel.RESTRICTED))
    [unknown] = [decode(o, RouteDecision) for o in route.handle([msg("p.route.requests", restricted)])]
    assert unknown.route == "" and unknown.reason == "no route: unknown workflow"
    route.handle_side([msg("p.workflows", make_workflow())]
                      + [RawMessage("p.decisions.routing", 0, i, o.key, o.value, T0) for i, o in enumerate(published)])
    again = RouteRequest("q2", T0 + 10_000, "support-bot", make_context(privacy_level=PrivacyLevel.RESTRICTED))
    [answer] = [decode(o, RouteDecision) for o in route.handle([msg("p.route.requests", again, 1)])]
    assert (answer.request_id, answer.route) == ("q2", "local-small")  # the only route allowed restricted data


def test_quiet_traffic_gets_final_outcomes_once_inputs_are_idle_for_the_timeout() -> None:
    wall = [T0]
    e = StageEnv(Settings(bootstrap_servers="unused:9092", topic_prefix="p.", idle_timeout_s=30.0), Metrics(),
                 now_ms=lambda: wall[0])
    WorkflowStage(e).handle([msg("p.workflows", make_workflow(feedback_window_s=60.0))])
    stage = CorrelateStage(e)
    [provisional] = stage.handle([msg("p.requests", make_request("r1", ts_ms=T0))])
    assert not decode(provisional, Outcome).is_final
    wall[0] += 20_000  # quiet, but not for the idle timeout yet: the clock holds
    assert stage.handle([]) == []
    wall[0] += 20_000  # 40 s quiet: no feedback input holds the clock; 40 s of event time is not the 60 s window
    assert stage.handle([]) == []
    wall[0] += 25_000  # 65 s quiet: the window has closed on the wall clock too
    [final] = [decode(o, Outcome) for o in stage.handle([]) if o.topic == "p.outcomes"]
    assert (final.request_id, final.is_final) == ("r1", True)
    assert stage.handle([]) == []  # once


def test_without_an_idle_timeout_a_quiet_partition_keeps_its_clock() -> None:
    wall = [T0]
    e = StageEnv(Settings(bootstrap_servers="unused:9092", topic_prefix="p.", idle_timeout_s=0.0), Metrics(),
                 now_ms=lambda: wall[0])
    WorkflowStage(e).handle([msg("p.workflows", make_workflow(feedback_window_s=60.0))])
    stage = CorrelateStage(e)
    stage.handle([msg("p.requests", make_request("r1", ts_ms=T0))])
    wall[0] += 3_600_000
    assert stage.handle([]) == []


def test_learn_stage_records_signed_model_versions_and_rolls_back_to_one() -> None:
    import json as stdjson

    from processors.correlation import OutcomeCorrelator
    from processors.lifecycle import MODEL_ROLLBACK, verify_model
    from schemas.records import Command, ModelVersion, RoutingPolicy, Status
    from schemas.signing import sign
    from streams.stages import LearnStage

    e = env()
    WorkflowStage(e).handle([msg("p.workflows", make_workflow())])
    stage = LearnStage(e)
    correlator = OutcomeCorrelator(e.registry)
    good = [correlator.on_request(make_request(f"r{i}", ts_ms=T0 + i * 100)) for i in range(100)]
    out = stage.handle([learn_msg(o, i) for i, o in enumerate(good)])
    [first] = [decode(o, ModelVersion) for o in out if o.topic == "p.models"]
    assert (first.workflow, first.version, first.reason) == ("support-bot", 1, "published")
    assert verify_model(first, e.settings.signing_key_bytes)
    # The route then fails for ten minutes: what the model learns moves away from version 1.
    bad = [correlator.on_request(make_request(f"b{i}", ts_ms=T0 + 20_000 + i * 1_000, status=Status.ERROR,
                                              error_type="upstream_5xx")) for i in range(600)]
    stage.handle([learn_msg(o, 100 + i) for i, o in enumerate(bad)])
    assert stdjson.loads(first.state) != stage.cores[0].export_workflow("support-bot")
    command = sign(Command("rb-1", T0 + 700_000, "support-bot", MODEL_ROLLBACK, "test", "{}", NOW_MS + 3_600_000, "cli:test",
                           "", params={"version": "1", "model": json_codec(ModelVersion).encode(first).decode()}),
                   e.settings.signing_key_bytes)
    out = stage.handle([learn_msg(command, 700)])
    [rolled] = [decode(o, ModelVersion) for o in out if o.topic == "p.models"]
    assert rolled.version > first.version and rolled.reason.startswith("rollback to v1")
    restored = stage.cores[0].export_workflow("support-bot")
    recorded = stdjson.loads(first.state)
    means = [[stat[2] for stat in route] for route in restored["workflow"]["loads"].values()]
    assert means == [[stat[2] for stat in route] for route in recorded["workflow"]["loads"].values()]  # (decayed to now)
    def route_means(state: dict) -> list:  # type: ignore[type-arg]  # quality and cost means per route
        return [{r: [stat[2] for stat in v[:2]] for r, v in seg["routes"].items()} for seg in state["segments"]]

    assert route_means(restored) == route_means(recorded)
    republished = [decode(o, RoutingPolicy) for o in out if o.topic == "p.decisions.routing"]
    assert republished  # the restored policy goes out at once
    # A forged record is refused (dead-lettered), never restored.
    forged = sign(Command("rb-2", T0 + 700_000, "support-bot", MODEL_ROLLBACK, "test", "{}", NOW_MS + 3_600_000, "x", "",
                          params={"version": "1", "model": json_codec(ModelVersion).encode(
                              replace(first, state=first.state.replace("support-bot", "support-bot "))).decode()}),
                  e.settings.signing_key_bytes)
    refused = stage.handle([learn_msg(forged, 701)])
    assert [o.topic for o in refused] == ["p.dlq"]
