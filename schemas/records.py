"""Typed records: one frozen dataclass per Avro schema in ``schemas/avro``.

The ``.avsc`` files are the source of truth for the wire; these classes are
what the rest of loopwise handles. ``tests/contract`` proves the two agree
field by field (names, types, optionality, defaults).

Conventions: times are event times in epoch milliseconds (``ts_ms``),
money is ``*_usd``, durations carry their unit (``latency_ms``, ``ttl_s``).
Optional fields default to ``None`` so that adding one keeps old payloads valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Mapping


class Status(StrEnum):
    """How a request ended."""

    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    REJECTED = "rejected"


class PrivacyLevel(StrEnum):
    """How sensitive a request's data is; a route serves up to its ``max_privacy``."""

    PUBLIC = "public"
    INTERNAL = "internal"
    RESTRICTED = "restricted"


PRIVACY_RANK: Mapping[PrivacyLevel, int] = {
    PrivacyLevel.PUBLIC: 0,
    PrivacyLevel.INTERNAL: 1,
    PrivacyLevel.RESTRICTED: 2,
}


class FeedbackKind(StrEnum):
    """Explicit (thumbs, rating, nps), implicit (edit, delete, dwell, task_completed) and named scores (score)."""

    THUMBS = "thumbs"
    RATING = "rating"
    EDIT = "edit"
    DELETE = "delete"
    DWELL = "dwell"
    TASK_COMPLETED = "task_completed"
    NPS = "nps"
    #: A named score (``FeedbackEvent.name``) the workflow declares in ``WorkflowDefinition.scores``.
    SCORE = "score"


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class SignalKind(StrEnum):
    """What an ``Anomaly`` record reports: a point anomaly or a drift of a series."""

    ANOMALY = "anomaly"
    DRIFT = "drift"


class IncidentStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class ExperimentStatus(StrEnum):
    RUNNING = "running"
    WINNER = "winner"
    STOPPED = "stopped"


class ArmStatus(StrEnum):
    ACTIVE = "active"
    WINNER = "winner"
    RETIRED = "retired"


class RolloutVerdict(StrEnum):
    CONTINUE = "continue"
    HOLD = "hold"
    PROMOTE = "promote"
    ROLLBACK = "rollback"


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who asked and under which constraints; the routing segment is drawn from it."""

    tenant: str
    task: str
    privacy_level: PrivacyLevel = PrivacyLevel.PUBLIC
    priority: int = 1
    user_id: str | None = None
    session_id: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RequestEvent:
    """One served (or failed) LLM request, published by the gateway (``lw.requests``)."""

    request_id: str
    ts_ms: int
    workflow: str
    workflow_version: str
    route: str
    context: RequestContext
    latency_ms: float
    cost_usd: float
    tokens_in: int
    tokens_out: int
    status: Status
    variant: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    prompt_fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class FeedbackEvent:
    """User feedback on one request (``lw.feedback``); may arrive late, early or twice."""

    feedback_id: str
    request_id: str
    ts_ms: int
    kind: FeedbackKind
    value: float
    workflow: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class MetricEvent:
    """One sample of a service metric (``lw.metrics``)."""

    source: str
    ts_ms: int
    name: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One log line of a platform service (``lw.logs``)."""

    service: str
    ts_ms: int
    level: LogLevel
    message: str
    route: str | None = None
    workflow: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """A model/provider a workflow may send requests to."""

    name: str
    provider: str
    is_local: bool
    max_privacy: PrivacyLevel
    cost_per_1k_in_usd: float
    cost_per_1k_out_usd: float
    capabilities: tuple[str, ...] = ()
    capacity_rps: float | None = None
    prior_quality: float = 0.7
    prior_latency_ms: float = 1000.0


@dataclass(frozen=True, slots=True)
class VariantSpec:
    """A prompt variant under experiment."""

    name: str
    is_control: bool = False
    description: str = ""


@dataclass(frozen=True, slots=True)
class Objective:
    """Weights of the reward's parts; see ``processors.reward`` for the formula."""

    quality_weight: float = 1.0
    latency_weight: float = 0.25
    cost_weight: float = 0.25
    error_weight: float = 1.0
    latency_ref_ms: float = 2000.0
    cost_ref_usd: float = 0.01


@dataclass(frozen=True, slots=True)
class ExperimentSpec:
    """How a workflow's prompt variants are tested against each other."""

    name: str
    primary_metric: str = "reward"
    min_share: float = 0.05
    sticky_by: str | None = None
    guardrails: tuple[str, ...] = ()
    max_duration_s: float | None = None


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    """Canary steps of a new workflow version."""

    steps: tuple[float, ...] = (0.05, 0.25, 0.5, 1.0)
    step_duration_s: float = 600.0
    max_regression: float = 0.05
    sticky_by: str | None = None


@dataclass(frozen=True, slots=True)
class FlagRule:
    """Targeting: requests whose context attribute is one of values get variant."""

    attribute: str
    values: tuple[str, ...]
    variant: str


@dataclass(frozen=True, slots=True)
class FlagShare:
    """One variant's share of a flag's percentage rollout."""

    variant: str
    share: float


@dataclass(frozen=True, slots=True)
class FlagSpec:
    """A feature flag of the workflow: variants, targeting rules, a percentage rollout, stickiness."""

    name: str
    variants: tuple[str, ...] = ("off", "on")
    default: str = "off"
    rules: tuple[FlagRule, ...] = ()
    rollout: tuple[FlagShare, ...] = ()
    sticky_by: str | None = None


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One remediation action a workflow allows, in escalation order."""

    action: str
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScoreSpec:
    """A named score feedback may carry (kind score), its range and how it enters the reward."""

    name: str
    low: float = 0.0
    high: float = 1.0
    weight: float = 1.0
    is_higher_better: bool = True


@dataclass(frozen=True, slots=True)
class WorkflowDefinition:
    """A versioned workflow definition (``lw.workflows``, compacted by workflow)."""

    workflow: str
    version: str
    ts_ms: int
    routes: tuple[RouteSpec, ...]
    variants: tuple[VariantSpec, ...] = ()
    objective: Objective = field(default_factory=Objective)
    context_keys: tuple[str, ...] = ("task", "privacy_level")
    budget_usd_per_hour: float | None = None
    fallback_route: str | None = None
    previous_version: str | None = None
    experiment: ExperimentSpec | None = None
    rollout: RolloutPlan | None = None
    remediation: tuple[ActionSpec, ...] = ()
    feedback_window_s: float = 3600.0
    scores: tuple[ScoreSpec, ...] = ()
    flags: tuple[FlagSpec, ...] = ()
    budget_mode: str = "soft"


@dataclass(frozen=True, slots=True)
class JobSubmission:
    """A batch job waiting to be scheduled (``lw.jobs``)."""

    job_id: str
    ts_ms: int
    workflow: str
    priority: int
    estimated_cost_usd: float
    estimated_duration_s: float
    deadline_ts_ms: int | None = None
    depends_on: tuple[str, ...] = ()
    status: str | None = None
    attempt: int | None = None
    route: str | None = None
    cron: str | None = None
    timezone: str | None = None


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """An application asking which route to use for one request (``lw.route.requests``)."""

    request_id: str
    ts_ms: int
    workflow: str
    context: RequestContext


# -------------------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class Outcome:
    """A request joined with its feedback, and its reward (``lw.outcomes``).

    A provisional outcome is emitted when the request is seen; the final one
    when the workflow's feedback window closes (``is_final``).
    """

    request_id: str
    ts_ms: int
    request_ts_ms: int
    workflow: str
    workflow_version: str
    route: str
    segment: str
    status: Status
    latency_ms: float
    cost_usd: float
    reward: float
    reward_quality: float
    reward_latency: float
    reward_cost: float
    reward_error: float
    is_final: bool
    feedback_count: int = 0
    quality: float | None = None
    variant: str | None = None
    tenant: str | None = None
    task: str | None = None
    thumbs: float | None = None
    rating: float | None = None
    nps: float | None = None
    task_completed: float | None = None
    edited: float | None = None
    deleted: float | None = None
    dwell_s: float | None = None


@dataclass(frozen=True, slots=True)
class Anomaly:
    """An unusual value, or a drift, of one signal of one entity (``lw.anomalies``)."""

    anomaly_id: str
    ts_ms: int
    entity: str
    entity_kind: str
    signal: str
    kind: SignalKind
    score: float
    severity: Severity
    value: float
    expected_low: float
    expected_high: float
    window_start_ms: int
    window_end_ms: int
    detector: str
    detector_version: str


@dataclass(frozen=True, slots=True)
class Incident:
    """A group of correlated anomalies and error bursts (``lw.incidents``)."""

    incident_id: str
    ts_ms: int
    status: IncidentStatus
    severity: Severity
    group_key: str
    root_cause: str
    started_ms: int
    members: tuple[str, ...]
    anomaly_count: int
    summary: str
    resolved_ms: int | None = None


@dataclass(frozen=True, slots=True)
class RouteProbability:
    """One route's share of a routing policy and what the model expects of it."""

    route: str
    probability: float
    expected_reward: float
    reward_std: float
    n: int


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    """The routing policy of one workflow segment (``lw.decisions.routing``, compacted)."""

    workflow: str
    segment: str
    ts_ms: int
    policy_version: int
    model_version: str
    routes: tuple[RouteProbability, ...]
    reasons: tuple[str, ...] = ()
    excluded: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """The answer to one ``RouteRequest`` (``lw.route.decisions``)."""

    request_id: str
    ts_ms: int
    workflow: str
    segment: str
    route: str
    probability: float
    policy_version: int
    reason: str
    variant: str | None = None
    workflow_version: str | None = None
    flags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ArmStats:
    """One variant's traffic and evidence in an experiment."""

    variant: str
    allocation: float
    n: int
    mean: float
    ci_low: float
    ci_high: float
    p_best: float
    expected_loss: float
    status: ArmStatus


@dataclass(frozen=True, slots=True)
class ExperimentDecision:
    """Allocation and statistics of one experiment (``lw.decisions.experiments``)."""

    experiment: str
    workflow: str
    ts_ms: int
    status: ExperimentStatus
    arms: tuple[ArmStats, ...]
    srm_p_value: float
    evidence: str
    winner: str | None = None
    decided_ts_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Command:
    """A signed, idempotent command (``lw.commands.remediation`` / ``.scaling`` / ``.jobs``).

    ``command_id`` is the idempotency key; ``signature`` is an HMAC over every
    other field (see ``schemas.signing``).
    """

    command_id: str
    ts_ms: int
    target: str
    action: str
    reason: str
    evidence: str
    expires_ts_ms: int
    issuer: str
    signature: str
    params: Mapping[str, str] = field(default_factory=dict)
    incident_id: str | None = None
    is_dry_run: bool = False
    requires_approval: bool = False


class ApprovalDecision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class Approval:
    """A person's signed decision on a command pending approval (``lw.approvals``, keyed by command id)."""

    command_id: str
    command_signature: str
    decision: ApprovalDecision
    operator: str
    ts_ms: int
    reason: str = ""
    signature: str = ""


@dataclass(frozen=True, slots=True)
class Forecast:
    """The latest load forecast of one entity, with prediction intervals (``lw.forecasts``, compacted).

    ``points[i]`` is the forecast ``horizons_s[i]`` after ``ts_ms``; ``lower[i]``
    and ``upper[i]`` bound it with ``coverage`` (from the quantiles of recent errors).
    """

    entity: str
    ts_ms: int
    bucket_s: float
    value: float
    horizons_s: tuple[float, ...]
    points: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    model: str
    coverage: float = 0.9


@dataclass(frozen=True, slots=True)
class LoadCount:
    """A partial sum of one entity's bucket from one input partition (``repartition.forecast``, internal)."""

    entity: str
    ts_ms: int
    bucket_ms: int
    total: float
    samples: int
    source_partition: int


@dataclass(frozen=True, slots=True)
class RolloutStep:
    """A canary step and its verdict for a workflow version (``lw.rollouts``)."""

    workflow: str
    version: str
    ts_ms: int
    step: int
    traffic_share: float
    verdict: RolloutVerdict
    reason: str
    evidence: str
    baseline_version: str | None = None


@dataclass(frozen=True, slots=True)
class Insight:
    """A finding for people: error patterns, root causes, reports (``lw.insights``)."""

    insight_id: str
    ts_ms: int
    kind: str
    subject: str
    title: str
    body: str
    severity: Severity = Severity.INFO
    evidence: Mapping[str, str] = field(default_factory=dict)
    recommendation: str | None = None


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One version of a workflow's learned routing model, signed (``lw.models``)."""

    workflow: str
    version: int
    ts_ms: int
    model: str
    reason: str
    n: int
    mae: float
    bias: float
    state: str
    signature: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Input that could not be processed, with the original bytes (``lw.dlq``)."""

    source_topic: str
    partition: int
    offset: int
    value: bytes
    error: str
    reason: str
    ts_ms: int
    key: bytes | None = None
