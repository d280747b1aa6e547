"""Prometheus metrics of loopwise's decisions (spend, routes, circuits, experiments, rollouts, incidents).

Fed by the ``metrics`` stage from the decision and output topics, so they are
the same whichever worker made a decision. Counters count what this worker's
share of the partitions carried (sum them across workers); gauges hold the
latest decision seen (a worker that restarts shows a gauge again at the next
decision on its topic).
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.records import (
    Anomaly, Command, ExperimentDecision, FeedbackEvent, Incident, Outcome, RolloutStep, RoutingPolicy,
    WorkflowDefinition,
)

_REWARD_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
_CIRCUIT_ACTIONS = {"open_circuit": 1.0, "close_circuit": 0.0}


def _version() -> str:
    try:
        return metadata.version("loopwise")
    except metadata.PackageNotFoundError:
        return "unknown"


class DomainMetrics:
    """The decision metrics, registered on a worker's registry (never the global one).

    >>> m = DomainMetrics(CollectorRegistry())
    >>> m.registry.get_sample_value("loopwise_build_info", {"version": m.version, "python": platform.python_version()})
    1.0
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = reg = registry
        self.version = _version()
        Gauge("loopwise_build_info", "Always 1; the labels say which loopwise runs.", ["version", "python"],
              registry=reg).labels(self.version, platform.python_version()).set(1)
        self.spend = Counter("loopwise_spend_usd_total", "Spend of served requests (provisional outcomes), USD.",
                             ["workflow", "route"], registry=reg)
        self.budget = Gauge("loopwise_budget_usd_per_hour", "Budget the workflow definition declares, USD/hour.",
                            ["workflow"], registry=reg)
        self.outcomes = Counter("loopwise_outcomes_total", "Outcomes by workflow, route, status and kind "
                                "(provisional / final).", ["workflow", "route", "status", "kind"], registry=reg)
        self.reward = Histogram("loopwise_outcome_reward", "Reward of final outcomes, per workflow and route.",
                                ["workflow", "route"], buckets=_REWARD_BUCKETS, registry=reg)
        self.feedback = Counter("loopwise_feedback_total", "Feedback events by kind.", ["kind"], registry=reg)
        self.route_share = Gauge("loopwise_route_share", "Probability the current routing policy gives a route.",
                                 ["workflow", "segment", "route"], registry=reg)
        self.expected_reward = Gauge("loopwise_route_expected_reward", "Reward the routing model expects of a route.",
                                     ["workflow", "segment", "route"], registry=reg)
        self.policy_version = Gauge("loopwise_policy_version", "Version of the latest routing policy.",
                                    ["workflow", "segment"], registry=reg)
        self.policies = Counter("loopwise_policies_total", "Routing policies published.", ["workflow"], registry=reg)
        self.circuit = Gauge("loopwise_circuit_open", "1 while a circuit-open command holds for the target, else 0.",
                             ["target"], registry=reg)
        self.commands = Counter("loopwise_commands_total", "Commands published, by topic and action (dry runs too).",
                                ["topic", "action", "dry_run"], registry=reg)
        self.arm_allocation = Gauge("loopwise_experiment_allocation", "Traffic share of an experiment arm.",
                                    ["experiment", "variant"], registry=reg)
        self.arm_mean = Gauge("loopwise_experiment_arm_mean", "Observed mean of the primary metric per arm.",
                              ["experiment", "variant"], registry=reg)
        self.arm_p_best = Gauge("loopwise_experiment_p_best", "Probability an arm is best.",
                                ["experiment", "variant"], registry=reg)
        self.arm_n = Gauge("loopwise_experiment_arm_samples", "Samples per arm.", ["experiment", "variant"],
                           registry=reg)
        self.experiment_status = Gauge("loopwise_experiment_status", "1 for the experiment's current status.",
                                       ["experiment", "workflow", "status"], registry=reg)
        self.rollout_step = Gauge("loopwise_rollout_step", "Current canary step of a workflow's rollout.",
                                  ["workflow", "version"], registry=reg)
        self.rollout_share = Gauge("loopwise_rollout_traffic_share", "Traffic share of the canary version.",
                                   ["workflow", "version"], registry=reg)
        self.rollout_verdicts = Counter("loopwise_rollout_verdicts_total", "Rollout verdicts.", ["workflow", "verdict"],
                                        registry=reg)
        self.anomalies = Counter("loopwise_anomalies_total", "Anomalies by severity, entity kind and signal.",
                                 ["severity", "entity_kind", "signal"], registry=reg)
        self.incidents = Counter("loopwise_incidents_total", "Incident updates by severity and status.",
                                 ["severity", "status"], registry=reg)
        self.incidents_open = Gauge("loopwise_incidents_open", "Incidents open now, by severity.", ["severity"],
                                    registry=reg)
        self.stage_lag = Gauge("loopwise_stage_lag", "Messages not yet processed by a stage (all its partitions).",
                               ["stage"], registry=reg)
        self.notifications = Counter("loopwise_notifications_total", "Notifications by receiver and outcome "
                                     "(sent, failed, retried, silenced, deduplicated, escalated).",
                                     ["receiver", "outcome"], registry=reg)
        self.notify_latency = Histogram("loopwise_notification_latency_seconds", "From an incident's or command's "
                                        "Kafka timestamp to its delivery to a receiver.", ["receiver"],
                                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60), registry=reg)
        self._open: dict[str, str] = {}
        self._statuses: dict[str, str] = {}

    # one method per record type; each sets what that record says

    def observe_workflow(self, definition: WorkflowDefinition) -> None:
        if definition.budget_usd_per_hour is not None:
            self.budget.labels(definition.workflow).set(definition.budget_usd_per_hour)

    def observe_outcome(self, outcome: Outcome) -> None:
        kind = "final" if outcome.is_final else "provisional"
        self.outcomes.labels(outcome.workflow, outcome.route, str(outcome.status), kind).inc()
        if outcome.is_final:
            self.reward.labels(outcome.workflow, outcome.route).observe(outcome.reward)
        else:  # each request has exactly one provisional outcome: its spend counts once
            self.spend.labels(outcome.workflow, outcome.route).inc(outcome.cost_usd)

    def observe_feedback(self, feedback: FeedbackEvent) -> None:
        self.feedback.labels(str(feedback.kind)).inc()

    def observe_policy(self, policy: RoutingPolicy) -> None:
        self.policies.labels(policy.workflow).inc()
        self.policy_version.labels(policy.workflow, policy.segment).set(policy.policy_version)
        for route in policy.routes:
            self.route_share.labels(policy.workflow, policy.segment, route.route).set(route.probability)
            self.expected_reward.labels(policy.workflow, policy.segment, route.route).set(route.expected_reward)

    def observe_command(self, topic: str, command: Command) -> None:
        self.commands.labels(topic, command.action, "true" if command.is_dry_run else "false").inc()
        if command.action in _CIRCUIT_ACTIONS and not command.is_dry_run:
            self.circuit.labels(command.target).set(_CIRCUIT_ACTIONS[command.action])

    def observe_experiment(self, decision: ExperimentDecision) -> None:
        previous = self._statuses.get(decision.experiment)
        if previous is not None and previous != str(decision.status):
            self.experiment_status.labels(decision.experiment, decision.workflow, previous).set(0)
        self._statuses[decision.experiment] = str(decision.status)
        self.experiment_status.labels(decision.experiment, decision.workflow, str(decision.status)).set(1)
        for arm in decision.arms:
            labels = (decision.experiment, arm.variant)
            self.arm_allocation.labels(*labels).set(arm.allocation)
            self.arm_mean.labels(*labels).set(arm.mean)
            self.arm_p_best.labels(*labels).set(arm.p_best)
            self.arm_n.labels(*labels).set(arm.n)

    def observe_rollout(self, step: RolloutStep) -> None:
        self.rollout_step.labels(step.workflow, step.version).set(step.step)
        self.rollout_share.labels(step.workflow, step.version).set(step.traffic_share)
        self.rollout_verdicts.labels(step.workflow, str(step.verdict)).inc()

    def observe_anomaly(self, anomaly: Anomaly) -> None:
        self.anomalies.labels(str(anomaly.severity), anomaly.entity_kind, anomaly.signal).inc()

    def observe_incident(self, incident: Incident) -> None:
        self.incidents.labels(str(incident.severity), str(incident.status)).inc()
        was = self._open.pop(incident.incident_id, None)
        if str(incident.status) != "resolved":
            self._open[incident.incident_id] = str(incident.severity)
        for severity in {was, str(incident.severity)} - {None}:
            self.incidents_open.labels(severity).set(sum(1 for s in self._open.values() if s == severity))

    def observe(self, topic: str, logical: str, record: Any) -> None:
        """Route one record to its method by type (``logical``: the topic's logical name)."""
        if isinstance(record, Outcome):
            self.observe_outcome(record)
        elif isinstance(record, FeedbackEvent):
            self.observe_feedback(record)
        elif isinstance(record, RoutingPolicy):
            self.observe_policy(record)
        elif isinstance(record, Command):
            self.observe_command(logical, record)
        elif isinstance(record, ExperimentDecision):
            self.observe_experiment(record)
        elif isinstance(record, RolloutStep):
            self.observe_rollout(record)
        elif isinstance(record, Anomaly):
            self.observe_anomaly(record)
        elif isinstance(record, Incident):
            self.observe_incident(record)
