"""``PolicyBook``: answers route requests from the decisions loopwise published, nothing else.

The book keeps the newest routing policy per workflow × segment (from
``lw.decisions.routing``), the newest decision of every experiment (from
``lw.decisions.experiments``) and each workflow's segment keys (from
``lw.workflows``). It picks a route for a request by the policy's
probabilities with a keyed hash of the request id (the same request always
gets the same route) and a prompt variant by the experiment's published split,
sticky per unit. The ``route`` stage and ``RoutingClient`` both answer from it,
so an application that routes locally and one that asks the worker get the
same answer, whichever worker learned the policy.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from processors.experiments.allocation import bucket, pick
from processors.experiments.engine import unit_of
from processors.routing.constraints import exclusion
from processors.workflows import segment_of
from schemas.records import (
    ExperimentDecision, ExperimentStatus, RequestContext, RouteDecision, RouteRequest, RoutingPolicy,
    WorkflowDefinition,
)


class PolicyBook:
    """The newest routing policy per workflow × segment, and a deterministic pick by its probabilities.

    >>> from schemas.records import RouteProbability
    >>> book = PolicyBook()
    >>> book.update(RoutingPolicy("wf", "all", 1, 3, "m1", (RouteProbability("a", 0.0, 0.5, 0.1, 10),
    ...                                                   RouteProbability("b", 1.0, 0.6, 0.1, 10))))
    True
    >>> book.choose("wf", RequestContext(tenant="t", task="x"), "r1", default="a")
    'b'
    >>> book.choose("other", RequestContext(tenant="t", task="x"), "r1", default="a")
    'a'
    """

    def __init__(self) -> None:
        self._policies: dict[tuple[str, str], RoutingPolicy] = {}
        self._keys: dict[str, tuple[str, ...]] = {}
        self._definitions: dict[str, WorkflowDefinition] = {}
        self._sticky: dict[str, str | None] = {}  # experiment -> sticky_by
        self._experiments: dict[str, ExperimentDecision] = {}  # workflow -> its running experiment's decision

    def update(self, policy: RoutingPolicy) -> bool:
        """Keep ``policy`` unless a newer version of the same workflow × segment is known."""
        key = (policy.workflow, policy.segment)
        current = self._policies.get(key)
        if current is not None and (current.policy_version, current.ts_ms) > (policy.policy_version, policy.ts_ms):
            return False
        self._policies[key] = policy
        return True

    def update_workflow(self, definition: WorkflowDefinition) -> None:
        """Learn which context fields make a workflow's segments, and how its experiment buckets units."""
        current = self._definitions.get(definition.workflow)
        if current is not None and current.ts_ms > definition.ts_ms:
            return
        self._definitions[definition.workflow] = definition
        self._keys[definition.workflow] = definition.context_keys
        if definition.experiment is not None:
            self._sticky[definition.experiment.name] = definition.experiment.sticky_by

    def update_experiment(self, decision: ExperimentDecision) -> bool:
        """Keep the newest decision of a workflow's experiment (older ones are ignored)."""
        current = self._experiments.get(decision.workflow)
        if current is not None and current.experiment == decision.experiment and current.ts_ms > decision.ts_ms:
            return False
        self._experiments[decision.workflow] = decision
        return True

    def policy_for(self, workflow: str, context: RequestContext) -> RoutingPolicy | None:
        """The policy covering ``context``'s segment (or the workflow's ``all`` segment)."""
        keys = self._keys.get(workflow, ("task", "privacy_level"))
        return self._policies.get((workflow, segment_of(context, keys))) or self._policies.get((workflow, "all"))

    def choose(self, workflow: str, context: RequestContext, request_id: str, default: str | None = None) -> str | None:
        """The route for one request; ``default`` when no policy covers its segment yet."""
        policy = self.policy_for(workflow, context)
        if policy is None:
            return default
        found = _pick_route(policy, request_id)
        return default if found is None else found[0]

    def variant(self, workflow: str, context: RequestContext, request_id: str) -> str | None:
        """The prompt variant of one request under its workflow's published experiment split (None: none)."""
        decision = self._experiments.get(workflow)
        if decision is None or not decision.arms:
            return None
        if decision.status is not ExperimentStatus.RUNNING and decision.winner is not None:
            return decision.winner
        unit = unit_of(context, request_id, self._sticky.get(decision.experiment))
        shares = [arm.allocation for arm in decision.arms]
        if sum(shares) <= 0:
            return None
        return pick(bucket(decision.experiment, unit), [arm.variant for arm in decision.arms], shares)

    def decide(self, request: RouteRequest) -> RouteDecision:
        """The full answer to a route request: route, probability, policy version, variant and why.

        A policy's probabilities are followed among the routes this request may use (privacy
        level and task are checked per request, whatever segment the policy covers).
        """
        policy = self.policy_for(request.workflow, request.context)
        variant = self.variant(request.workflow, request.context, request.request_id)
        if policy is None:
            return self._before_any_policy(request, variant)
        definition = self._definitions.get(request.workflow)
        if definition is not None:
            allowed = {r.name for r in definition.routes
                       if exclusion(r, request.context.privacy_level, request.context.task) is None}
            routes = tuple(r for r in policy.routes if r.route in allowed)
            if len(routes) != len(policy.routes):
                policy = replace(policy, routes=routes)
        found = _pick_route(policy, request.request_id)
        if found is None:
            return RouteDecision(request.request_id, request.ts_ms, request.workflow, policy.segment, "", 0.0,
                                 policy.policy_version, "no route: every route excluded", variant)
        route, probability = found
        return RouteDecision(request.request_id, request.ts_ms, request.workflow, policy.segment, route, probability,
                             policy.policy_version, f"policy {policy.model_version} v{policy.policy_version}", variant)

    def _before_any_policy(self, request: RouteRequest, variant: str | None) -> RouteDecision:
        """No policy covers this segment yet: the route its definition rates best among those allowed.

        A new segment learns only from requests that were routed, so it must get an answer.
        """
        definition = self._definitions.get(request.workflow)
        segment = segment_of(request.context, self._keys.get(request.workflow, ("task", "privacy_level")))
        if definition is None:
            return RouteDecision(request.request_id, request.ts_ms, request.workflow, "", "", 0.0, 0,
                                 "no route: unknown workflow", variant)
        allowed = [r for r in definition.routes
                   if exclusion(r, request.context.privacy_level, request.context.task) is None]
        if not allowed:
            return RouteDecision(request.request_id, request.ts_ms, request.workflow, segment, "", 0.0, 0,
                                 "no route: every route excluded by privacy or capability", variant)
        best = max(allowed, key=lambda r: (r.prior_quality, -r.cost_per_1k_in_usd))
        return RouteDecision(request.request_id, request.ts_ms, request.workflow, segment, best.name, 1.0, 0,
                             "no policy for this segment yet: the allowed route with the best prior quality", variant)

    def __len__(self) -> int:
        return len(self._policies)


def _pick_route(policy: RoutingPolicy, request_id: str) -> tuple[str, float] | None:
    total = sum(r.probability for r in policy.routes)
    if total <= 0:
        return None
    u = _unit(f"{policy.workflow}|{request_id}") * total
    for route in policy.routes:
        u -= route.probability
        if u < 0:
            return route.route, route.probability / total
    last = policy.routes[-1]
    return last.route, last.probability / total


def _unit(text: str) -> float:
    digest = hashlib.blake2b(text.encode(), digest_size=8, person=b"lw-route").digest()
    return int.from_bytes(digest, "big") / 2**64
