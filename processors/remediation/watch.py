"""What calls for shedding or rollback: sustained platform overload, and a workflow version that regresses.

``OverloadWatch`` reads ``queue_depth`` metrics per workflow (label
``workflow``) and calls a workflow overloaded when *every* route reporting for
it is queued past a threshold for ``sustain_ms``: one saturated route is a
routing problem, all of them is a capacity problem that shedding relieves.

``RegressionWatch`` compares a new workflow version with the one before it,
on failure rate (from requests) and on reward (from final outcomes): a
regression needs both a material size and a z-score past the threshold, so a
better or equal version is never rolled back on noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from schemas.records import MetricEvent, Outcome, RequestEvent, Status, WorkflowDefinition

_STALE_MS = 60_000


class OverloadWatch:
    """Per workflow: since when all of its routes have been queued past ``queue_depth``."""

    def __init__(self) -> None:
        self._depth: dict[str, dict[str, tuple[int, float]]] = {}  # workflow -> source -> (ts, depth)
        self._since: dict[str, int] = {}

    def observe(self, metric: MetricEvent, threshold: float) -> None:
        """Fold one ``queue_depth`` sample in (other metrics are ignored)."""
        if metric.name != "queue_depth":
            return
        workflow = metric.labels.get("workflow", "*")
        depths = self._depth.setdefault(workflow, {})
        depths[metric.source] = (metric.ts_ms, metric.value)
        fresh = [d for ts, d in depths.values() if ts > metric.ts_ms - _STALE_MS]
        if fresh and min(fresh) >= threshold:
            self._since.setdefault(workflow, metric.ts_ms)
        else:
            self._since.pop(workflow, None)

    def overloaded_since(self, workflow: str) -> int | None:
        """When the current overload of ``workflow`` began, or ``None``."""
        return self._since.get(workflow)

    def workflows(self) -> list[str]:
        """Workflows currently overloaded, sorted."""
        return sorted(self._since)

    def evidence(self, workflow: str) -> dict[str, float]:
        """The latest queue depth per source of ``workflow``."""
        return {source: depth for source, (_, depth) in sorted(self._depth.get(workflow, {}).items())}

    def snapshot(self) -> dict[str, Any]:
        """Plain JSON-able state."""
        return {"depth": {w: {s: list(v) for s, v in d.items()} for w, d in self._depth.items()},
                "since": dict(self._since)}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load what ``snapshot`` returned."""
        self._depth = {w: {s: (int(v[0]), float(v[1])) for s, v in d.items()} for w, d in state["depth"].items()}
        self._since = {w: int(t) for w, t in state["since"].items()}


@dataclass
class VersionStats:
    """Failures of requests and rewards of final outcomes of one workflow version."""

    requests: int = 0
    failures: int = 0
    rewards: int = 0
    reward_sum: float = 0.0
    reward_sq: float = 0.0

    def to_list(self) -> list[float]:
        return [self.requests, self.failures, self.rewards, self.reward_sum, self.reward_sq]


@dataclass
class Change:
    """A workflow moved from ``baseline`` to ``candidate`` at ``ts_ms``."""

    baseline: str
    candidate: str
    ts_ms: int
    is_rolled_back: bool = False


@dataclass(frozen=True, slots=True)
class Regression:
    """Why a candidate version is judged worse than its baseline."""

    workflow: str
    baseline: str
    candidate: str
    reason: str
    evidence: Mapping[str, float]


class RegressionWatch:
    """Per workflow: the latest version change and the evidence for or against it."""

    def __init__(self) -> None:
        self._stats: dict[tuple[str, str], VersionStats] = {}
        self._changes: dict[str, Change] = {}
        self._versions: dict[str, list[str]] = {}

    def observe_workflow(self, definition: WorkflowDefinition) -> None:
        """A new, never-seen version with a previous one is a change to watch; a return to a known one is not."""
        seen = self._versions.setdefault(definition.workflow, [])
        if definition.version in seen:
            return
        seen.append(definition.version)
        if definition.previous_version is not None and len(seen) > 1:
            self._changes[definition.workflow] = Change(definition.previous_version, definition.version,
                                                        definition.ts_ms)

    def observe_request(self, event: RequestEvent) -> None:
        """Count a request of its version (rejections are the platform's, not the version's)."""
        if event.status == Status.REJECTED:
            return
        stats = self._stats.setdefault((event.workflow, event.workflow_version), VersionStats())
        stats.requests += 1
        stats.failures += int(event.status in (Status.ERROR, Status.TIMEOUT))

    def observe_outcome(self, outcome: Outcome) -> None:
        """Count the reward of a final outcome of its version."""
        if not outcome.is_final:
            return
        stats = self._stats.setdefault((outcome.workflow, outcome.workflow_version), VersionStats())
        stats.rewards += 1
        stats.reward_sum += outcome.reward
        stats.reward_sq += outcome.reward * outcome.reward

    def check(self, workflow: str, *, min_samples: int, z: float, min_error_delta: float,
              max_regression: float) -> Regression | None:
        """The regression of ``workflow``'s current change, if the evidence shows one."""
        change = self._changes.get(workflow)
        if change is None or change.is_rolled_back:
            return None
        base = self._stats.get((workflow, change.baseline), VersionStats())
        cand = self._stats.get((workflow, change.candidate), VersionStats())
        if min(base.requests, cand.requests) >= min_samples:
            p1, p2 = base.failures / base.requests, cand.failures / cand.requests
            pooled = (base.failures + cand.failures) / (base.requests + cand.requests)
            se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / base.requests + 1 / cand.requests))
            if p2 - p1 >= min_error_delta and (p2 - p1) / se >= z:
                return Regression(workflow, change.baseline, change.candidate,
                                  f"failure rate {p1:.2%} -> {p2:.2%}",
                                  {"baseline_failure_rate": p1, "candidate_failure_rate": p2, "z": (p2 - p1) / se,
                                   "baseline_n": base.requests, "candidate_n": cand.requests})
        if min(base.rewards, cand.rewards) >= min_samples:
            m1, m2 = base.reward_sum / base.rewards, cand.reward_sum / cand.rewards
            v1 = max(base.reward_sq / base.rewards - m1 * m1, 1e-12)
            v2 = max(cand.reward_sq / cand.rewards - m2 * m2, 1e-12)
            score = (m1 - m2) / math.sqrt(v1 / base.rewards + v2 / cand.rewards)
            if (m1 - m2) >= max_regression * max(abs(m1), 1e-9) and score >= z:
                return Regression(workflow, change.baseline, change.candidate, f"reward {m1:.3f} -> {m2:.3f}",
                                  {"baseline_reward": m1, "candidate_reward": m2, "z": score,
                                   "baseline_n": base.rewards, "candidate_n": cand.rewards})
        return None

    def mark_rolled_back(self, workflow: str) -> None:
        """Stop judging ``workflow``'s current change (it has been rolled back)."""
        if workflow in self._changes:
            self._changes[workflow].is_rolled_back = True

    def change(self, workflow: str) -> Change | None:
        """The current change of ``workflow``, if any."""
        return self._changes.get(workflow)

    def workflows(self) -> list[str]:
        """Workflows with a change under watch, sorted."""
        return sorted(w for w, c in self._changes.items() if not c.is_rolled_back)

    def snapshot(self) -> dict[str, Any]:
        """Plain JSON-able state."""
        return {"stats": [[w, v, s.to_list()] for (w, v), s in self._stats.items()],
                "changes": {w: [c.baseline, c.candidate, c.ts_ms, c.is_rolled_back] for w, c in self._changes.items()},
                "versions": {w: list(v) for w, v in self._versions.items()}}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load what ``snapshot`` returned."""
        self._stats = {(w, v): VersionStats(int(s[0]), int(s[1]), int(s[2]), float(s[3]), float(s[4]))
                       for w, v, s in state["stats"]}
        self._changes = {w: Change(c[0], c[1], int(c[2]), bool(c[3])) for w, c in state["changes"].items()}
        self._versions = {w: list(v) for w, v in state["versions"].items()}
