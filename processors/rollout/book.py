"""What an application or the route stage needs to pick a request's workflow version: splits and workflows.

``VersionBook`` keeps the newest split of each workflow (``lw.rollouts.splits``)
and each workflow's latest definition (``lw.workflows``: its version, and the
rollout plan's ``sticky_by``), and answers ``version_for`` with
``assign_version``, so the route stage and ``RoutingClient`` agree request for
request.
"""

from __future__ import annotations

from processors.rollout.assign import assign_version
from processors.rollout.flags import evaluate_all
from schemas.records import RequestContext, RolloutStep, WorkflowDefinition


class VersionBook:
    """The newest split and definition per workflow; the version of one request.

    >>> from schemas.records import RolloutVerdict, RouteSpec, PrivacyLevel
    >>> book = VersionBook()
    >>> book.version_for("wf", RequestContext("t", "x"), "r1") is None
    True
    >>> book.update_workflow(WorkflowDefinition("wf", "v1", 0, ()))
    >>> book.version_for("wf", RequestContext("t", "x"), "r1")
    'v1'
    >>> book.update(RolloutStep("wf", "v2", 5, 1, 1.0, RolloutVerdict.PROMOTE, "", "{}", baseline_version="v1"))
    True
    >>> book.version_for("wf", RequestContext("t", "x"), "r1")
    'v2'
    """

    def __init__(self) -> None:
        self._splits: dict[str, RolloutStep] = {}
        self._definitions: dict[str, WorkflowDefinition] = {}

    def update(self, split: RolloutStep) -> bool:
        """Keep ``split`` unless an newer one of its workflow is known."""
        current = self._splits.get(split.workflow)
        if current is not None and current.ts_ms > split.ts_ms:
            return False
        self._splits[split.workflow] = split
        return True

    def update_workflow(self, definition: WorkflowDefinition) -> None:
        """Learn a workflow's latest version and stickiness (an older definition is ignored)."""
        current = self._definitions.get(definition.workflow)
        if current is None or current.ts_ms <= definition.ts_ms:
            self._definitions[definition.workflow] = definition

    def flags_for(self, workflow: str, context: RequestContext, request_id: str) -> dict[str, str]:
        """Every feature flag of the workflow's latest definition for one request (flag -> variant)."""
        return evaluate_all(self._definitions.get(workflow), context, request_id)

    def definition(self, workflow: str) -> WorkflowDefinition | None:
        return self._definitions.get(workflow)

    def split(self, workflow: str) -> RolloutStep | None:
        return self._splits.get(workflow)

    def version_for(self, workflow: str, context: RequestContext, request_id: str) -> str | None:
        """The version ``request_id`` runs under: by the split, else the latest definition's (None: unknown)."""
        definition, split = self._definitions.get(workflow), self._splits.get(workflow)
        if definition is None:
            return assign_version(split, context, request_id)
        sticky_by = definition.rollout.sticky_by if definition.rollout is not None else None
        if split is not None and definition.version in (split.version, split.baseline_version):
            return assign_version(split, context, request_id, sticky_by, definition.version)
        if definition.rollout is None:
            return definition.version  # no plan: live at once
        # A planned version whose canary has not started yet: traffic stays where it was.
        if split is not None:
            return assign_version(split, context, request_id, sticky_by, definition.previous_version)
        return definition.previous_version or definition.version
