"""The core stages: correlate, workflows, observe, incidents, learn, route, remediate."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable

import orjson

from processors.anomaly import DetectorBank
from processors.correlation import FeedbackVerdict, OutcomeCorrelator
from processors.experiments import ExperimentEngine, unit_of
from processors.incidents import IncidentCorrelator
from processors.remediation import Remediator, RemediatorConfig, as_insight
from processors.scores import check_score
from processors.throttle import AnomalyThrottle
from schemas.records import (
    Anomaly, Command, FeedbackEvent, LogEvent, MetricEvent, Outcome, RequestEvent, RouteRequest, WorkflowDefinition,
)
from schemas.signing import SignatureError, verify
from streams.edge import RawMessage
from streams.stages.base import Outgoing, Stage, StageEnv

_WATERMARK_KEY = b"~watermark"

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
        for partition in self._touched:
            for outcome in self.correlators[partition].advance():
                out.append(self.env.encode("outcomes", outcome.request_id, outcome))
                self.env.anomalies(self.detectors.observe_outcome(outcome), self.throttle, out)
        return out

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
    """metrics → anomalies per source × metric; jobs: validated and counted (the scheduler plugs in here)."""

    name = "observe"
    inputs = ("metrics", "jobs")

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
    and workflows needs. Logs are read here for their error bursts.
    """

    name = "incidents"
    inputs = ("anomalies", "logs")

    def __init__(self, env: StageEnv) -> None:
        super().__init__(env)
        self.correlator = IncidentCorrelator()
        for definition in env.registry:
            self.correlator.observe_workflow(definition)
        env.workflow_listeners.append(self.correlator.observe_workflow)
        self._watermark_ms = 0

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
        return [self.env.encode("incidents", incident.root_cause, incident)
                for incident in self.correlator.advance(self._watermark_ms)]


class LearnStage(Stage):
    """outcomes → routing policies (``Router``) and experiment decisions; anomalies and signed
    circuit commands → the router's view of route health.

    Experiments learn from final outcomes only (``ExperimentEngine.observe``); the router
    learns latency, cost and errors from provisional ones and quality from final ones,
    each request once. Policies are published only when they change materially.
    """

    name = "learn"
    inputs = ("outcomes", "anomalies", "commands.remediation")

    def __init__(self, env: StageEnv) -> None:
        super().__init__(env)
        self.router, self.experiments = env.router, env.experiments
        for definition in env.registry:
            self._on_workflow(definition)
        env.workflow_listeners.append(self._on_workflow)
        self._watermark_ms = 0

    def _on_workflow(self, definition: WorkflowDefinition) -> None:
        self.router.update_workflow(definition)
        engine = ExperimentEngine.for_workflow(definition)
        if engine is not None and engine.spec.name not in self.experiments:
            self.experiments[engine.spec.name] = engine

    def on_record(self, logical: str, message: RawMessage, record: Any, out: list[Outgoing]) -> bool | None:
        if isinstance(record, Anomaly):
            self.router.on_anomaly(record)
            return True
        if isinstance(record, Command):
            try:
                verify(record, self.env.settings.signing_key_bytes)
            except SignatureError as exc:  # not ours: never obeyed (its owner stage does not exist: say why here)
                return self.reject(message, f"signature_{exc.reason}", str(exc), out)
            if not record.is_dry_run:
                self.router.on_command(record)
            return True
        assert isinstance(record, Outcome)
        self._watermark_ms = max(self._watermark_ms, record.ts_ms)
        self.router.learn(record)
        for engine in self.experiments.values():
            if engine.workflow == record.workflow:
                engine.observe(record)
        return True

    def after_batch(self) -> list[Outgoing]:
        if not self._watermark_ms:
            return []
        out = [self.env.encode("decisions.routing", f"{p.workflow}/{p.segment}", p)
               for p in self.router.changed_policies(self._watermark_ms)]
        for name, engine in self.experiments.items():
            decision = engine.decide(self._watermark_ms)
            if decision is not None:
                out.append(self.env.encode("decisions.experiments", name, decision))
        return out


class RouteStage(Stage):
    """route.requests → route.decisions: one route (and prompt variant) per request, from the learned policy.

    Runs on its own consumer so answers never wait behind learning; keyed by
    request_id, so a caller can wait for its answer.
    """

    name = "route"
    inputs = ("route.requests",)

    def on_record(self, logical: str, message: RawMessage, record: Any, out: list[Outgoing]) -> None:
        assert isinstance(record, RouteRequest)
        decision = self.env.router.decide(record, record.ts_ms)
        variant = self._variant(record)
        if variant is not None:
            decision = replace(decision, variant=variant)
        out.append(self.env.encode("route.decisions", record.request_id, decision))

    def _variant(self, request: RouteRequest) -> str | None:
        for engine in self.env.experiments.values():
            if engine.workflow == request.workflow:
                unit = unit_of(request.context, request.request_id, engine.spec.sticky_by)
                return engine.assign(unit, request.ts_ms)
        return None


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
            issuer=settings.app_id, is_dry_run=settings.is_remediation_dry_run))
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
