"""``--policy loopwise``: the simulator driving the same processors a loopwise worker runs, in process.

Records flow as they would through Kafka: ``WorkflowDefinition`` →
``WorkflowRegistry`` and ``LearningCore.take_workflow``; ``RequestEvent`` /
``FeedbackEvent`` → ``OutcomeCorrelator`` → provisional and final
``Outcome`` → ``LearningCore`` (the class the worker's ``learn`` stage keeps per
partition: router, experiment engines); each ``RouteRequest`` → the core's
``Router.decide``.
Changed routing policies go back to the environment as actions, exactly as a
worker publishes them on ``lw.decisions.routing`` (the environment samples
from them only for requests the policy leaves open, which ``choose`` never
does). Detection and remediation belong to other processors: no commands.

Feedback window: the simulator's workflow definitions declare none, so a
worker would wait the 1 h default before learning any quality. The adapter
runs the correlator with ``feedback_window_s`` (default 300 s) instead, as a
workflow owner would set it for feedback that comes within minutes.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from infra.simulator.protocols import Action, Choice
from processors.correlation import OutcomeCorrelator
from processors.learning import LearningCore
from processors.routing import Router, RouterConfig
from processors.workflows import WorkflowRegistry
from schemas.records import Anomaly, Command, FeedbackEvent, RequestEvent, RouteRequest, WorkflowDefinition

IMPL = "loopwise-router v1"


class LoopwisePolicy:
    """A record-path ``Policy`` running ``OutcomeCorrelator`` and ``Router`` as a worker does.

    Args:
        seed: Seeds the router.
        config: Router settings (defaults when None).
        feedback_window_s: Feedback window the correlator uses (None: the definition's own).
        publish_policies: Return changed ``RoutingPolicy`` records as actions.
    """

    name = "loopwise"
    impl = IMPL

    def __init__(self, seed: int = 1, config: RouterConfig | None = None, feedback_window_s: float | None = 300.0,
                 publish_policies: bool = True) -> None:
        self.registry = WorkflowRegistry()
        self.core = LearningCore(self.registry, seed, config)
        self.correlator = OutcomeCorrelator(self.registry)
        self.feedback_window_s = feedback_window_s
        self.publish_policies = publish_policies
        self._last_definition: dict[str, WorkflowDefinition] = {}
        self.outcomes = 0
        self._now_ms = 0

    def choose(self, request: RouteRequest, workflow: WorkflowDefinition, now_ms: int) -> Choice:
        """Ask the router for one request's route."""
        if self._last_definition.get(workflow.workflow) is not workflow:
            self._take_definition(workflow)
        self._now_ms = max(self._now_ms, now_ms)
        decision = self.router.decide(request, now_ms)
        return Choice(decision.route or None)

    def observe(self, events: Sequence[object]) -> Sequence[Action]:
        """Correlate requests and feedback into outcomes, learn from them; return changed policies."""
        core, correlator = self.core, self.correlator
        for event in events:
            if isinstance(event, RequestEvent):
                outcome = correlator.on_request(event)
                if outcome is not None:
                    core.observe_outcome(outcome)
                    self.outcomes += 1
            elif isinstance(event, FeedbackEvent):
                correlator.on_feedback(event)
            elif isinstance(event, WorkflowDefinition):
                self._take_definition(event)
            elif isinstance(event, Anomaly):
                core.observe_anomaly(event)
            elif isinstance(event, Command):
                core.observe_command(event)
        for outcome in correlator.advance():
            core.observe_outcome(outcome)
            self.outcomes += 1
        if not self.publish_policies:
            return ()
        # Policies on the routing clock (request time): the watermark runs ahead by up to a timeout.
        return core.decisions(self._now_ms)[0]

    @property
    def router(self) -> Router:
        """The core's router (decides each request in process)."""
        return self.core.router

    def _take_definition(self, definition: WorkflowDefinition) -> None:
        self._last_definition[definition.workflow] = definition
        if self.feedback_window_s is not None:
            definition = dataclasses.replace(definition, feedback_window_s=self.feedback_window_s)
        self.registry.update(definition)
        self.core.take_workflow(definition)


def loopwise_policy(seed: int = 1) -> LoopwisePolicy:
    """The policy behind ``--policy loopwise``."""
    return LoopwisePolicy(seed)
