"""What the environment has been told to do: circuits, scaling, shedding, rollbacks, routing and allocations.

The environment obeys, as a platform would: an open circuit gets no traffic
until closed or expired; a scale command changes capacity after its delay;
shedding rejects a fraction of low-priority requests on purpose; a rollback
sends a workflow's canary traffic back to the previous version.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from infra.simulator.truth import Truth
from schemas.records import Command, ExperimentDecision, RolloutStep, RoutingPolicy

F64 = npt.NDArray[np.float64]
_FOREVER = 2**62


@dataclass
class Shedding:
    """Reject ``fraction`` of requests with priority <= ``max_priority`` until ``until_ms``."""

    fraction: float
    max_priority: int
    until_ms: int


@dataclass
class ControlState:
    """Everything commands and decisions changed, read by the environment every slice."""

    truth: Truth
    open_until: F64 = field(init=False)
    scale: F64 = field(init=False)
    pending_scale: list[tuple[int, int, float]] = field(default_factory=list)
    shedding: dict[int, Shedding] = field(default_factory=dict)
    rolled_back: set[int] = field(default_factory=set)
    #: The canary's share per workflow as loopwise's rollout split says (overrides the timeline's plan).
    split_share: dict[int, float] = field(default_factory=dict)
    routing: dict[tuple[str, str], RoutingPolicy] = field(default_factory=dict)
    allocations: dict[int, F64] = field(default_factory=dict)
    experiment_decisions: dict[str, ExperimentDecision] = field(default_factory=dict)
    ignored: int = 0
    #: ``scale_to`` commands: (due ms, route, absolute scale) landing after their provisioning delay.
    pending_absolute: list[tuple[int, int, float]] = field(default_factory=list)
    #: ``release`` commands obeyed: (job id, attempt) → when (a repeated id is not released again).
    released_jobs: dict[tuple[str, int], int] = field(default_factory=dict)
    #: How long a replica takes to come up when a ``scale_to`` adds capacity.
    provisioning_delay_ms: int = 300_000

    def __post_init__(self) -> None:
        n = len(self.truth.routes)
        self.open_until, self.scale = np.zeros(n), np.ones(n)

    def _params(self, command: Command, key: str, default: float) -> float:
        try:
            return float(command.params.get(key, default))
        except ValueError:
            return default

    def apply_command(self, command: Command, now_ms: int) -> bool:
        """Obey ``command``; return ``False`` when it is ignored (dry run, expired, unknown, awaiting approval).

        A command that ``requires_approval`` is ignored like ``CommandClient`` holds it: the simulated
        platform has no operator to approve it (``LOOPWISE_RISKY_ACTIONS`` in a simulation shows what
        loopwise would have asked a person).
        """
        if command.is_dry_run or command.requires_approval or command.expires_ts_ms < now_ms:
            self.ignored += 1
            return False
        routes, wf = self.truth.route_index(command.target), self.truth.workflow_index(command.target)
        action = command.action
        if action == "open_circuit" and routes:
            self.open_until[routes] = command.expires_ts_ms if command.expires_ts_ms > 0 else _FOREVER
        elif action == "close_circuit" and routes:
            self.open_until[routes] = 0
        elif action in ("scale_up", "scale_down") and routes:
            factor = self._params(command, "factor", 2.0 if action == "scale_up" else 0.5)
            delay_ms = int(self._params(command, "delay_s", 60.0) * 1000)
            self.pending_scale.extend((now_ms + delay_ms, r, factor) for r in routes)
        elif action == "scale_to" and routes:
            # Absolute replicas of replica_rps each; more capacity arrives after the provisioning delay,
            # less is removed at once (as a platform releases a node).
            replicas, per_replica = self._params(command, "replicas", 1.0), self._params(command, "replica_rps", 0.0)
            for r in routes:
                base = float(self.truth.capacity[r])
                scale = replicas * per_replica / base if per_replica > 0 and base > 0 else replicas
                due = now_ms + (self.provisioning_delay_ms if scale > self.scale[r] else 0)
                self.pending_absolute.append((due, r, scale))
        elif action == "release":
            key = (command.target, int(self._params(command, "attempt", 1.0)))
            self.released_jobs.setdefault(key, now_ms)
        elif action == "shed_load":
            targets = range(len(self.truth.scenario.workflows)) if command.target == "*" else ([wf] if wf is not None else [])
            for w in targets:
                self.shedding[w] = Shedding(self._params(command, "fraction", 0.5),
                                            int(self._params(command, "max_priority", 1)), command.expires_ts_ms)
        elif action == "rollback" and wf is not None:
            self.rolled_back.add(wf)
        else:
            self.ignored += 1
            return False
        return True

    def apply_rollout(self, step: RolloutStep) -> None:
        """Serve the canary at the share of the newest rollout step (its split) from now on."""
        wf = self.truth.workflow_index(step.workflow)
        if wf is None:
            self.ignored += 1
            return
        self.split_share[wf] = step.traffic_share

    def apply_routing(self, policy: RoutingPolicy) -> None:
        """Keep the latest routing policy per (workflow, segment) to sample from."""
        key = (policy.workflow, policy.segment)
        current = self.routing.get(key)
        if current is None or current.policy_version <= policy.policy_version:
            self.routing[key] = policy

    def apply_experiment(self, decision: ExperimentDecision) -> None:
        """Use the decision's allocation for its workflow's variants from now on."""
        wf = self.truth.workflow_index(decision.workflow)
        if wf is None:
            self.ignored += 1
            return
        names = [v.name for v in self.truth.scenario.workflows[wf].variants]
        alloc = np.array([next((a.allocation for a in decision.arms if a.variant == n), 0.0) for n in names])
        if alloc.sum() > 0:
            self.allocations[wf] = np.cumsum(alloc / alloc.sum())
        self.experiment_decisions[decision.experiment] = decision

    def capacity_scale(self, now_ms: int) -> F64:
        """Capacity multipliers in force at ``now_ms`` (pending scale changes that have landed)."""
        due = [p for p in self.pending_scale if p[0] <= now_ms]
        for _, r, factor in due:
            self.scale[r] *= factor
        self.pending_scale = [p for p in self.pending_scale if p[0] > now_ms]
        for _, r, scale in sorted(p for p in self.pending_absolute if p[0] <= now_ms):
            self.scale[r] = scale
        self.pending_absolute = [p for p in self.pending_absolute if p[0] > now_ms]
        return self.scale

    def is_open(self, now_ms: int) -> npt.NDArray[np.bool_]:
        """Per route: whether its circuit is open at ``now_ms``."""
        return self.open_until > now_ms
