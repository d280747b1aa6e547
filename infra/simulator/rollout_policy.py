"""Record-path policies for canaries: loopwise's rollout controller in process, and "deploy and hope".

Both route with the epsilon-greedy fallback, so on a canary scenario they
differ only in how the new version's traffic moves:

* ``RolloutPolicy`` feeds every record the environment produces through the
  product's ``OutcomeCorrelator`` (requests + feedback → provisional and final
  outcomes) into a ``RolloutController``, and hands each step it decides back
  as an action: the environment then serves the canary at the step's share
  (``ControlState.apply_rollout``), assigning each request with the product's
  sticky hash. This is the worker's rollout stage without Kafka: fast enough
  for many seeds; ``tests/integration/test_rollouts.py`` runs the stage itself.
* ``DeployAndHopePolicy`` returns no actions: the canary follows the plan's
  schedule (``steps`` every ``step_duration``) to 100 % and is never rolled back.
"""

from __future__ import annotations

from typing import Sequence

from infra.simulator.fallback import EpsilonGreedyFallback
from infra.simulator.protocols import Action, Choice
from processors.correlation import OutcomeCorrelator
from processors.rollout import RolloutController, VerdictConfig
from processors.workflows import WorkflowRegistry
from schemas.records import FeedbackEvent, RequestEvent, RolloutStep, RouteRequest, WorkflowDefinition

BENCH_KEY = b"loopwise-bench-signing-key-0123456789"


class DeployAndHopePolicy:
    """Epsilon-greedy routing; the canary steps on schedule and is never rolled back."""

    name = "deploy-and-hope"
    impl = "fallback-epsilon-greedy, canary on the plan's schedule"

    def __init__(self, seed: int = 1) -> None:
        self.router = EpsilonGreedyFallback(seed)

    def choose(self, request: RouteRequest, workflow: WorkflowDefinition, now_ms: int) -> Choice:
        return self.router.choose(request, workflow, now_ms)

    def observe(self, records: Sequence[object]) -> Sequence[Action]:
        return list(self.router.observe(records))


class RolloutPolicy(DeployAndHopePolicy):
    """Epsilon-greedy routing; the canary's share is what loopwise's ``RolloutController`` decides."""

    name = "loopwise-rollout"
    impl = "fallback-epsilon-greedy + OutcomeCorrelator + RolloutController"

    def __init__(self, seed: int = 1, config: VerdictConfig = VerdictConfig()) -> None:
        super().__init__(seed)
        self.registry = WorkflowRegistry()
        self.correlator = OutcomeCorrelator(self.registry)
        self.controller = RolloutController(BENCH_KEY, "bench", config)
        self.steps: list[RolloutStep] = []
        self._now_ms = 0

    def observe(self, records: Sequence[object]) -> Sequence[Action]:
        actions: list[Action] = list(self.router.observe(records))
        found: list[RolloutStep] = []
        for record in records:
            if isinstance(record, WorkflowDefinition):
                self.registry.update(record)
                found.extend(self.controller.on_definition(record, max(self._now_ms, record.ts_ms)).steps)
            elif isinstance(record, RequestEvent):
                self._now_ms = max(self._now_ms, record.ts_ms)
                outcome = self.correlator.on_request(record)
                if outcome is not None:
                    self.controller.observe(outcome)
            elif isinstance(record, FeedbackEvent):
                self.correlator.on_feedback(record)
        for outcome in self.correlator.advance():
            self.controller.observe(outcome)
        if self._now_ms:
            found.extend(self.controller.advance(self._now_ms).steps)
        self.steps.extend(found)
        actions.extend(found)
        return actions
