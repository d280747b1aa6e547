"""Every loopwise topic, declared once: name, key, partitions, retention, compaction.

Logical names (``requests``) are turned into full names with the configured
prefix (``lw.requests``). ``infra.admin.apply_topics`` creates them
idempotently and reports any that exist with other settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

DAY_MS = 24 * 3600 * 1000


class Role(StrEnum):
    """Who writes a topic: the platform (input), loopwise (output), or loopwise about itself."""

    INPUT = "input"
    OUTPUT = "output"
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One declared topic. ``partitions=None`` takes the configured default."""

    name: str
    key: str
    record: str
    role: Role
    is_compacted: bool = False
    retention_ms: int = 7 * DAY_MS
    partitions: int | None = None

    def configs(self) -> dict[str, str]:
        """Topic configs, always explicit (the embedded broker reports only what was given)."""
        if self.is_compacted:
            return {"cleanup.policy": "compact", "retention.ms": "-1"}
        return {"cleanup.policy": "delete", "retention.ms": str(self.retention_ms)}


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("requests", "request_id", "RequestEvent", Role.INPUT),
    TopicSpec("feedback", "request_id", "FeedbackEvent", Role.INPUT),
    TopicSpec("metrics", "source", "MetricEvent", Role.INPUT, retention_ms=3 * DAY_MS),
    TopicSpec("logs", "service", "LogEvent", Role.INPUT, retention_ms=3 * DAY_MS),
    TopicSpec("workflows", "workflow", "WorkflowDefinition", Role.INPUT, is_compacted=True),
    TopicSpec("jobs", "job_id", "JobSubmission", Role.INPUT),
    TopicSpec("route.requests", "request_id", "RouteRequest", Role.INPUT, retention_ms=DAY_MS),
    TopicSpec("outcomes", "request_id", "Outcome", Role.OUTPUT),
    # One partition: throttled (small), and correlated into incidents in one place.
    TopicSpec("anomalies", "entity", "Anomaly", Role.OUTPUT, partitions=1),
    TopicSpec("incidents", "entity", "Incident", Role.OUTPUT, retention_ms=30 * DAY_MS),
    TopicSpec("decisions.routing", "workflow/segment", "RoutingPolicy", Role.OUTPUT, is_compacted=True),
    TopicSpec("route.decisions", "request_id", "RouteDecision", Role.OUTPUT, retention_ms=DAY_MS),
    TopicSpec("decisions.experiments", "experiment", "ExperimentDecision", Role.OUTPUT, is_compacted=True),
    TopicSpec("commands.remediation", "target", "Command", Role.OUTPUT, retention_ms=30 * DAY_MS),
    TopicSpec("commands.scaling", "target", "Command", Role.OUTPUT, retention_ms=30 * DAY_MS),
    TopicSpec("commands.jobs", "target", "Command", Role.OUTPUT, retention_ms=30 * DAY_MS),
    TopicSpec("rollouts", "workflow", "RolloutStep", Role.OUTPUT, retention_ms=30 * DAY_MS),
    # The newest step of each workflow's rollout is its split (version -> share): what routers follow.
    TopicSpec("rollouts.splits", "workflow", "RolloutStep", Role.OUTPUT, is_compacted=True),
    # Operators' signed pause/resume/promote/abort; one partition, like the repartition topic it is read with.
    TopicSpec("rollouts.control", "workflow", "Command", Role.INPUT, partitions=1, retention_ms=30 * DAY_MS),
    # Outcomes of workflows with a rollout plan, keyed by workflow: one partition, so one worker's
    # rollout stage sees every request of a workflow (and its control commands, co-assigned by range).
    TopicSpec("repartition.rollout", "workflow", "Outcome", Role.INTERNAL, partitions=1, retention_ms=DAY_MS),
    # Every version ever applied (lw.workflows keeps the latest only): history and rollback read it.
    TopicSpec("workflows.history", "workflow", "WorkflowDefinition", Role.INPUT, retention_ms=3650 * DAY_MS),
    TopicSpec("insights", "subject", "Insight", Role.OUTPUT, retention_ms=30 * DAY_MS),
    # History of every workflow's model (signed state per version): what `loopwise models` shows and rolls back to.
    TopicSpec("models", "workflow", "ModelVersion", Role.OUTPUT, retention_ms=30 * DAY_MS),
    TopicSpec("dlq", "source topic", "DeadLetter", Role.INTERNAL, retention_ms=30 * DAY_MS),
    # Latest load forecast per route/workflow/metric source (lw.forecasts), and the partial
    # per-minute sums the forecast stage repartitions by entity (internal, short-lived).
    TopicSpec("forecasts", "entity", "Forecast", Role.OUTPUT, is_compacted=True),
    TopicSpec("repartition.forecast", "entity", "LoadCount", Role.INTERNAL, retention_ms=DAY_MS),
    # The audit trail of people's decisions on risky commands: compacted, one decision per command id.
    TopicSpec("approvals", "command_id", "Approval", Role.INPUT, is_compacted=True),
)

BY_NAME: dict[str, TopicSpec] = {spec.name: spec for spec in TOPICS}


def spec_for(name: str, prefix: str = "") -> TopicSpec:
    """The spec of a logical or full topic name; ``KeyError`` with the known names."""
    logical = name[len(prefix):] if prefix and name.startswith(prefix) else name
    try:
        return BY_NAME[logical]
    except KeyError:
        known = ", ".join(prefix + spec.name for spec in TOPICS)
        raise KeyError(f"unknown topic {name!r}; known topics: {known}") from None
