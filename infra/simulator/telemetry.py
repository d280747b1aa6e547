"""The record path: real ``schemas.records`` for requests, feedback, metrics, logs, jobs and workflows.

Only record-path runs (loopwise, live mode) pay for this; the outcomes are
the same arrays the cheap path scores, so both paths share one truth.
"""

from __future__ import annotations

import heapq

from typing import Any, Mapping

import numpy as np

from infra.simulator.control import ControlState
from infra.simulator.feedback import FeedbackQueue
from infra.simulator.outcomes import CAUSE_NAMES, CAUSE_NO_ROUTE, CAUSE_RATE_LIMIT, CAUSE_SHED, CAUSE_TIMEOUT, \
    CAUSE_UNSUPPORTED, REJECTED, SliceOutcomes
from infra.simulator.protocols import Policy
from infra.simulator.traffic import TrafficSlice
from infra.simulator.truth import PRIVACY_LEVELS, Truth, TruthState
from schemas.records import (
    ExperimentSpec, RolloutPlan,
    JobSubmission, LogEvent, LogLevel, MetricEvent, RequestContext, RequestEvent, RouteRequest, RouteSpec, Status,
    VariantSpec, WorkflowDefinition,
)

_STATUS = (Status.OK, Status.ERROR, Status.TIMEOUT, Status.REJECTED)


def segment_of(context: RequestContext, keys: tuple[str, ...]) -> str:
    """The routing segment of a request: ``key=value`` pairs of the workflow's context keys.

    >>> segment_of(RequestContext("acme", "chat"), ("task", "privacy_level"))
    'task=chat|privacy_level=public'
    """
    values = {"tenant": context.tenant, "task": context.task, "privacy_level": str(context.privacy_level),
              "priority": str(context.priority)}
    return "|".join(f"{key}={values.get(key, context.attributes.get(key, ''))}" for key in keys)


def _message(cause: int, route: str, provider: str, is_local: bool, tenant: str, ms: float, n: int) -> str:
    if cause == CAUSE_TIMEOUT:
        return f"upstream timeout after {int(ms)}ms calling {route}"
    if cause == CAUSE_RATE_LIMIT:
        return f"rate limit exceeded for tenant {tenant} (429)"
    if cause == CAUSE_NO_ROUTE:
        return f"no eligible route for request (tenant {tenant}): all circuits open or privacy too high"
    if cause == CAUSE_SHED:
        return f"load shed: request from tenant {tenant} rejected (503)"
    if cause == CAUSE_UNSUPPORTED:
        return f"route {route} cannot serve this task (400)"
    if is_local:
        return f"CUDA out of memory on gpu {n % 4}"
    return f"upstream {provider} returned 503 Service Unavailable for {route}"


class Telemetry:
    """Builds records for one run and keeps feedback waiting for its event time."""

    def __init__(self, truth: Truth, seed: int) -> None:
        self.truth, self.seed = truth, seed
        self.feedback = FeedbackQueue(truth.scenario.feedback)
        sc = truth.scenario
        self._prefix = f"{sc.name}-{seed}"
        self._tenants = [[t.name for t in wf.tenants] for wf in sc.workflows]
        self._next_metrics_ms = sc.start_ms + int(sc.metrics_interval_s * 1000)
        self._window: list[SliceOutcomes] = []
        self._signature: list[tuple[Any, ...]] = []
        self._definitions: list[WorkflowDefinition] = []
        # A gateway publishes a request when it completes: events stamped later than the
        # slice they started in wait here until their time (a timeout shows up 30 s later).
        self._completing: list[tuple[int, int, Any]] = []
        self._completing_seq = 0
        self._canaries = self._canary_plans()

    def _canary_plans(self) -> dict[int, tuple[str, RolloutPlan]]:
        """Per workflow with a canary event: the new version's name and the rollout plan it ships with."""
        out: dict[int, tuple[str, RolloutPlan]] = {}
        for event in self.truth.scenario.timeline:
            w = self.truth.workflow_index(event.target) if event.kind == "canary" else None
            if w is not None:
                p = event.params
                name = str(p.get("version", f"{self.truth.scenario.workflows[w].version}-canary"))
                steps = tuple(float(s) for s in p.get("steps", (0.05, 0.25, 0.5, 1.0)))  # type: ignore[union-attr]
                out[w] = (name, RolloutPlan(steps, float(p.get("step_duration", 600.0)), 0.05))  # type: ignore[arg-type]
        return out

    def _stamp(self, w: int, is_canary: int) -> str:
        """The version a request reports: the canary's name, else the version serving the rest."""
        definition, canary = self._definitions[w], self._canaries.get(w)
        if canary is None:
            return definition.version
        if is_canary:
            return canary[0]
        if definition.version == canary[0]:
            return definition.previous_version or self.truth.scenario.workflows[w].version
        return definition.version

    def definition(self, w: int) -> WorkflowDefinition:
        """The workflow definition currently published for workflow ``w``."""
        return self._definitions[w]

    def workflows(self, now_ms: int, state: TruthState, control: ControlState) -> list[WorkflowDefinition]:
        """Definitions whose visible part (prices, version) changed since last published."""
        out = []
        for w, wf in enumerate(self.truth.scenario.workflows):
            routes = self.truth.wf_routes[w]
            is_canary = bool(state.canary_share[w] > 0 and w not in control.rolled_back)
            available = state.available if state.available is not None else np.ones(len(self.truth.routes), dtype=bool)
            signature = (tuple(np.round(state.cost_mult[routes], 9)), is_canary, tuple(available[routes].tolist()))
            if w < len(self._signature) and self._signature[w] == signature:
                continue
            version = self._canaries[w][0] if is_canary and w in self._canaries else wf.version
            if any(signature[0][i] != 1.0 for i in range(len(routes))):
                version += f"-price{len(self._definitions) + len(out)}"
            if not all(signature[2]):
                version += f"-routes{len(self._definitions) + len(out)}"
            specs = tuple(RouteSpec(
                r.name, r.provider, r.is_local, r.max_privacy, r.cost_per_1k_in_usd * float(state.cost_mult[i]),
                r.cost_per_1k_out_usd * float(state.cost_mult[i]), tuple(sorted(r.quality)), float(self.truth.capacity[i]))
                for i, r in zip(routes.tolist(), wf.routes) if available[i])
            definition = WorkflowDefinition(
                wf.name, version, now_ms, specs, tuple(VariantSpec(v.name, v.is_control) for v in wf.variants),
                wf.objective, budget_usd_per_hour=self._budget(wf.budget_usd_per_hour), fallback_route=wf.fallback_route,
                previous_version=self._definitions[w].version if w < len(self._definitions) else None,
                experiment=None if wf.experiment is None else ExperimentSpec(wf.experiment),
                feedback_window_s=wf.feedback_window_s, budget_mode=wf.budget_mode,
                rollout=self._canaries[w][1] if is_canary and w in self._canaries else None)
            if w < len(self._signature):
                self._signature[w], self._definitions[w] = signature, definition
            else:
                self._signature.append(signature)
                self._definitions.append(definition)
            out.append(definition)
        return out

    def _budget(self, usd_per_hour: float | None) -> float | None:
        """A budget scaled with ``--rate`` like capacities (and like the scorecard scales it)."""
        return None if usd_per_hour is None else usd_per_hour * self.truth.rate / self.truth.scenario.rate

    def request_id(self, index: int) -> str:
        """Stable id of the ``index``-th request of the run (same for every policy)."""
        return f"{self._prefix}-{index:09d}"

    def contexts(self, traffic: TrafficSlice) -> list[RequestContext]:
        """Each request's context record."""
        # A gateway knows the prompt's size before it routes: it rides along as an attribute.
        return [RequestContext(self._tenants[w][t], self.truth.tasks[k], PRIVACY_LEVELS[p], int(pr),
                               attributes={"tokens_in": str(n)})
                for w, t, k, p, pr, n in zip(traffic.workflow.tolist(), traffic.tenant.tolist(), traffic.task.tolist(),
                                             traffic.privacy.tolist(), traffic.priority.tolist(), traffic.tokens_in.tolist())]

    def ask(self, policy: Policy, traffic: TrafficSlice, control: ControlState,
            state: TruthState) -> tuple[np.ndarray, np.ndarray]:
        """Ask a record-path policy per request; routes it leaves open are sampled from published policies."""
        route = np.full(traffic.n, -1, dtype=np.int64)
        variant = np.full(traffic.n, -1, dtype=np.int64)
        contexts = self.contexts(traffic)
        for i, (ctx, ts, w) in enumerate(zip(contexts, traffic.ts_ms.tolist(), traffic.workflow.tolist())):
            definition = self._definitions[w]
            choice = policy.choose(RouteRequest(self.request_id(traffic.first_request + i), ts, definition.workflow, ctx),
                                   definition, ts)
            name = choice.route or self._sample(control, definition, ctx, float(traffic.u_route[i]))
            names = self.truth.route_names
            route[i] = next((r for r in self.truth.wf_routes[w].tolist() if names[r] == name), -1)
            if choice.variant is not None:
                variant[i] = next((j for j, v in enumerate(definition.variants) if v.name == choice.variant), -1)
        return route, variant

    @staticmethod
    def _sample(control: ControlState, definition: WorkflowDefinition, ctx: RequestContext, u: float) -> str | None:
        published = control.routing.get((definition.workflow, segment_of(ctx, definition.context_keys)))
        if published is None or not published.routes:
            return None
        cum = np.cumsum([p.probability for p in published.routes])
        return published.routes[min(int(np.searchsorted(cum / cum[-1], u, side="right")), len(cum) - 1)].route

    def emit(self, out: SliceOutcomes, state: TruthState, control: ControlState, now_ms: int,
             is_last: bool = False) -> list[Any]:
        """All records of a finished slice (plus due feedback, metrics, jobs, new definitions), in time order.

        Requests (and their log lines) are published when they complete, in the slice that
        holds their completion time; ``is_last`` flushes every one still in flight.
        """
        traffic, t = out.traffic, self.truth
        ids = [self.request_id(traffic.first_request + i) for i in range(traffic.n)]
        wf_names = [t.scenario.workflows[w].name for w in traffic.workflow.tolist()]
        contexts = self.contexts(traffic)
        records: list[Any] = list(self.workflows(int(traffic.ts_ms[0]) if traffic.n else now_ms, state, control))
        names = t.route_names
        for i, (r, st, cause, lat, cost, v) in enumerate(zip(out.route.tolist(), out.status.tolist(), out.cause.tolist(),
                                                             out.latency_ms.tolist(), out.cost_usd.tolist(), out.variant.tolist())):
            w = int(traffic.workflow[i])
            definition = self._definitions[w]
            route_name = names[r] if r >= 0 else "none"
            variant = definition.variants[v].name if definition.variants else None
            message = None if cause == 0 else _message(cause, route_name, t.routes[max(r, 0)].provider,
                                                       t.routes[max(r, 0)].is_local, contexts[i].tenant, lat, i)
            ts = int(traffic.ts_ms[i])
            records.append(RequestEvent(ids[i], ts + int(lat), wf_names[i], self._stamp(w, int(out.version[i])), route_name, contexts[i],
                                        lat, cost, int(traffic.tokens_in[i]), int(traffic.tokens_out[i]), _STATUS[st],
                                        variant, CAUSE_NAMES[cause] or None, message))
            if message is not None:
                level = LogLevel.WARNING if cause in (CAUSE_SHED, CAUSE_RATE_LIMIT) else LogLevel.ERROR
                records.append(LogEvent(route_name if r >= 0 else "gateway", ts + int(lat), level, message,
                                        route_name if r >= 0 else None, wf_names[i], ids[i]))
        self.feedback.schedule(ids, wf_names, traffic.ts_ms + out.latency_ms.astype(np.int64), out.quality, out.status != REJECTED, traffic.feedback_draws())
        records.extend(self.feedback.release(now_ms))
        records = self._hold_until_complete(records, now_ms, is_last)
        records.extend(self._metrics(out, now_ms))
        records.extend(self._jobs(traffic, now_ms))
        records.sort(key=lambda rec: rec.ts_ms)
        return records

    def _hold_until_complete(self, records: list[Any], now_ms: int, is_last: bool) -> list[Any]:
        """Records stamped before ``now_ms`` (all of them on the run's last slice); the rest wait."""
        for record in records:
            if record.ts_ms >= now_ms and not is_last:
                self._completing_seq += 1
                heapq.heappush(self._completing, (record.ts_ms, self._completing_seq, record))
        ready = [r for r in records if r.ts_ms < now_ms or is_last]
        while self._completing and (self._completing[0][0] < now_ms or is_last):
            ready.append(heapq.heappop(self._completing)[2])
        return ready

    def _metrics(self, out: SliceOutcomes, now_ms: int) -> list[MetricEvent]:
        self._window.append(out)
        if now_ms < self._next_metrics_ms:
            return []
        interval_s = self.truth.scenario.metrics_interval_s
        self._next_metrics_ms += int(interval_s * 1000)
        routes = np.concatenate([o.route for o in self._window])
        latency = np.concatenate([o.latency_ms for o in self._window])
        u = out.utilisation
        self._window = []
        records = []
        for r, name in enumerate(self.truth.route_names):
            labels: Mapping[str, str] = {"workflow": self.truth.scenario.workflows[int(self.truth.route_wf[r])].name}
            lat = latency[routes == r]
            ur = float(min(u[r], 0.99))
            values = {"rps": float((routes == r).sum() / interval_s), "queue_depth": ur * ur / (1.0 - ur),
                      "cpu": 100.0 * min(float(u[r]), 1.0), "latency_p95_ms": float(np.percentile(lat, 95)) if len(lat) else 0.0}
            records.extend(MetricEvent(name, now_ms, metric, value, labels) for metric, value in values.items())
        records.append(MetricEvent("gateway", now_ms, "rps", float(len(routes) / interval_s), {}))
        return records

    def _jobs(self, traffic: TrafficSlice, now_ms: int) -> list[JobSubmission]:
        sc = self.truth.scenario
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(self.seed, spawn_key=(traffic.index, 7))))
        n = int(rng.poisson(sc.jobs_per_hour * sc.slice_ms / 3_600_000))
        jobs = []
        for j in range(n):
            wf = sc.workflows[int(rng.integers(len(sc.workflows)))].name
            duration_s = float(rng.lognormal(np.log(600), 0.8))
            jobs.append(JobSubmission(f"{self._prefix}-job-{traffic.index}-{j}", now_ms - 1, wf, int(rng.integers(1, 4)),
                                      float(rng.lognormal(np.log(2.0), 1.0)), duration_s,
                                      now_ms + int(duration_s * 3000)))
        return jobs
