"""The known workflow definitions, and the routing segment of a request."""

from __future__ import annotations

from schemas.records import Objective, RequestContext, WorkflowDefinition

DEFAULT_OBJECTIVE = Objective()
DEFAULT_WINDOW_S = 3600.0


def segment_of(context: RequestContext, keys: tuple[str, ...]) -> str:
    """A stable segment name from the context fields a workflow declares.

    >>> ctx = RequestContext(tenant="acme", task="summarize")
    >>> segment_of(ctx, ("task", "privacy_level"))
    'task=summarize|privacy_level=public'
    >>> segment_of(ctx, ())
    'all'
    """
    if not keys:
        return "all"
    parts = []
    for key in keys:
        value = getattr(context, key, None)
        if value is None:
            value = context.attributes.get(key, "")
        parts.append(f"{key}={value}")
    return "|".join(parts)


class WorkflowRegistry:
    """The latest definition of every workflow, and every version seen.

    >>> reg = WorkflowRegistry()
    >>> reg.objective("unknown") == DEFAULT_OBJECTIVE
    True
    """

    def __init__(self) -> None:
        self._latest: dict[str, WorkflowDefinition] = {}
        self._versions: dict[tuple[str, str], WorkflowDefinition] = {}

    def update(self, definition: WorkflowDefinition) -> bool:
        """Record a definition; True when it changes the latest one (older ``ts_ms`` loses)."""
        self._versions[(definition.workflow, definition.version)] = definition
        current = self._latest.get(definition.workflow)
        if current is not None and (current.ts_ms > definition.ts_ms or current == definition):
            return False
        self._latest[definition.workflow] = definition
        return True

    def get(self, workflow: str, version: str | None = None) -> WorkflowDefinition | None:
        if version is not None and (workflow, version) in self._versions:
            return self._versions[(workflow, version)]
        return self._latest.get(workflow)

    def objective(self, workflow: str) -> Objective:
        definition = self._latest.get(workflow)
        return definition.objective if definition else DEFAULT_OBJECTIVE

    def window_s(self, workflow: str) -> float:
        definition = self._latest.get(workflow)
        return definition.feedback_window_s if definition else DEFAULT_WINDOW_S

    def segment(self, workflow: str, context: RequestContext) -> str:
        definition = self._latest.get(workflow)
        keys = definition.context_keys if definition else ("task", "privacy_level")
        return segment_of(context, keys)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._latest.values())

    def __len__(self) -> int:
        return len(self._latest)
