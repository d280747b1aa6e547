"""``--policy loopwise`` until the routing processor lands: a documented epsilon-greedy fallback.

The fallback is a record-path policy, so it exercises the same seam the real
processors will use: it sees ``RouteRequest``/``WorkflowDefinition`` per
request and learns only from produced records.

How it learns, per (segment, route):

* latency, cost and failures are known when the ``RequestEvent`` arrives;
* quality is learned from delayed feedback (thumbs: 0/1, rating: (v-1)/4) and
  starts at the route's ``prior_quality``;
* the estimate of a request's reward is ``processors.reward.reward`` with the
  current quality estimate; the policy keeps a running mean of it.

It explores with probability ``epsilon`` (seeded), otherwise exploits the
best mean among routes allowed by privacy and capability. Reports mark its
runs ``"policy_impl": "fallback-epsilon-greedy"``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import numpy as np

from infra.simulator.protocols import Action, Choice, Policy
from infra.simulator.telemetry import segment_of
from processors.reward import reward
from schemas.records import (
    PRIVACY_RANK, FeedbackEvent, FeedbackKind, Objective, RequestEvent, RouteRequest, Status, WorkflowDefinition,
)

_MAX_PENDING = 200_000


class EpsilonGreedyFallback:
    """Epsilon-greedy on observed reward per (segment, route), under the hard constraints."""

    name = "loopwise"
    impl = "fallback-epsilon-greedy"

    def __init__(self, seed: int = 1, epsilon: float = 0.1) -> None:
        self.epsilon = epsilon
        self._rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0x100F,)))
        self._reward: dict[tuple[str, str], tuple[float, int]] = {}
        self._quality: dict[tuple[str, str], tuple[float, int]] = {}
        self._pending: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._objectives: dict[str, Objective] = {}
        self._priors: dict[tuple[str, str], float] = {}
        self._keys: dict[str, tuple[str, ...]] = {}

    def choose(self, request: RouteRequest, workflow: WorkflowDefinition, now_ms: int) -> Choice:
        """Explore with probability epsilon, else the best estimated reward; never break a constraint."""
        self._objectives[workflow.workflow] = workflow.objective
        self._keys[workflow.workflow] = workflow.context_keys
        rank = PRIVACY_RANK[request.context.privacy_level]
        allowed = [r for r in workflow.routes
                   if PRIVACY_RANK[r.max_privacy] >= rank and (not r.capabilities or request.context.task in r.capabilities)]
        if not allowed:
            return Choice(None)
        segment = segment_of(request.context, workflow.context_keys)
        for r in allowed:
            self._priors.setdefault((segment, r.name), r.prior_quality)
        if self._rng.random() < self.epsilon:
            return Choice(allowed[int(self._rng.integers(len(allowed)))].name)
        # Unseen routes score +inf so each is tried once before exploiting.
        best = max(allowed, key=lambda r: self._reward.get((segment, r.name), (float("inf"), 0))[0])
        return Choice(best.name)

    def observe(self, events: Sequence[object]) -> Sequence[Action]:
        """Learn from requests (latency, cost, failures) and feedback (quality); issue no commands."""
        for event in events:
            if isinstance(event, RequestEvent) and event.status != Status.REJECTED:
                self._on_request(event)
            elif isinstance(event, FeedbackEvent):
                self._on_feedback(event)
        return ()

    def _on_request(self, event: RequestEvent) -> None:
        segment = segment_of(event.context, self._keys.get(event.workflow, ("task", "privacy_level")))
        key = (segment, event.route)
        self._pending[event.request_id] = key
        if len(self._pending) > _MAX_PENDING:
            self._pending.popitem(last=False)
        quality = self._quality.get(key, (self._priors.get(key, 0.7), 0))[0]
        objective = self._objectives.get(event.workflow, Objective())
        value = reward(quality, event.latency_ms, event.cost_usd, event.status != Status.OK, objective).total
        mean, n = self._reward.get(key, (0.0, 0))
        self._reward[key] = (mean + (value - mean) / (n + 1), n + 1)

    def _on_feedback(self, event: FeedbackEvent) -> None:
        key = self._pending.get(event.request_id)
        if key is None or event.kind not in (FeedbackKind.THUMBS, FeedbackKind.RATING):
            return
        observed = event.value if event.kind == FeedbackKind.THUMBS else (event.value - 1.0) / 4.0
        mean, n = self._quality.get(key, (self._priors.get(key, 0.7), 0))
        self._quality[key] = (mean + (observed - mean) / (n + 1), n + 1)


def loopwise_policy(seed: int = 1) -> Policy:
    """The policy behind ``--policy loopwise``: the routing processor once it exists, the fallback until then."""
    return EpsilonGreedyFallback(seed)
