"""The console's views: bounded, in-memory pictures of the topics, and the deltas that keep a browser current.

Pure: ``ConsoleViews.apply(logical_topic, record, where)`` folds one decoded record
in and returns the deltas it caused (``{"ch": channel, "key": ..., "data": ...}``);
nothing here reads Kafka, a clock or the network (``now_ms`` is passed in). Pages
ask for a view (``page``) and then follow the deltas of their channels; a route
table of 10 k workflow × segment policies is read a page at a time, never whole.
"""

from __future__ import annotations

import base64
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Iterable

from processors.remediation.approval import ApprovalBook, ApprovalState
from schemas.records import (
    Approval, Command, DeadLetter, ExperimentDecision, Incident, IncidentStatus, Insight, Outcome, RolloutStep,
    RoutingPolicy, WorkflowDefinition,
)

Delta = dict[str, Any]
CHANNELS = ("workflows", "routes", "timeline", "rollouts", "experiments", "incidents", "commands", "insights", "dlq",
            "run")


def _bounded_put(table: "OrderedDict[str, Any]", key: str, value: Any, limit: int) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > limit:
        table.popitem(last=False)


def _text(raw: bytes | None, limit: int = 2_000) -> str:
    if raw is None:
        return ""
    try:
        return raw[:limit].decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw[:limit]).decode("ascii")


@dataclass
class RunScore:
    """The live scorecard: outcomes folded into event-time buckets (reward, cost, errors, latency)."""

    bucket_ms: int = 10_000
    max_buckets: int = 360
    buckets: "OrderedDict[int, list[float]]" = field(default_factory=OrderedDict)  # start -> [n, reward, cost, err, lat]
    total: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0, 0.0])

    def add(self, outcome: Outcome) -> tuple[int, list[float]]:
        start = outcome.request_ts_ms - outcome.request_ts_ms % self.bucket_ms
        row = self.buckets.get(start)
        if row is None:
            row = self.buckets[start] = [0.0, 0.0, 0.0, 0.0, 0.0]
            while len(self.buckets) > self.max_buckets:
                self.buckets.popitem(last=False)
        is_error = 1.0 if outcome.status.value != "ok" else 0.0
        for target in (row, self.total):
            target[0] += 1
            target[1] += outcome.reward
            target[2] += outcome.cost_usd
            target[3] += is_error
            target[4] += outcome.latency_ms
        return start, row

    @staticmethod
    def point(start: int, row: list[float]) -> dict[str, float]:
        n = max(row[0], 1.0)
        return {"t": start, "n": row[0], "reward": row[1] / n, "cost_usd": row[2], "error_rate": row[3] / n,
                "latency_ms": row[4] / n}


class ConsoleViews:
    """Every view the console shows, bounded; ``apply`` returns the deltas to push.

    Args:
        approval_key: verifies approvals (``Settings.approval_key_bytes``).
        max_items: bound of each table (incidents, commands, insights, dead letters, timelines).

    >>> views = ConsoleViews(b"k" * 32)
    >>> from schemas.records import RouteProbability
    >>> policy = RoutingPolicy("wf", "default", 1_000, 3, "m1", (RouteProbability("a", 0.7, 0.8, 0.1, 40),))
    >>> [d["ch"] for d in views.apply("decisions.routing", policy, "p0@1")]
    ['routes', 'timeline']
    >>> views.page("routes", workflow="wf")["rows"][0]["routes"][0]["probability"]
    0.7
    """

    def __init__(self, approval_key: bytes, max_items: int = 500) -> None:
        self.max_items = max_items
        self.workflows: dict[str, dict[str, Any]] = {}
        self.routes: dict[str, dict[str, dict[str, Any]]] = {}  # workflow -> segment -> policy view
        self.timeline: dict[str, deque[dict[str, Any]]] = {}
        self.rollouts: dict[str, deque[dict[str, Any]]] = {}
        self.experiments: dict[str, dict[str, Any]] = {}
        self.experiment_history: dict[str, deque[dict[str, Any]]] = {}
        self.incidents: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.commands: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.book = ApprovalBook(approval_key, max_commands=max_items * 4)
        self.insights: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.dlq: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.spend: dict[str, float] = {}
        self.run = RunScore()
        self._scored: OrderedDict[str, None] = OrderedDict()
        self.records = 0
        #: The newest event time seen: states shown (expired or not) follow event time, so a
        #: simulation or a replay reads as it ran; capped by the wall clock the caller passes.
        self.watermark_ms = 0

    # ------------------------------------------------------------------ folding records in
    def apply(self, logical: str, record: Any, where: str = "", now_ms: int = 0) -> list[Delta]:
        """Fold one record of ``logical`` (``decisions.routing``, ``commands.remediation``…) in; its deltas."""
        self.records += 1
        self.watermark_ms = max(self.watermark_ms, getattr(record, "ts_ms", 0))
        handler = _HANDLERS.get(type(record))
        return handler(self, logical, record, where, now_ms) if handler is not None else []

    def _workflow(self, logical: str, d: WorkflowDefinition, where: str, now_ms: int) -> list[Delta]:
        view = {"workflow": d.workflow, "version": d.version, "ts_ms": d.ts_ms, "previous_version": d.previous_version,
                "budget_usd_per_hour": d.budget_usd_per_hour, "fallback_route": d.fallback_route,
                "routes": [{"name": r.name, "provider": r.provider, "cost_per_1k_in_usd": r.cost_per_1k_in_usd,
                            "capacity_rps": r.capacity_rps} for r in d.routes],
                "experiment": d.experiment.name if d.experiment else None,
                "spend_usd": self.spend.get(d.workflow, 0.0)}
        self.workflows[d.workflow] = view
        return [{"ch": "workflows", "key": d.workflow, "data": view}]

    def _policy(self, logical: str, p: RoutingPolicy, where: str, now_ms: int) -> list[Delta]:
        segments = self.routes.setdefault(p.workflow, {})
        before = segments.get(p.segment)
        view = {"workflow": p.workflow, "segment": p.segment, "ts_ms": p.ts_ms, "policy_version": p.policy_version,
                "model_version": p.model_version, "reasons": list(p.reasons), "excluded": dict(p.excluded),
                "routes": [{"route": r.route, "probability": r.probability, "expected_reward": r.expected_reward,
                            "reward_std": r.reward_std, "n": r.n} for r in p.routes]}
        segments[p.segment] = view
        out: list[Delta] = [{"ch": "routes", "key": f"{p.workflow}/{p.segment}", "data": view}]
        change = _policy_change(before, view)
        if change is not None:
            line = self.timeline.setdefault(p.workflow, deque(maxlen=self.max_items))
            line.append(change)
            out.append({"ch": "timeline", "key": p.workflow, "data": change})
        return out

    def _rollout(self, logical: str, s: RolloutStep, where: str, now_ms: int) -> list[Delta]:
        view = {"workflow": s.workflow, "version": s.version, "ts_ms": s.ts_ms, "step": s.step,
                "traffic_share": s.traffic_share, "verdict": s.verdict.value, "reason": s.reason, "topic": logical}
        self.rollouts.setdefault(s.workflow, deque(maxlen=50)).append(view)
        return [{"ch": "rollouts", "key": s.workflow, "data": view}]

    def _experiment(self, logical: str, e: ExperimentDecision, where: str, now_ms: int) -> list[Delta]:
        arms = [{"variant": a.variant, "allocation": a.allocation, "n": a.n, "mean": a.mean, "ci_low": a.ci_low,
                 "ci_high": a.ci_high, "p_best": a.p_best, "expected_loss": a.expected_loss, "status": a.status.value}
                for a in e.arms]
        view = {"experiment": e.experiment, "workflow": e.workflow, "ts_ms": e.ts_ms, "status": e.status.value,
                "srm_p_value": e.srm_p_value, "srm_ok": e.srm_p_value >= 0.001, "winner": e.winner,
                "decided_ts_ms": e.decided_ts_ms, "evidence": e.evidence, "arms": arms}
        self.experiments[e.experiment] = view
        point = {"ts_ms": e.ts_ms, "arms": {a["variant"]: [a["mean"], a["ci_low"], a["ci_high"]] for a in arms}}
        self.experiment_history.setdefault(e.experiment, deque(maxlen=self.max_items)).append(point)
        return [{"ch": "experiments", "key": e.experiment, "data": {**view, "point": point}}]

    def _incident(self, logical: str, i: Incident, where: str, now_ms: int) -> list[Delta]:
        known = self.incidents.get(i.incident_id, {})
        view = {"incident_id": i.incident_id, "ts_ms": i.ts_ms, "status": i.status.value, "severity": i.severity.value,
                "root_cause": i.root_cause, "started_ms": i.started_ms, "members": list(i.members),
                "anomaly_count": i.anomaly_count, "summary": i.summary, "resolved_ms": i.resolved_ms,
                "detected_ms": known.get("detected_ms", i.ts_ms), "mitigated_ms": known.get("mitigated_ms")}
        _bounded_put(self.incidents, i.incident_id, view, self.max_items)
        return [{"ch": "incidents", "key": i.incident_id, "data": view}]

    def _command(self, logical: str, c: Command, where: str, now_ms: int) -> list[Delta]:
        self.book.observe_command(c)
        out = []
        incident = self.incidents.get(c.incident_id or "")
        if incident is not None and incident.get("mitigated_ms") is None and not c.requires_approval:
            incident["mitigated_ms"] = c.ts_ms
            out.append({"ch": "incidents", "key": incident["incident_id"], "data": incident})
        view = {"command_id": c.command_id, "topic": logical, "ts_ms": c.ts_ms, "target": c.target,
                "action": c.action, "reason": c.reason, "params": dict(c.params), "incident_id": c.incident_id,
                "expires_ts_ms": c.expires_ts_ms, "issuer": c.issuer, "is_dry_run": c.is_dry_run,
                "requires_approval": c.requires_approval}
        _bounded_put(self.commands, c.command_id, view, self.max_items * 4)
        return [*out, {"ch": "commands", "key": c.command_id, "data": self.command_view(c.command_id, now_ms)}]

    def _approval(self, logical: str, a: Approval, where: str, now_ms: int) -> list[Delta]:
        self.book.observe_approval(a)
        if a.command_id not in self.commands:
            return []
        return [{"ch": "commands", "key": a.command_id, "data": self.command_view(a.command_id, now_ms)}]

    def _insight(self, logical: str, i: Insight, where: str, now_ms: int) -> list[Delta]:
        view = {"insight_id": i.insight_id, "ts_ms": i.ts_ms, "kind": i.kind, "subject": i.subject, "title": i.title,
                "body": i.body, "severity": i.severity.value}
        _bounded_put(self.insights, i.insight_id, view, self.max_items)
        return [{"ch": "insights", "key": i.insight_id, "data": view}]

    def _dead_letter(self, logical: str, d: DeadLetter, where: str, now_ms: int) -> list[Delta]:
        view = {"id": where, "source_topic": d.source_topic, "partition": d.partition, "offset": d.offset,
                "reason": d.reason, "error": d.error[:1_000], "ts_ms": d.ts_ms, "payload": _text(d.value),
                "key": _text(d.key, 200)}
        _bounded_put(self.dlq, where, view, self.max_items)
        return [{"ch": "dlq", "key": where, "data": view}]

    def _outcome(self, logical: str, o: Outcome, where: str, now_ms: int) -> list[Delta]:
        # Each request counts once, at its first outcome (provisional until feedback arrives, which
        # may take the workflow's feedback window): the scorecard moves with the traffic.
        if o.request_id in self._scored:
            return []
        _bounded_put(self._scored, o.request_id, None, 200_000)
        self.spend[o.workflow] = self.spend.get(o.workflow, 0.0) + o.cost_usd
        start, row = self.run.add(o)
        return [{"ch": "run", "key": str(start), "data": RunScore.point(start, row)}]

    # ------------------------------------------------------------------ reading views
    def command_view(self, command_id: str, now_ms: int) -> dict[str, Any]:
        """A command with its state (pending/approved/rejected/expired/issued) and who decided."""
        if self.watermark_ms:
            now_ms = min(now_ms, self.watermark_ms) if now_ms else self.watermark_ms
        view = dict(self.commands.get(command_id, {"command_id": command_id}))
        state = self.book.state(command_id, now_ms)
        if state is ApprovalState.NOT_REQUIRED:
            view["state"] = "expired" if view.get("expires_ts_ms", now_ms) < now_ms else "issued"
        else:
            view["state"] = state.value
        decided = self.book.decision(command_id)
        if decided is not None:
            view["decision"] = {"operator": decided.operator, "decision": decided.decision.value,
                                "ts_ms": decided.ts_ms, "reason": decided.reason}
        return view

    def page(self, name: str, *, workflow: str = "", offset: int = 0, limit: int = 50, query: str = "",
             now_ms: int = 0) -> dict[str, Any]:
        """One page of a view: ``{"rows": [...], "total": n}`` (plus view-specific parts)."""
        limit = max(1, min(limit, 500))
        if name == "routes":
            segments = self.routes.get(workflow, {})
            keys = sorted(k for k in segments if query.lower() in k.lower())
            return {"rows": [segments[k] for k in keys[offset:offset + limit]], "total": len(keys)}
        if name == "workflows":
            rows = []
            for wf in sorted(self.workflows):
                rollout = self.rollouts.get(wf)
                rows.append({**self.workflows[wf], "spend_usd": self.spend.get(wf, 0.0),
                             "segments": len(self.routes.get(wf, {})),
                             "rollout": rollout[-1] if rollout else None})
            for wf in sorted(set(self.routes) - set(self.workflows)):
                rows.append({"workflow": wf, "version": "?", "segments": len(self.routes[wf]), "routes": [],
                             "spend_usd": self.spend.get(wf, 0.0), "rollout": None})
            return {"rows": rows[offset:offset + limit], "total": len(rows)}
        if name == "timeline":
            rows = list(reversed(self.timeline.get(workflow, ())))
            return {"rows": rows[offset:offset + limit], "total": len(rows),
                    "rollouts": list(self.rollouts.get(workflow, ()))}
        if name == "experiments":
            rows = [{**v, "history": list(self.experiment_history.get(k, ()))} for k, v in sorted(self.experiments.items())]
            return {"rows": rows[offset:offset + limit], "total": len(rows)}
        if name == "commands":
            ids = list(reversed(self.commands))
            rows = [self.command_view(i, now_ms) for i in ids]
            pending = [r for r in rows if r["state"] == "pending"]
            return {"rows": rows[offset:offset + limit], "total": len(rows), "pending": pending}
        tables = {"incidents": self.incidents, "insights": self.insights, "dlq": self.dlq}
        if name in tables:
            rows = list(reversed(tables[name].values()))
            if name == "incidents":
                rows.sort(key=lambda r: r["status"] != IncidentStatus.FIRING.value)
            extra: dict[str, Any] = {}
            if name == "dlq":
                extra["by_reason"] = _count(r["reason"] for r in rows)
            return {"rows": rows[offset:offset + limit], "total": len(rows), **extra}
        if name == "run":
            points = [RunScore.point(s, r) for s, r in self.run.buckets.items()]
            return {"rows": points, "total": len(points), "scorecard": RunScore.point(0, self.run.total),
                    "incidents": [i for i in self.incidents.values()][-20:]}
        raise KeyError(f"no view {name!r}; views: {', '.join(CHANNELS)}")


def _count(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return counts


def _policy_change(before: dict[str, Any] | None, after: dict[str, Any], min_shift: float = 0.05
                   ) -> dict[str, Any] | None:
    """A timeline entry when the top route changed or a route's share moved by ``min_shift`` or more."""
    new = {r["route"]: r["probability"] for r in after["routes"]}
    old = {r["route"]: r["probability"] for r in before["routes"]} if before else {}
    moved = {r: round(new.get(r, 0.0) - old.get(r, 0.0), 4) for r in set(new) | set(old)
             if abs(new.get(r, 0.0) - old.get(r, 0.0)) >= min_shift}
    top_before = max(old, key=lambda r: old[r]) if old else None
    top_after = max(new, key=lambda r: new[r]) if new else None
    if not moved and top_before == top_after and set(after["excluded"]) == set((before or {}).get("excluded", {})):
        return None
    return {"ts_ms": after["ts_ms"], "workflow": after["workflow"], "segment": after["segment"],
            "policy_version": after["policy_version"], "top_before": top_before, "top_after": top_after,
            "moved": moved, "reasons": after["reasons"], "excluded": after["excluded"]}


_HANDLERS: dict[type, Any] = {
    WorkflowDefinition: ConsoleViews._workflow, RoutingPolicy: ConsoleViews._policy,
    RolloutStep: ConsoleViews._rollout, ExperimentDecision: ConsoleViews._experiment,
    Incident: ConsoleViews._incident, Command: ConsoleViews._command, Approval: ConsoleViews._approval,
    Insight: ConsoleViews._insight, DeadLetter: ConsoleViews._dead_letter, Outcome: ConsoleViews._outcome,
}
