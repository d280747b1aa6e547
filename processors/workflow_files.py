"""Workflows as code: a definition file's checks, its backward compatibility with the live version, its diff.

A workflow file (YAML, read by the CLI) holds the fields of a
``WorkflowDefinition`` (``ts_ms`` and ``previous_version`` are filled in when it
is published). ``check_definition`` finds what makes a definition unusable on
its own (references, privacy and capability consistency, the rollout plan);
``check_compatibility`` what would break things running against the live
version; ``diff`` says what changed, field by field.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import orjson

from schemas.records import PRIVACY_RANK, PrivacyLevel, WorkflowDefinition
from schemas.serde import SchemaError, json_codec

_CODEC = json_codec(WorkflowDefinition, max_event_bytes=1 << 20)


class WorkflowFileError(ValueError):
    """A workflow file is not a valid definition (schema errors, with the field)."""


def parse_definition(data: Mapping[str, Any], ts_ms: int = 0) -> WorkflowDefinition:
    """The definition a file's mapping describes, validated by the ``lw.workflows`` schema.

    >>> d = parse_definition({"workflow": "wf", "version": "v1", "routes": [
    ...     {"name": "a", "provider": "p", "is_local": False, "max_privacy": "public",
    ...      "cost_per_1k_in_usd": 0.001, "cost_per_1k_out_usd": 0.002}]})
    >>> d.workflow, d.version, d.routes[0].max_privacy
    ('wf', 'v1', <PrivacyLevel.PUBLIC: 'public'>)
    """
    body = {"ts_ms": ts_ms, **dict(data)}
    try:
        return _CODEC.decode(orjson.dumps(body))
    except (SchemaError, TypeError) as exc:
        raise WorkflowFileError(str(exc)) from exc


def as_plain(definition: WorkflowDefinition) -> dict[str, Any]:
    """The definition as plain JSON data, without the publication fields (what a file holds)."""
    plain: dict[str, Any] = orjson.loads(_CODEC.encode(definition))
    for key in ("ts_ms", "previous_version"):
        plain.pop(key, None)
    return plain


def same_content(a: WorkflowDefinition, b: WorkflowDefinition) -> bool:
    """Whether two definitions differ only in version and publication fields."""
    left, right = as_plain(a), as_plain(b)
    left.pop("version"), right.pop("version")
    return left == right


def check_definition(d: WorkflowDefinition) -> list[str]:
    """What is wrong with a definition on its own (empty: nothing).

    >>> from schemas.records import RouteSpec, RolloutPlan
    >>> r = RouteSpec("a", "p", False, PrivacyLevel.PUBLIC, 0.001, 0.001)
    >>> check_definition(WorkflowDefinition("wf", "v1", 0, (r, r), fallback_route="b", rollout=RolloutPlan((0.5, 0.2))))
    ["route 'a' is declared twice", "fallback_route 'b' is not one of the routes", 'rollout steps must rise within (0, 1]: [0.5, 0.2]']
    """
    problems: list[str] = []
    names = [r.name for r in d.routes]
    if not d.routes:
        problems.append("no route: a workflow needs at least one")
    problems += [f"route {n!r} is declared twice" for n in sorted({n for n in names if names.count(n) > 1})]
    if d.fallback_route is not None and d.fallback_route not in names:
        problems.append(f"fallback_route {d.fallback_route!r} is not one of the routes")
    top = max((PRIVACY_RANK[r.max_privacy] for r in d.routes), default=0)
    if d.fallback_route in names:
        fallback = next(r for r in d.routes if r.name == d.fallback_route)
        if PRIVACY_RANK[fallback.max_privacy] < top:
            problems.append(f"fallback_route {fallback.name!r} serves up to {fallback.max_privacy}, less than the "
                            f"workflow's routes: requests it falls back for could leak")
    for r in d.routes:
        if r.cost_per_1k_in_usd < 0 or r.cost_per_1k_out_usd < 0:
            problems.append(f"route {r.name!r} has a negative price")
        if r.capacity_rps is not None and r.capacity_rps <= 0:
            problems.append(f"route {r.name!r} has capacity_rps {r.capacity_rps}: must be positive")
    variants = [v.name for v in d.variants]
    problems += [f"variant {n!r} is declared twice" for n in sorted({n for n in variants if variants.count(n) > 1})]
    if d.experiment is not None and len(d.variants) < 2:
        problems.append(f"experiment {d.experiment.name!r} needs at least two variants")
    if d.rollout is not None:
        steps = list(d.rollout.steps)
        if not steps or any(not 0 < s <= 1 for s in steps) or steps != sorted(steps):
            problems.append(f"rollout steps must rise within (0, 1]: {steps}")
        if d.rollout.step_duration_s <= 0 or not 0 < d.rollout.max_regression < 1:
            problems.append("rollout step_duration_s must be positive and max_regression in (0, 1)")
    return problems


def check_compatibility(live: WorkflowDefinition, new: WorkflowDefinition,
                        running_experiments: frozenset[str] = frozenset(),
                        privacy_in_use: frozenset[PrivacyLevel] = frozenset()) -> list[str]:
    """What the new version would break against the live one (empty: nothing).

    Args:
        live: The version serving now.
        new: The version to publish.
        running_experiments: Experiments whose latest decision says ``running``.
        privacy_in_use: Privacy levels recent requests of this workflow carried (tenants that need them).

    >>> from schemas.records import RouteSpec, VariantSpec, ExperimentSpec
    >>> a = RouteSpec("a", "p", False, PrivacyLevel.RESTRICTED, 0.001, 0.001)
    >>> b = RouteSpec("b", "p", False, PrivacyLevel.PUBLIC, 0.001, 0.001)
    >>> live = WorkflowDefinition("wf", "v1", 0, (a, b), (VariantSpec("x"), VariantSpec("y")),
    ...                           context_keys=("task", "tenant"), experiment=ExperimentSpec("e"))
    >>> new = WorkflowDefinition("wf", "v2", 0, (b,), (VariantSpec("x"),), context_keys=("task",))
    >>> for p in check_compatibility(live, new, frozenset({"e"})): print(p)
    privacy level restricted is served by v1 (route a) but by no route of v2
    context key 'tenant' removed: the published policies' segments depend on it
    variant 'y' removed while experiment 'e' is running
    """
    problems: list[str] = []
    if new.workflow != live.workflow:
        problems.append(f"workflow renamed {live.workflow!r} -> {new.workflow!r}: publish it as a new workflow")
    new_top = max((PRIVACY_RANK[r.max_privacy] for r in new.routes), default=-1)
    needed = set(privacy_in_use) | {r.max_privacy for r in live.routes}
    for level in sorted(needed, key=lambda p: PRIVACY_RANK[p]):
        if PRIVACY_RANK[level] > new_top:
            served_by = [r.name for r in live.routes if PRIVACY_RANK[r.max_privacy] >= PRIVACY_RANK[level]]
            why = f"route {', '.join(served_by)}" if served_by else "recent requests"
            problems.append(f"privacy level {level} is served by {live.version} ({why}) but by no route of {new.version}")
    problems += [f"context key {k!r} removed: the published policies' segments depend on it"
                 for k in live.context_keys if k not in new.context_keys]
    if live.experiment is not None and live.experiment.name in running_experiments:
        kept = {v.name for v in new.variants}
        problems += [f"variant {v.name!r} removed while experiment {live.experiment.name!r} is running"
                     for v in live.variants if v.name not in kept]
    if live.feedback_window_s > new.feedback_window_s * 4:
        problems.append(f"feedback_window_s shrinks {live.feedback_window_s} -> {new.feedback_window_s}: "
                        f"feedback still on its way for live requests would be refused")
    return problems


def diff(live: WorkflowDefinition | None, new: WorkflowDefinition) -> list[str]:
    """What changes, one line per top-level field (``+`` added, ``-`` removed, ``~`` changed).

    >>> from schemas.records import RouteSpec
    >>> r = RouteSpec("a", "p", False, PrivacyLevel.PUBLIC, 0.001, 0.001)
    >>> diff(WorkflowDefinition("wf", "v1", 0, (r,)), WorkflowDefinition("wf", "v2", 0, (r,), budget_usd_per_hour=5.0))
    ['~ version: v1 -> v2', '~ budget_usd_per_hour: None -> 5.0']
    """
    new_plain = as_plain(new)
    if live is None:
        return [f"+ {new.workflow} {new.version} (new workflow)"]
    live_plain = as_plain(live)
    lines = []
    for field in (f.name for f in dataclasses.fields(WorkflowDefinition)):
        if field not in new_plain or live_plain.get(field) == new_plain.get(field):
            continue
        if field == "routes":
            lines += _named_diff("route", live_plain[field], new_plain[field])
        elif field == "variants":
            lines += _named_diff("variant", live_plain[field], new_plain[field])
        else:
            lines.append(f"~ {field}: {_short(live_plain.get(field))} -> {_short(new_plain.get(field))}")
    return lines


def _named_diff(kind: str, old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    before, after = {x["name"]: x for x in old}, {x["name"]: x for x in new}
    lines = [f"- {kind} {n}" for n in before if n not in after] + [f"+ {kind} {n}" for n in after if n not in before]
    for name in (n for n in after if n in before and before[n] != after[n]):
        changed = [f"{k}: {_short(before[name].get(k))} -> {_short(v)}" for k, v in after[name].items()
                   if before[name].get(k) != v]
        lines.append(f"~ {kind} {name}: " + "; ".join(changed))
    return lines


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode() if value is not None else "None"
    return text if len(text) <= 80 else text[:77] + "..."
