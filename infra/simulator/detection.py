"""Detection in offline mode: the worker's detectors run on the records a policy observes.

``DetectingPolicy`` wraps any record-path policy: it routes as the wrapped one
does, and feeds every request and metric record through the same processors
the ``correlate`` and ``observe`` stages run (``DetectorBank`` with its drift
monitor, then ``AnomalyThrottle``). Each published anomaly of warning or
critical severity goes back to the environment as a ``Detection``, which the
scorecard turns into time to detect; ``counts`` keeps how many were published,
by severity, to measure false alarms on a healthy platform.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from infra.simulator.protocols import Action, Choice, Detection, Policy
from processors.anomaly import DetectorBank
from processors.correlation import OutcomeCorrelator
from processors.workflows import WorkflowRegistry
from processors.throttle import AnomalyThrottle
from schemas.records import (
    Anomaly, FeedbackEvent, MetricEvent, RequestEvent, RouteRequest, Severity, SignalKind, WorkflowDefinition,
)


class DetectingPolicy:
    """Routes like ``inner``; detects like a loopwise worker (see the module docstring)."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.name = inner.name
        self.impl = f"{getattr(inner, 'impl', inner.name)} + detectors"
        self.requests = DetectorBank.for_requests()
        self.metrics = DetectorBank.for_metrics()
        self.throttle = AnomalyThrottle()
        # The correlate stage's outcomes, for the quality detectors (final outcomes carry quality).
        self.registry = WorkflowRegistry()
        self.correlator = OutcomeCorrelator(self.registry)
        self.counts: Counter[tuple[str, str]] = Counter()  # (kind, severity) of published anomalies
        self.published: list[Anomaly] = []

    def choose(self, request: RouteRequest, workflow: WorkflowDefinition, now_ms: int) -> Choice:
        return self.inner.choose(request, workflow, now_ms)

    def observe(self, records: Sequence[object]) -> Sequence[Action]:
        actions = list(self.inner.observe(records))
        for record in records:
            if isinstance(record, RequestEvent):
                self.correlator.on_request(record)
                found = self.requests.observe_request(record)
            elif isinstance(record, MetricEvent):
                one = self.metrics.observe_metric(record)
                found = ([] if one is None else [one]) + self.metrics.take_drift()
            elif isinstance(record, FeedbackEvent):
                self.correlator.on_feedback(record)
                continue
            elif isinstance(record, WorkflowDefinition):
                self.registry.update(record)
                continue
            else:
                continue
            self._publish(found, actions)
        for outcome in self.correlator.advance():
            self._publish(self.requests.observe_outcome(outcome), actions)
        return actions

    def _publish(self, found: list[Anomaly], actions: list[Action]) -> None:
        for anomaly in self.throttle.filter(found):
            self.counts[(str(anomaly.kind), str(anomaly.severity))] += 1
            self.published.append(anomaly)
            if anomaly.kind is SignalKind.ANOMALY and anomaly.severity is not Severity.INFO:
                actions.append(Detection(anomaly.entity, anomaly.ts_ms))
