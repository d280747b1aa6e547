"""Feature flags declared in a workflow definition: targeting rules, a percentage rollout, sticky units.

``evaluate`` gives one flag's variant for one request: the first rule whose
context attribute matches wins; else the unit's keyed-hash bucket (the same
blake2b bucketing as version assignment, salted by the flag's name) falls in
one variant's share of the percentage rollout; else the default. The route
stage puts every flag of a request in its answer; ``RoutingClient`` and the
OpenFeature provider evaluate locally with the same function.
"""

from __future__ import annotations

from processors.experiments import unit_of
from processors.rollout.assign import bucket
from schemas.records import FlagSpec, RequestContext, WorkflowDefinition

#: Context fields a rule may name besides ``attributes`` keys.
_FIELDS = ("tenant", "task", "privacy_level", "priority", "user_id", "session_id")


def attribute_of(context: RequestContext, name: str) -> str | None:
    """A context field or attribute as text (None when absent)."""
    if name in _FIELDS:
        value = getattr(context, name)
        return None if value is None else str(value)
    return context.attributes.get(name)


def evaluate(flag: FlagSpec, workflow: str, context: RequestContext, request_id: str) -> str:
    """The variant of ``flag`` for one request.

    >>> from schemas.records import FlagRule, FlagShare
    >>> flag = FlagSpec("new-prompt", rules=(FlagRule("tenant", ("acme",), "on"),),
    ...                 rollout=(FlagShare("on", 0.1),), sticky_by="user")
    >>> evaluate(flag, "wf", RequestContext("acme", "chat", user_id="u1"), "r1")
    'on'
    >>> shares = [evaluate(flag, "wf", RequestContext("t", "chat", user_id=f"u{i}"), "r") for i in range(2000)]
    >>> 0.07 < shares.count("on") / 2000 < 0.13
    True
    """
    for rule in flag.rules:
        if attribute_of(context, rule.attribute) in rule.values:
            return rule.variant
    if flag.rollout:
        u = bucket(f"{workflow}|flag:{flag.name}", unit_of(context, request_id, flag.sticky_by))
        for share in flag.rollout:
            u -= share.share
            if u < 0:
                return share.variant
    return flag.default


def evaluate_all(definition: WorkflowDefinition | None, context: RequestContext, request_id: str) -> dict[str, str]:
    """Every flag of the workflow for one request (empty without a definition or flags)."""
    if definition is None:
        return {}
    return {flag.name: evaluate(flag, definition.workflow, context, request_id) for flag in definition.flags}
