"""The core stages: correlate, workflows, observe, incidents, learn, route, remediate."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Iterable

import orjson

from processors.anomaly import DetectorBank
from processors.commands import CommandGuard, GuardVerdict
from processors.correlation import FeedbackVerdict, OutcomeCorrelator
from processors.learning import LearningCore
from processors.lifecycle import MODEL_ROLLBACK, model_record, verify_model
from processors.rollout import VersionBook
from processors.routing.book import PolicyBook
from processors.incidents import IncidentCorrelator
from processors.remediation import Remediator, RemediatorConfig, RiskPolicy, as_insight
from processors.scores import check_score
from processors.throttle import AnomalyThrottle
from schemas.records import (
    Anomaly, Command, ExperimentDecision, FeedbackEvent, LogEvent, MetricEvent, Outcome, RequestEvent, RouteRequest,
    RolloutStep, RoutingPolicy, WorkflowDefinition,
)
from schemas.serde import SchemaError
from streams.edge import RawMessage
from streams.stages.base import Outgoing, RekeyStage, Stage, StageEnv, chunked, unchunked

_WATERMARK_KEY = b"~watermark"
#: The correlator's name for each input of the correlate stage.
_SOURCES = (("request", "requests"), ("feedback", "feedback"))

class CorrelateStage(Stage):
    """requests + feedback → outcomes (provisional at once, final when the window closes);
    requests → anomalies per route and workflow (latency, error rate, cost); final outcomes → quality anomalies.

    Correlation state is per partition (requests and feedback share the key, so a
    request and its feedback always meet in one partition). The detectors see all
    of this worker's partitions: a route's health is a statistic of its traffic,
    and any share of that traffic estimates it.
    """

    name = "correlate"
    inputs = ("requests", "feedback")
    has_state = True
    wants_idle_ticks = True
    is_gate_deduplicating = False  # the correlator's durable state recognises repeats

    def __init__(self, env: StageEnv) -> None:
        super().__init__(env)
        self.correlators: dict[int, OutcomeCorrelator] = {}
        self._touched: set[int] = set()
        self.detectors = DetectorBank.for_requests()
        self.throttle = AnomalyThrottle()

    def _correlator(self, partition: int) -> OutcomeCorrelator:
        found = self.correlators.get(partition)
        if found is None:
            found = self.correlators[partition] = OutcomeCorrelator(self.env.registry)
        return found

    def on_record(self, logical: str, message: RawMessage, record: Any, out: list[Outgoing]) -> bool | None:
        correlator = self._correlator(message.partition)
        self._touched.add(message.partition)
        if correlator.is_too_late(record.ts_ms, record.workflow):
            return self.reject(message, "too_late", f"ts_ms={record.ts_ms} is older than the feedback window "
                               f"behind this partition's watermark ({correlator.watermark_ms})", out)
        if isinstance(record, RequestEvent):
            outcome = correlator.on_request(record)
            if outcome is None:
                return self.reject(message, "duplicate", f"duplicate request_id={record.request_id!r}: already processed", out)
            out.append(self.env.encode("outcomes", outcome.request_id, outcome))
            self.env.anomalies(self.detectors.observe_request(record), self.throttle, out)
            return True
        assert isinstance(record, FeedbackEvent)
        refused = check_score(record, self.env.registry.get(record.workflow) if record.workflow else None)
        if refused is not None:
            return self.reject(message, *refused, out)
        verdict = correlator.on_feedback(record)
        if verdict is FeedbackVerdict.LATE:
            return self.reject(message, "too_late",
                               f"feedback for request {record.request_id!r} arrived after its window closed", out)
        if verdict is FeedbackVerdict.DUPLICATE:
            return self.reject(message, "duplicate", f"duplicate feedback_id={record.feedback_id!r}", out)
        return True

    def after_batch(self) -> list[Outgoing]:
        out: list[Outgoing] = []
        if self.idle_timeout_ms:
            self._follow_idle_inputs()
        for partition in self._touched:
            for outcome in self.correlators[partition].advance():
                out.append(self.env.encode("outcomes", outcome.request_id, outcome))
                self.env.anomalies(self.detectors.observe_outcome(outcome), self.throttle, out)
        return out

    def _follow_idle_inputs(self) -> None:
        """Inputs of a partition idle for ``LOOPWISE_IDLE_TIMEOUT_S`` (wall clock) stop holding its clock;
        when both are, the clock moves on with the wall clock, so quiet traffic still gets final outcomes."""
        now_ms = self.env.now_ms()
        for partition, correlator in self.correlators.items():
            quiet = {source: self.idle_ms(logical, partition, now_ms) for source, logical in _SOURCES}
            idle = frozenset(s for s, ms in quiet.items() if ms >= self.idle_timeout_ms)
            if idle and correlator.follow_idle(idle, min(quiet.values()) if len(idle) == len(quiet) else 0):
                self._touched.add(partition)

    def state_changes(self) -> list[tuple[int, bytes, bytes | None]]:
        changes: list[tuple[int, bytes, bytes | None]] = []
        for partition in sorted(self._touched):
            correlator = self.correlators[partition]
            for request_id, encoded in correlator.drain_encoded():
                changes.append((partition, b"r:" + request_id.encode(), encoded))
            changes.append((partition, _WATERMARK_KEY, orjson.dumps(correlator.clock())))
        self._touched.clear()
        return changes

    def restore(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        correlator = self.correlators[partition] = OutcomeCorrelator(self.env.registry)
        for key, value in records:
            if key == _WATERMARK_KEY:
                if value is not None:
                    correlator.load_clock(orjson.loads(value))
            elif key.startswith(b"r:"):
                correlator.load(key[2:].decode(), None if value is None else orjson.loads(value))
        correlator.drain_changes()  # what was just loaded is already in the changelog

    def forget(self, partition: int) -> None:
        self.correlators.pop(partition, None)
        self._touched.discard(partition)


class WorkflowStage(Stage):
    """workflows → the shared registry (objectives, windows, segments, routes)."""

    name = "workflows"
    inputs = ("workflows",)
    is_global = True

    def on_record(self, logical: str, message: RawMessage, record: Any, out: list[Outgoing]) -> None:
        assert isinstance(record, WorkflowDefinition)
        if self.env.registry.update(record):
            for listener in self.env.workflow_listeners:
                listener(record)


class ObserveStage(Stage):
    """metrics → anomalies per source × metric (jobs are the ``schedule`` stage's)."""

    name = "observe"
    inputs = ("metrics",)

    def __init__(self, env: StageEnv) -> None:
        super().__init__(env)
        self.detectors = DetectorBank.for_metrics()
        self.throttle = AnomalyThrottle()

    def on_record(self, logical: str, message: RawMessage, record: Any, out: list[Outgoing]) -> None:
        if isinstance(record, MetricEvent):
            found = self.detectors.observe_metric(record)
            if found is not None:
                self.env.anomalies([found], self.throttle, out)


class IncidentStage(Stage):
    """anomalies + error logs → incidents (grouped, deduplicated, inhibited, resolved), in event time.

    ``lw.anomalies`` has one partition (it is throttled, so small): one worker sees
    every signal of the platform, which is what correlating them across routes
    and workflows needs. Logs are read here for their error bursts. The correlator
    is the state of that partition (0): its snapshot goes to the changelog with every
    batch that emits an incident and at least every ``SNAPSHOT_EVERY_MS`` of event
    time, and a restart restores it and replays what came after, so open incidents
    stay open (and are not paged again) across restarts.
    """

    name = "incidents"
    inputs = ("anomalies", "logs")
    has_state = True
    is_snapshotting = True
    SNAPSHOT_EVERY_MS = 60_000

    def __init__(self, env: StageEnv) -> None:
        super().__init__(env)
        self.correlator = self._fresh()
        env.workflow_listeners.append(self.correlator.observe_workflow)
        self._watermark_ms = 0
        self._snapshot_ms = 0
        self._is_due = False

    def _fresh(self) -> IncidentCorrelator:
        correlator = IncidentCorrelator()
        for definition in self.env.registry:
            correlator.observe_workflow(definition)
        return correlator

    def on_record(self, logical: str, message: RawMessage, record: Any, out: list[Outgoing]) -> None:
        if isinstance(record, Anomaly):
            self.correlator.observe_anomaly(record)
        else:
            assert isinstance(record, LogEvent)
            self.correlator.observe_log(record)
        self._watermark_ms = max(self._watermark_ms, record.ts_ms)

    def after_batch(self) -> list[Outgoing]:
        if not self._watermark_ms:
            return []
        out = [self.env.encode("incidents", incident.root_cause, incident)
               for incident in self.correlator.advance(self._watermark_ms)]
        if out or self._watermark_ms - self._snapshot_ms >= self.SNAPSHOT_EVERY_MS:
            self._is_due = True
        return out

    def state_changes(self) -> list[tuple[int, bytes, bytes | None]]:
        if not self._is_due:
            return []
        self._is_due, self._snapshot_ms = False, self._watermark_ms
        state = {"watermark_ms": self._watermark_ms, "correlator": self.correlator.snapshot()}
        return [(0, b"incidents", orjson.dumps(state))]

    def restore(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        latest = None
        for key, value in records:
            if key == b"incidents":
                latest = value
        if partition != 0 or latest is None:
            return
        state = orjson.loads(latest)
        self.correlator.restore(state["correlator"])
        self._watermark_ms = self._snapshot_ms = int(state["watermark_ms"])

    def forget(self, partition: int) -> None:
        if partition == 0:  # the anomalies partition moved: so did the correlator
            self.env.workflow_listeners.remove(self.correlator.observe_workflow)
            self.correlator = self._fresh()
            self.env.workflow_listeners.append(self.correlator.observe_workflow)
            self._watermark_ms = self._snapshot_ms = 0


class LearnRekeyStage(RekeyStage):
    """outcomes, anomalies, remediation commands → the ``learn`` stage's repartition topics, keyed by workflow.

    An outcome goes to its workflow; an anomaly or a command about a route goes to every
    workflow that routes to it (an anomaly of a workflow, to that workflow).
    """

    name = "learn.rekey"
    target = "learn"
    inputs = ("outcomes", "anomalies", "commands.remediation")

    def keys(self, logical: str, record: Any) -> list[str]:
        if isinstance(record, Outcome):
            return [record.workflow]
        entity = record.entity if isinstance(record, Anomaly) else record.target
        return [d.workflow for d in self.env.registry
                if d.workflow == entity or any(r.name == entity for r in d.routes)]


class LearnStage(Stage):
    """outcomes → routing policies and experiment decisions; anomalies and signed circuit commands →
    the router's view of route health. One ``LearningCore`` per partition of the repartition topics,
    so each worker owns a share of the workflows and a rebalance moves a workflow with its state.

    The core's snapshot goes to the changelog every ``SNAPSHOT_EVERY_MS`` of event time (in
    chunks under Kafka's message size); on assignment the engine restores it and replays the
    input that came after it, so a restart resumes the learned state exactly and never
    publishes a decision from less than it had (a replayed decision is one already published).
    """

    name = "learn"
    inputs = ("outcomes", "anomalies", "commands.remediation")
    is_repartitioned = True
    has_state = True
    is_snapshotting = True
    companions = ("learn.rekey",)
    SNAPSHOT_EVERY_MS = 10_000

    def __init__(self, env: StageEnv) -> None:
        super().__init__(env)
        self.cores: dict[int, LearningCore] = {}
        self._due: set[int] = set()
        self._snapshot_ms: dict[int, int] = {}
        #: The ids of the commands obeyed, per partition (durable beside the core's snapshot).
        self._guards: dict[int, CommandGuard] = {}
        env.workflow_listeners.append(self._on_workflow)

    def _core(self, partition: int) -> LearningCore:
        found = self.cores.get(partition)
        if found is None:
            found = self.cores[partition] = LearningCore(self.env.registry)
        return found

    def _on_workflow(self, definition: WorkflowDefinition) -> None:
        for core in self.cores.values():
            if core.knows(definition.workflow):
                core.take_workflow(definition)

    def on_record(self, logical: str, message: RawMessage, record: Any, out: list[Outgoing]) -> bool | None:
        core = self._core(message.partition)
        if isinstance(record, Outcome):
            core.observe_outcome(record)
        elif isinstance(record, Anomaly):
            core.observe_anomaly(record)
        elif isinstance(record, Command):
            # Signed, unused, and unexpired by the wall clock (event time alone cannot tell: a replayed
            # command carries its old stamps, and a quiet stage's clock may not have moved past them).
            guard = self._guards.get(message.partition) or self._guards.setdefault(
                message.partition, CommandGuard(self.env.settings.signing_key_bytes))
            verdict = guard.check(record, max(core.watermark_ms, self.env.now_ms()))
            if verdict is not GuardVerdict.ACCEPTED:  # never obeyed
                kind = "signature" if verdict in (GuardVerdict.FORGED, GuardVerdict.UNSIGNED) else "command"
                return self.reject(message, f"{kind}_{verdict}", f"command {record.command_id!r}: {verdict}", out)
            if record.action == MODEL_ROLLBACK:
                return self._roll_back(core, message, record, out)
            core.observe_command(record)
            self._due.add(message.partition)  # the guard's memory is committed with this batch
        return True

    def after_batch(self) -> list[Outgoing]:
        out: list[Outgoing] = []
        for partition, core in self.cores.items():
            if not core.fresh:
                continue
            policies, decided = core.decisions()
            out += [self.env.encode("decisions.routing", f"{p.workflow}/{p.segment}", p) for p in policies]
            out += [self.env.encode("decisions.experiments", d.experiment, d) for d in decided]
            for workflow, version in core.models_due({p.workflow for p in policies}):
                out.append(self._model(core, workflow, version, "published"))
            for anomaly in core.found:  # the model's own error drifted
                out.append(self.env.encode("anomalies", anomaly.entity, anomaly))
            core.found.clear()
            for workflow in {p.workflow for p in policies}:
                accuracy = core.accuracy.accuracy(workflow)
                if accuracy["n"]:
                    self.env.metrics.set_model_accuracy(workflow, accuracy["mae"], accuracy["bias"])
            if core.watermark_ms - self._snapshot_ms.get(partition, 0) >= self.SNAPSHOT_EVERY_MS:
                self._due.add(partition)
        return out

    def _model(self, core: LearningCore, workflow: str, version: int, reason: str) -> Outgoing:
        record = model_record(self.env.settings.signing_key_bytes, workflow, version, core.watermark_ms,
                              core.router.model_version, reason, core.accuracy.accuracy(workflow),
                              core.export_workflow(workflow))
        return self.env.encode("models", workflow, record)

    def _roll_back(self, core: LearningCore, message: RawMessage, command: Command, out: list[Outgoing]) -> bool:
        """Obey a signed ``model_rollback``: the workflow's state as recorded at that version, republished."""
        workflow, target = command.target, command.params.get("version", "?")
        try:
            record = self.env.codec("models").decode(command.params["model"].encode())
        except (KeyError, SchemaError) as exc:
            return self.reject(message, "bad_command", f"model_rollback {command.command_id!r}: {exc}", out)
        if record.workflow != workflow or not verify_model(record, self.env.settings.signing_key_bytes):
            return self.reject(message, "bad_command",
                               f"model_rollback {command.command_id!r}: the model record is not ours or not this workflow's",
                               out)
        if not core.knows(workflow):
            definition = self.env.registry.get(workflow)
            if definition is None:
                return self.reject(message, "bad_command", f"model_rollback: unknown workflow {workflow!r}", out)
            core.take_workflow(definition)
        version = core.import_workflow(workflow, json.loads(record.state))
        out.append(self._model(core, workflow, version, f"rollback to v{target} by {command.issuer}"))
        self._due.add(message.partition)
        return True

    def state_changes(self) -> list[tuple[int, bytes, bytes | None]]:
        changes: list[tuple[int, bytes, bytes | None]] = []
        for p in sorted(self._due):
            if p in self.cores:
                # stdlib json: the generators' states hold integers wider than 64 bits, which orjson refuses
                blob = json.dumps(self.cores[p].snapshot(), separators=(",", ":")).encode()
                changes += [(p, key, value) for key, value in chunked(b"core", blob)]
        changes += [(p, b"commands", orjson.dumps(self._guards[p].snapshot()))
                    for p in sorted(self._due) if p in self._guards and p in self.cores]
        for p in self._due:
            if p in self.cores:
                self._snapshot_ms[p] = self.cores[p].watermark_ms
        self._due.clear()
        return changes

    def restore(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        records = list(records)
        latest, commands = unchunked(b"core", records), None
        for key, value in records:
            if key == b"commands":
                commands = value
        self._guards[partition] = CommandGuard.restore(self.env.settings.signing_key_bytes,
                                                       None if commands is None else orjson.loads(commands))
        if latest is None:
            self.cores.pop(partition, None)
            return
        core = self.cores[partition] = LearningCore.restore(self.env.registry, json.loads(latest))
        self._snapshot_ms[partition] = core.watermark_ms
        for workflow in core.workflows:  # definitions newer than the snapshot
            definition = self.env.registry.get(workflow)
            if definition is not None:
                core.take_workflow(definition)
        core.fresh = 0

    def forget(self, partition: int) -> None:
        self.cores.pop(partition, None)
        self._guards.pop(partition, None)
        self._due.discard(partition)


class RouteStage(Stage):
    """route.requests → route.decisions: one route (and prompt variant) per request, from the published policy.

    Answers from what loopwise published (``lw.decisions.routing``, ``lw.decisions.experiments``,
    ``lw.workflows``), read whole by every route worker, caught up before its first answer: it
    needs no ``learn`` stage beside it and gives the same answer as ``RoutingClient``. Runs on its
    own consumer so answers never wait behind learning; keyed by request_id, so a caller can wait
    for its answer.
    """

    name = "route"
    inputs = ("route.requests",)
    side_inputs = ("workflows", "decisions.routing", "decisions.experiments", "rollouts.splits")

    def __init__(self, env: StageEnv) -> None:
        super().__init__(env)
        self.book = PolicyBook()
        self.versions = VersionBook()  # the workflow version of each request, by the published rollout split

    def on_side_record(self, logical: str, record: Any) -> None:
        if isinstance(record, WorkflowDefinition):
            self.book.update_workflow(record)
            self.versions.update_workflow(record)
        elif isinstance(record, RolloutStep):
            self.versions.update(record)
        elif isinstance(record, RoutingPolicy):
            self.book.update(record)
        elif isinstance(record, ExperimentDecision):
            self.book.update_experiment(record)

    def on_record(self, logical: str, message: RawMessage, record: Any, out: list[Outgoing]) -> None:
        assert isinstance(record, RouteRequest)
        decision = self.book.decide(record)
        version = self.versions.version_for(record.workflow, record.context, record.request_id)
        flags = self.versions.flags_for(record.workflow, record.context, record.request_id)
        if version is not None or flags:
            decision = replace(decision, workflow_version=version, flags=flags)
        out.append(self.env.encode("route.decisions", record.request_id, decision))


class RemediateStage(Stage):
    """requests, metrics, anomalies, incidents, final outcomes → signed, idempotent remediation commands.

    The remediator must see every route of a workflow: run this stage in one worker
    (``LOOPWISE_STAGES``) when there are several. Its state (breakers, episodes, the
    ids of commands already sent) goes to the changelog in the transaction of every
    batch that emits a command, and at least once a minute of event time, so a
    restart sends no command twice.
    """

    name = "remediate"
    inputs = ("requests", "metrics", "anomalies", "incidents", "outcomes")
    has_state = True
    _SNAPSHOT_EVERY_MS = 60_000

    def __init__(self, env: StageEnv) -> None:
        super().__init__(env)
        settings = env.settings
        self.remediator = Remediator(settings.signing_key_bytes, RemediatorConfig(
            issuer=settings.app_id, is_dry_run=settings.is_remediation_dry_run,
            risk=RiskPolicy.parse(settings.risky_actions), approval_window_ms=int(settings.approval_window_s * 1000)))
        for definition in env.registry:
            self.remediator.observe_workflow(definition)
        env.workflow_listeners.append(self.remediator.observe_workflow)
        self._watermark_ms = 0
        self._snapshot_due = False
        self._last_snapshot_ms = 0
        self._published: dict[str, None] = {}

    def on_record(self, logical: str, message: RawMessage, record: Any, out: list[Outgoing]) -> None:
        self.remediator.observe(record)
        self._watermark_ms = max(self._watermark_ms, record.ts_ms)

    def after_batch(self) -> list[Outgoing]:
        if not self._watermark_ms:
            return []
        commands = self.remediator.advance(self._watermark_ms)
        out = [self.env.encode("commands.remediation", c.target, c) for c in commands]
        for entry in self.remediator.audit_log()[-max(len(commands), 1) * 4:]:
            insight = as_insight(entry)
            if insight.insight_id not in self._published:
                self._published[insight.insight_id] = None
                out.append(self.env.encode("insights", insight.subject, insight))
        while len(self._published) > 10_000:
            del self._published[next(iter(self._published))]
        if commands or self._watermark_ms - self._last_snapshot_ms >= self._SNAPSHOT_EVERY_MS:
            self._snapshot_due = True
        return out

    def state_changes(self) -> list[tuple[int, bytes, bytes | None]]:
        if not self._snapshot_due:
            return []
        self._snapshot_due, self._last_snapshot_ms = False, self._watermark_ms
        return [(0, b"remediator", orjson.dumps(self.remediator.snapshot()))]

    def restore(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        latest = None
        for key, value in records:
            if key == b"remediator" and value is not None:
                latest = value
        if latest is not None:
            self.remediator.restore(orjson.loads(latest))
