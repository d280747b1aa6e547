"""The ``metrics`` stage: decisions and outputs read back from their topics into Prometheus metrics."""

from __future__ import annotations

from typing import Any

from schemas.records import Command, WorkflowDefinition
from schemas.signing import SignatureError, verify
from streams.edge import RawMessage
from streams.stages.base import Outgoing, Stage, StageEnv

#: What the domain metrics are made of: outputs and decisions, wherever (in whichever worker) they were made.
METRIC_TOPICS = ("outcomes", "feedback", "anomalies", "incidents", "commands.remediation", "commands.scaling",
                 "commands.jobs", "rollouts")
#: The compacted decisions, read whole by every worker (from the beginning, then followed): their gauges
#: are complete in each worker, also right after a restart.
DECISION_TOPICS = ("decisions.routing", "decisions.experiments")


class MetricsStage(Stage):
    """outcomes, feedback, policies, experiments, anomalies, incidents, commands, rollouts → domain metrics.

    Reads what other stages publish, so it works in any split of stages across
    workers; it sends nothing and owns no topic (bad input is dead-lettered by the
    stages that process it).
    """

    name = "metrics"
    inputs = METRIC_TOPICS
    side_inputs = DECISION_TOPICS
    is_gate_deduplicating = False

    def __init__(self, env: StageEnv) -> None:
        super().__init__(env)
        for name in self.inputs:
            if env.owners.get(name) == self.name:
                del env.owners[name]
        self._owned = set()
        self.domain = env.metrics.domain
        for definition in env.registry:
            self._on_workflow(definition)
        env.workflow_listeners.append(self._on_workflow)

    def _on_workflow(self, definition: WorkflowDefinition) -> None:
        self.domain.observe_workflow(definition)

    def on_side_record(self, logical: str, record: Any) -> None:
        self.domain.observe(self.env.topic(logical), logical, record)

    def on_record(self, logical: str, message: RawMessage, record: Any, out: list[Outgoing]) -> bool | None:
        if isinstance(record, Command):
            try:
                verify(record, self.env.settings.signing_key_bytes)
            except SignatureError:
                return False  # forged or foreign: no client obeys it, so no metric shows it
        self.domain.observe(message.topic, logical, record)
        return None
