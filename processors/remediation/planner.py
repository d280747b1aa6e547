"""The ``Remediator``: observes requests, anomalies, incidents, metrics, outcomes and workflows; emits signed commands.

It ties the parts together in event time: circuit breakers per route (with the
all-routes-open rule), escalation of incidents through each workflow's declared
actions, load shedding on sustained overload, rollback of regressing versions.
Every command gets an idempotency key from (episode, action, target, step), a
TTL, its evidence as JSON and an HMAC signature; rate limits may hold it back,
in which case the state it would have changed stays as it was. ``snapshot``
and ``restore`` carry all of it as plain JSON-able dicts.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import orjson

from processors.remediation.actions import ActionPlan, Escalation, due_step, plan_for
from processors.remediation.approval import RiskPolicy
from processors.remediation.audit import AuditLog
from processors.remediation.breaker import BreakerConfig, BreakerState, CircuitBreaker, Transition
from processors.remediation.keys import episode_id, idempotency_key
from processors.remediation.limits import RateLimits
from processors.remediation.watch import OverloadWatch, RegressionWatch
from schemas.records import (
    Anomaly, Command, Incident, IncidentStatus, MetricEvent, Outcome, RequestEvent, Severity, Status, WorkflowDefinition,
)
from schemas.serde import json_codec
from schemas.signing import sign

_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}
_WORKFLOW = json_codec(WorkflowDefinition)


@dataclass(frozen=True, slots=True)
class RemediatorConfig:
    """How the remediator behaves beyond what workflows declare.

    Attributes:
        issuer: the ``issuer`` of every command.
        is_dry_run: publish commands marked ``is_dry_run`` (consumers apply nothing).
        min_severity: incidents below it are not escalated.
        per_target_per_hour / per_action_per_hour: rate limits (sliding hour, event time).
        max_remembered: idempotency keys kept to suppress re-emission in one process.
        benign_error_types: ``error_type`` values that say nothing about a route's health
            (throttling by the provider, requests the route cannot serve): they never trip a breaker.
        risk: actions a person must approve (``LOOPWISE_RISKY_ACTIONS``): their commands carry
            ``requires_approval`` and live at least ``approval_window_ms`` so someone can decide.
    """

    issuer: str = "loopwise"
    is_dry_run: bool = False
    min_severity: Severity = Severity.CRITICAL
    per_target_per_hour: int = 60
    per_action_per_hour: int = 240
    max_remembered: int = 50_000
    benign_error_types: tuple[str, ...] = ("rate_limit", "unsupported_task", "load_shed", "no_route")
    risk: RiskPolicy = RiskPolicy()
    approval_window_ms: int = 900_000


class Remediator:
    """Self-healing decisions over typed records; ``advance(now_ms)`` returns the signed commands due.

    Args:
        key: the HMAC signing key (``Settings.signing_key_bytes``); never logged.
        config: behaviour beyond the workflows' declarations.
    """

    def __init__(self, key: bytes, config: RemediatorConfig | None = None) -> None:
        if not key:
            raise ValueError("the remediator needs a signing key")
        self._key, self.config = key, config or RemediatorConfig()
        self.limits = RateLimits(self.config.per_target_per_hour, self.config.per_action_per_hour)
        self.audit = AuditLog()
        self.overload, self.regression = OverloadWatch(), RegressionWatch()
        self._definitions: dict[str, WorkflowDefinition] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._episodes: dict[str, str] = {}  # route -> breaker episode id
        self._route_incident: dict[str, str] = {}  # route -> firing incident about it
        self._escalations: dict[str, Escalation] = {}
        self._shedding: dict[str, list[Any]] = {}  # workflow -> [episode, step, until_ms]
        self._emitted: dict[str, None] = {}  # insertion-ordered, bounded set of keys
        self._resolved: dict[str, None] = {}  # incidents already over (bounded)
        self._degraded: dict[str, str] = {}  # workflow -> the route kept serving
        self.warnings: deque[str] = deque(maxlen=100)

    # ------------------------------------------------------------------ inputs
    def observe(self, record: object) -> bool:
        """Feed any record the remediator reads to its ``observe_*``; False for a record it does not read."""
        handler = _OBSERVERS.get(type(record))
        if handler is None:
            return False
        handler(self, record)
        return True

    def observe_workflow(self, definition: WorkflowDefinition) -> None:
        """Keep the latest definition per workflow (its routes, fallback and declared actions)."""
        current = self._definitions.get(definition.workflow)
        if current is None or current.ts_ms <= definition.ts_ms:
            self._definitions[definition.workflow] = definition
        self.regression.observe_workflow(definition)

    def observe_request(self, event: RequestEvent) -> None:
        """Feed the route's breaker and the version's failure count."""
        if event.status != Status.REJECTED and event.route != "none":
            breaker = self._breaker(event.route, event.workflow)
            if breaker is not None:
                is_failure = event.status == Status.TIMEOUT or (
                    event.status == Status.ERROR and event.error_type not in self.config.benign_error_types)
                breaker.observe(event.ts_ms, is_failure)
        self.regression.observe_request(event)

    def observe_anomaly(self, anomaly: Anomaly) -> None:
        """A critical latency anomaly of a route counts towards opening its circuit."""
        if anomaly.entity_kind == "route" and anomaly.signal == "latency_ms" and anomaly.severity == Severity.CRITICAL:
            breaker = self._breakers.get(anomaly.entity)
            if breaker is not None:
                breaker.observe_latency_anomaly(anomaly.ts_ms)

    def observe_incident(self, incident: Incident) -> None:
        """Start escalating a firing incident; settle the audit of a resolved one."""
        route, workflow = self._subject(incident)
        if incident.status == IncidentStatus.RESOLVED:
            escalation = self._escalations.get(incident.incident_id)
            if escalation is not None:
                escalation.is_open = False
            if route is not None and self._route_incident.get(route) == incident.incident_id:
                del self._route_incident[route]
            self._resolved[incident.incident_id] = None
            if len(self._resolved) > self.config.max_remembered:
                del self._resolved[next(iter(self._resolved))]
            self.audit.settle(incident.resolved_ms or incident.ts_ms, "resolved", incident_id=incident.incident_id)
            return
        if incident.incident_id in self._resolved:
            return  # a late redelivery of a firing update: the incident is over
        if route is not None:
            self._route_incident[route] = incident.incident_id
        if (_SEVERITY_RANK[incident.severity] < _SEVERITY_RANK[self.config.min_severity]
                or incident.incident_id in self._escalations or workflow is None):
            return
        self._escalations[incident.incident_id] = Escalation(incident.incident_id, workflow, route, 0, incident.ts_ms)

    def observe_metric(self, metric: MetricEvent) -> None:
        """Fold a ``queue_depth`` sample into the overload watch of its workflow."""
        plan = self._plan(metric.labels.get("workflow", "*"))
        self.overload.observe(metric, plan.number("shed_load", "queue_depth", 20.0))

    def observe_outcome(self, outcome: Outcome) -> None:
        """A final outcome's reward counts for its workflow version."""
        self.regression.observe_outcome(outcome)

    # ---------------------------------------------------------------- decisions
    def advance(self, now_ms: int) -> list[Command]:
        """Every command due at event time ``now_ms``, signed (and marked dry-run if configured)."""
        out = self._advance_breakers(now_ms)
        out += self._advance_escalations(now_ms)
        out += self._advance_shedding(now_ms)
        out += self._advance_rollbacks(now_ms)
        return out

    def breaker_state(self, route: str) -> BreakerState:
        """The circuit of ``route`` as the remediator believes it is."""
        breaker = self._breakers.get(route)
        return breaker.state if breaker is not None else BreakerState.CLOSED

    def audit_log(self) -> list[dict[str, Any]]:
        """Every command, held-back command and warning, with its incident and outcome."""
        return self.audit.entries()

    def _advance_breakers(self, now_ms: int) -> list[Command]:
        proposals = {r: t for r in sorted(self._breakers) if (t := self._breakers[r].propose(now_ms)) is not None}
        for route in self._keepers(proposals, now_ms):
            del proposals[route]
        out = []
        for route, transition in proposals.items():
            command = self._breaker_command(self._breakers[route], transition)
            if command is not None:
                self._breakers[route].commit(transition)
                out.append(command)
                if transition.target is BreakerState.CLOSED:
                    self.audit.settle(now_ms, "recovered", episode=self._episodes.pop(route, None) or "")
        return out

    def _keepers(self, proposals: Mapping[str, Transition], now_ms: int) -> list[str]:
        """Routes whose opening is vetoed so every workflow keeps one serving route (degraded mode)."""
        opening = {r for r, t in proposals.items() if t.target is BreakerState.OPEN}
        vetoed: list[str] = []
        for workflow in sorted(self._definitions):
            definition = self._definitions[workflow]
            routes = [r.name for r in definition.routes]
            serving = [r for r in routes if r not in opening and self.breaker_state(r) is not BreakerState.OPEN]
            candidates = [r for r in routes if r in opening and r not in vetoed]
            if serving or not candidates:
                continue
            if definition.fallback_route in candidates:
                keeper = definition.fallback_route
            else:
                keeper = min(candidates, key=lambda r: (self._breakers[r].failure_rate(now_ms), r))
            vetoed.append(keeper)
            if self._degraded.get(workflow) != keeper:  # warn on entering degraded mode, not every second
                self._degraded[workflow] = keeper
                message = f"every route of {workflow} would be open: keeping {keeper} serving"
                self.warnings.append(message)
                self.audit.note("degraded", now_ms, keeper, "open_circuit", message)
        for workflow in [w for w, keeper in self._degraded.items() if keeper not in vetoed]:
            del self._degraded[workflow]
        return vetoed

    def _breaker_command(self, breaker: CircuitBreaker, t: Transition) -> Command | None:
        route = breaker.route
        if t.source is BreakerState.CLOSED:
            incident = self._route_incident.get(route)
            self._episodes[route] = incident or episode_id("breaker", route, t.ts_ms)
        episode = self._episodes.get(route) or episode_id("breaker", route, breaker.episode_start_ms or t.ts_ms)
        step = 0 if t.source is BreakerState.CLOSED else breaker.episode_step + 1
        plan = self._plan(self._workflow_of(route))
        if t.target is BreakerState.OPEN:
            action, params = "open_circuit", {"state": "open"}
        else:
            share = breaker.config.probe_share if t.target is BreakerState.HALF_OPEN else 1.0
            action, params = "close_circuit", {"state": t.target.value, "probe_share": f"{share:g}"}
        return self._emit(episode, action, route, step, t.ts_ms, t.reason, dict(t.evidence), params,
                          plan.ttl_ms("open_circuit"), self._route_incident.get(route))

    def _advance_escalations(self, now_ms: int) -> list[Command]:
        out = []
        for incident_id in sorted(self._escalations):
            esc = self._escalations[incident_id]
            plan = self._plan(esc.workflow)
            if not esc.is_open:
                if "scale_up" in esc.actions and "scale_down" not in esc.actions and plan.allows("scale_down"):
                    command = self._emit(incident_id, "scale_down", esc.target("scale_down"), "revert", now_ms,
                                         "incident resolved: undo scale_up", {"steps": esc.actions},
                                         plan.command_params("scale_down"), plan.ttl_ms("scale_down"), incident_id)
                    if command is None:
                        continue
                    out.append(command)
                del self._escalations[incident_id]
                continue
            spec = due_step(esc, plan, now_ms)
            if spec is None:
                continue
            reason = f"incident still firing: step {esc.step + 1} of {len(plan.escalation)} ({spec.action})"
            command = self._emit(incident_id, spec.action, esc.target(spec.action), esc.step, now_ms, reason,
                                 {"incident_id": incident_id, "previous": esc.actions},
                                 plan.command_params(spec.action), plan.ttl_ms(spec.action), incident_id)
            if command is not None:
                esc.step, esc.step_started_ms = esc.step + 1, now_ms
                esc.actions.append(spec.action)
                out.append(command)
        return out

    def _advance_shedding(self, now_ms: int) -> list[Command]:
        out = []
        for workflow in self.overload.workflows():
            plan, since = self._plan(workflow), self.overload.overloaded_since(workflow)
            active = self._shedding.get(workflow)
            if not plan.allows("shed_load") or since is None or (active is not None and active[2] > now_ms):
                continue
            if now_ms - since < plan.number("shed_load", "sustain_s", 30.0) * 1000:
                continue
            episode = episode_id("overload", workflow, since)
            step = active[1] + 1 if active is not None and active[0] == episode else 0
            command = self._emit(episode, "shed_load", workflow, step, now_ms,
                                 f"every route of {workflow} queued for {(now_ms - since) / 1000:.0f} s",
                                 {"queue_depth": self.overload.evidence(workflow)}, plan.command_params("shed_load"),
                                 plan.ttl_ms("shed_load"), None)
            if command is not None:
                self._shedding[workflow] = [episode, step, command.expires_ts_ms]
                out.append(command)
        return out

    def _advance_rollbacks(self, now_ms: int) -> list[Command]:
        out = []
        for workflow in self.regression.workflows():
            plan = self._plan(workflow)
            if not plan.allows("rollback"):
                continue
            found = self.regression.check(
                workflow, min_samples=int(plan.number("rollback", "min_samples", 500)),
                z=plan.number("rollback", "z", 4.0), min_error_delta=plan.number("rollback", "min_error_delta", 0.005),
                max_regression=plan.number("rollback", "max_regression", 0.05))
            change = self.regression.change(workflow)
            if found is None or change is None:
                continue
            params = {**plan.command_params("rollback"), "from_version": found.candidate, "to_version": found.baseline}
            command = self._emit(episode_id("change", workflow, change.ts_ms), "rollback", workflow, 0, now_ms,
                                 f"{found.candidate} regressed: {found.reason}", dict(found.evidence), params,
                                 plan.ttl_ms("rollback"), None)
            if command is not None:
                self.regression.mark_rolled_back(workflow)
                out.append(command)
        return out

    # ------------------------------------------------------------------ helpers
    def _emit(self, episode: str, action: str, target: str, step: int | str, now_ms: int, reason: str,
              evidence: Mapping[str, Any], params: Mapping[str, str], ttl_ms: int, incident_id: str | None
              ) -> Command | None:
        """Build, rate-limit, sign and remember one command; ``None`` when held back."""
        key = idempotency_key(episode, action, target, step)
        if key in self._emitted:
            return None
        if not self.limits.try_acquire(target, action, now_ms):
            self.audit.note("rate_limited", now_ms, target, action, reason, incident_id)
            return None
        is_risky = self.config.risk.is_risky(action, params)
        if is_risky:
            ttl_ms = max(ttl_ms, self.config.approval_window_ms)  # a person needs the time to decide
        command = sign(Command(
            key, now_ms, target, action, reason, orjson.dumps(evidence, option=orjson.OPT_SORT_KEYS).decode(),
            now_ms + ttl_ms, self.config.issuer, "", dict(params), incident_id, self.config.is_dry_run,
            is_risky), self._key)
        self._emitted[key] = None
        if len(self._emitted) > self.config.max_remembered:
            del self._emitted[next(iter(self._emitted))]
        self.audit.command(command, episode, step)
        return command

    def _plan(self, workflow: str | None) -> ActionPlan:
        return plan_for(self._definitions.get(workflow or ""))

    def _workflow_of(self, route: str) -> str | None:
        """The first workflow (by name) that routes to ``route``: whose declarations govern its breaker."""
        return next((w for w in sorted(self._definitions) if any(r.name == route for r in self._definitions[w].routes)),
                    None)

    def _breaker(self, route: str, workflow: str) -> CircuitBreaker | None:
        breaker = self._breakers.get(route)
        if breaker is None:
            plan = self._plan(self._workflow_of(route) or workflow)
            if not plan.allows("open_circuit"):
                return None  # the workflow declared its actions and circuits are not among them
            breaker = self._breakers[route] = CircuitBreaker(route, BreakerConfig.from_params(plan.params("open_circuit")))
        return breaker

    def _subject(self, incident: Incident) -> tuple[str | None, str | None]:
        """The route and workflow an incident is about, from its root cause (``route:x``/``workflow:w``)."""
        kind, _, entity = incident.root_cause.partition(":")
        if kind == "route":
            return entity, self._workflow_of(entity)
        if kind == "workflow":
            return None, entity
        return None, None

    # ---------------------------------------------------------------- snapshots
    def snapshot(self) -> dict[str, Any]:
        """Everything needed to resume without a duplicate command, as plain JSON-able values (no pickle)."""
        return {
            "version": 1,
            "definitions": [_WORKFLOW.to_dict(d) for _, d in sorted(self._definitions.items())],
            "breakers": {r: b.snapshot() for r, b in self._breakers.items()},
            "episodes": dict(self._episodes), "route_incident": dict(self._route_incident),
            "escalations": [e.to_dict() for e in self._escalations.values()],
            "shedding": {w: list(v) for w, v in self._shedding.items()},
            "emitted": list(self._emitted), "degraded": dict(self._degraded),
            "resolved": list(self._resolved), "limits": self.limits.snapshot(), "audit": self.audit.snapshot(),
            "overload": self.overload.snapshot(), "regression": self.regression.snapshot(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Resume from what ``snapshot`` returned (its JSON round trip included)."""
        self._definitions = {d.workflow: d for d in (_WORKFLOW.from_dict(x) for x in state["definitions"])}
        self._breakers = {r: CircuitBreaker.restore(r, b) for r, b in state["breakers"].items()}
        self._episodes, self._route_incident = dict(state["episodes"]), dict(state["route_incident"])
        self._escalations = {e["incident_id"]: Escalation.from_dict(e) for e in state["escalations"]}
        self._shedding = {w: list(v) for w, v in state["shedding"].items()}
        self._emitted = dict.fromkeys(state["emitted"])
        self._degraded = dict(state["degraded"])
        self._resolved = dict.fromkeys(state["resolved"])
        self.limits.restore(state["limits"])
        self.audit.restore(state["audit"])
        self.overload.restore(state["overload"])
        self.regression.restore(state["regression"])


_OBSERVERS: dict[type, Callable[[Remediator, Any], None]] = {
    RequestEvent: Remediator.observe_request, MetricEvent: Remediator.observe_metric,
    WorkflowDefinition: Remediator.observe_workflow, Anomaly: Remediator.observe_anomaly,
    Incident: Remediator.observe_incident, Outcome: Remediator.observe_outcome,
}
