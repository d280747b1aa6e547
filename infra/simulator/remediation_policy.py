"""A record-path policy that routes with the ``loopwise`` fallback and heals with the ``Remediator``.

It exists so the remediation processor can be measured in the simulator: the
epsilon-greedy fallback picks routes; every record the environment produces
also goes to a ``Remediator`` (requests, metrics, workflow definitions, and
anomalies/incidents/outcomes should a caller feed them), and the commands it
returns at the latest event time seen are handed back as actions, which the
environment obeys as a platform would (``infra.simulator.control``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from infra.simulator.fallback import EpsilonGreedyFallback
from infra.simulator.protocols import Action, Choice
from processors.remediation import BreakerState, Remediator, RemediatorConfig
from schemas.records import Command, RouteRequest, WorkflowDefinition

BENCH_KEY = b"loopwise-bench-signing-key-0123456789"


class RemediationPolicy:
    """Epsilon-greedy routing plus self-healing commands.

    Args:
        seed: seed of the routing fallback.
        remediator: the remediator to drive (default: one signing with ``BENCH_KEY``).
    """

    name = "loopwise-remediation"
    impl = "fallback-epsilon-greedy+remediator"

    def __init__(self, seed: int = 1, remediator: Remediator | None = None) -> None:
        self.router = EpsilonGreedyFallback(seed)
        self.remediator = remediator or Remediator(BENCH_KEY, RemediatorConfig(issuer="bench"))
        self.commands: list[Command] = []
        self._now_ms = 0
        self._filtered: dict[tuple[object, ...], WorkflowDefinition] = {}

    def choose(self, request: RouteRequest, workflow: WorkflowDefinition, now_ms: int) -> Choice:
        """Route as the ``loopwise`` fallback does (the environment skips open circuits)."""
        # Arrival times are the environment's clock; finished requests carry later times
        # (a timeout ends 30 s on), so they would run the remediator's clock ahead.
        self._now_ms = max(self._now_ms, now_ms)
        return self.router.choose(request, self._serving(workflow), now_ms)

    def _serving(self, workflow: WorkflowDefinition) -> WorkflowDefinition:
        # The router must not pick a route whose circuit it was told is open: the gateway
        # would send that request to the fallback route, piling every such request on one route.
        is_open = tuple(self.remediator.breaker_state(r.name) is BreakerState.OPEN for r in workflow.routes)
        if not any(is_open) or all(is_open):
            return workflow
        key = (workflow.workflow, workflow.version, workflow.ts_ms, is_open)
        cached = self._filtered.get(key)
        if cached is None:
            routes = tuple(r for r, closed in zip(workflow.routes, is_open) if not closed)
            cached = self._filtered[key] = replace(workflow, routes=routes)
            if len(self._filtered) > 64:
                self._filtered.pop(next(iter(self._filtered)))
        return cached

    def observe(self, events: Sequence[object]) -> Sequence[Action]:
        """Learn routing, feed the remediator, and return the commands due at the latest event time."""
        self.router.observe(events)
        for event in events:
            self.remediator.observe(event)
        commands = self.remediator.advance(self._now_ms)
        self.commands.extend(commands)
        return commands

