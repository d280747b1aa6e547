"""Load scenario YAML files (built-in or user-given) into validated ``Scenario`` objects.

A file may start with ``extends: <built-in name>``: it is deep-merged over that
scenario (mappings merge key by key, lists of mappings with a ``name`` merge
item by name, other lists and scalars replace). Unknown keys
are errors, and every error names its key path, e.g.
``workflows[0].routes[1].latency.median_ms: expected a number, got 'fast'``.
Durations accept ``30s``/``20m``/``2h`` or seconds.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import yaml

from infra.simulator.errors import ScenarioError
from infra.simulator.scenario import (
    FEEDBACK_KINDS, FeedbackKindSpec, FeedbackModel, LatencyModel, LoadModel, RouteTruth, Scenario,
    Spike, TaskSpec, Tenant, TimelineEvent, VariantTruth, WorkflowTruth, parse_duration_s,
)
from schemas.records import Objective, PrivacyLevel

BUILTIN_DIR = Path(__file__).resolve().parents[2] / "scenarios"
_EVENT_KINDS = ("degradation", "outage", "price_change", "capacity_squeeze", "canary", "unavailable", "tenant_mix")


class _Node:
    """A mapping being read at a key path; records which keys were used."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, Mapping):
            raise ScenarioError(f"{path or 'scenario'}: expected a mapping, got {type(data).__name__}")
        self.data, self.path, self.used = data, path, set()

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str, default: Any = ..., required: bool = False) -> Any:
        self.used.add(key)
        if key not in self.data:
            if required or default is ...:
                raise ScenarioError(f"{self._key(key)}: missing")
            return default
        return self.data[key]

    def num(self, key: str, default: Any = ..., low: float | None = None, high: float | None = None) -> float:
        value = self.raw(key, default)
        if value is None:
            return value  # type: ignore[no-any-return]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ScenarioError(f"{self._key(key)}: expected a number, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ScenarioError(f"{self._key(key)}: {value!r} is outside [{low}, {high}]")
        return float(value)

    def text(self, key: str, default: Any = ...) -> str:
        value = self.raw(key, default)
        if value is not None and not isinstance(value, str):
            raise ScenarioError(f"{self._key(key)}: expected text, got {value!r}")
        return value  # type: ignore[no-any-return]

    def dur(self, key: str, default: Any = ...) -> float:
        value = self.raw(key, default)
        return value if value is None else parse_duration_s(value, self._key(key))  # type: ignore[no-any-return]

    def child(self, key: str, default: Any = ...) -> "_Node":
        return _Node(self.raw(key, default), self._key(key))

    def items(self, key: str, default: Any = ...) -> list["_Node"]:
        value = self.raw(key, default)
        if not isinstance(value, list):
            raise ScenarioError(f"{self._key(key)}: expected a list, got {value!r}")
        return [_Node(item, f"{self._key(key)}[{i}]") for i, item in enumerate(value)]

    def done(self) -> None:
        unknown = sorted(set(map(str, self.data)) - self.used)
        if unknown:
            raise ScenarioError(f"{self._key(unknown[0])}: unknown key")


def builtin_names() -> list[str]:
    """Names of the built-in scenarios (files under ``scenarios/``)."""
    return sorted(path.stem for path in BUILTIN_DIR.glob("*.yaml"))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: expected a mapping at top level")
    return data


def _is_named_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, Mapping) and "name" in item for item in value)


def _merge_named(base: list[Any], over: list[Any]) -> list[Any]:
    merged = {item["name"]: item for item in base}
    for item in over:
        merged[item["name"]] = _merge(merged[item["name"]], item) if item["name"] in merged else item
    return list(merged.values())


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``over`` into ``base``: mappings by key, lists of named mappings by name, else replace."""
    merged = dict(base)
    for key, value in over.items():
        old = merged.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            merged[key] = _merge(old, value)
        elif _is_named_list(value) and _is_named_list(old) and value:
            merged[key] = _merge_named(old, value)
        else:
            merged[key] = value
    return merged


def _resolve(data: dict[str, Any], seen: tuple[str, ...] = ()) -> dict[str, Any]:
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if parent in seen or not (BUILTIN_DIR / f"{parent}.yaml").exists():
        raise ScenarioError(f"extends: unknown or circular built-in scenario {parent!r}")
    return _merge(_resolve(_read_yaml(BUILTIN_DIR / f"{parent}.yaml"), seen + (parent,)), data)


def load_scenario(name: str | None = None, path: str | Path | None = None) -> Scenario:
    """Load a built-in scenario by ``name`` or a user's file by ``path``; raise ``ScenarioError``."""
    if (name is None) == (path is None):
        raise ScenarioError("give exactly one of a scenario name or a scenario file")
    if name is not None:
        file = BUILTIN_DIR / f"{name}.yaml"
        if not file.exists():
            raise ScenarioError(f"unknown scenario {name!r}; built-ins: {', '.join(builtin_names())}")
    else:
        file = Path(str(path))
    return parse_scenario(_resolve(_read_yaml(file)))


def _privacy(value: str, key: str) -> PrivacyLevel:
    try:
        return PrivacyLevel(value)
    except ValueError as exc:
        raise ScenarioError(f"{key}: unknown privacy level {value!r}") from exc


def _shares(node: _Node, key: str, cast: Any = str) -> dict[Any, float]:
    mix = node.child(key)
    out: dict[Any, float] = {}
    for raw_key, value in mix.data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ScenarioError(f"{mix.path}.{raw_key}: expected a number >= 0, got {value!r}")
        try:
            out[cast(raw_key)] = float(value)
        except ValueError as exc:
            raise ScenarioError(f"{mix.path}.{raw_key}: bad key") from exc
    if sum(out.values()) <= 0:
        raise ScenarioError(f"{mix.path}: shares must sum to more than 0")
    return out


def _route(n: _Node, tasks: set[str]) -> RouteTruth:
    lat = n.child("latency")
    latency = LatencyModel(lat.num("median_ms", low=1.0), lat.num("sigma", 0.3, 0.0, 3.0),
                           lat.num("load_coef", 0.1, 0.0), lat.num("u_max", 0.95, 0.1, 0.99))
    lat.done()
    quality = _shares(n, "quality") if "quality" in n.data else {}
    for task, value in quality.items():
        if task not in tasks or value > 1.0:
            raise ScenarioError(f"{n.path}.quality.{task}: unknown task or quality above 1")
    route = RouteTruth(
        n.text("name"), n.text("provider", "local"), bool(n.raw("is_local", False)),
        _privacy(n.text("max_privacy", "public"), f"{n.path}.max_privacy"),
        n.num("cost_per_1k_in_usd", 0.0, 0.0), n.num("cost_per_1k_out_usd", 0.0, 0.0), latency, quality,
        n.num("error_rate", 0.0, 0.0, 1.0), n.num("timeout_rate", 0.0, 0.0, 1.0),
        n.num("timeout_ms", 30000.0, 1.0), n.num("capacity_rps", 1e9, 0.001), n.num("quality_per_doubling", 0.0, -1.0, 1.0))
    n.done()
    return route


def _tenant(n: _Node, tasks: set[str]) -> Tenant:
    mix = _shares(n, "tasks")
    if set(mix) - tasks:
        raise ScenarioError(f"{n.path}.tasks.{sorted(set(mix) - tasks)[0]}: unknown task")
    privacy = {_privacy(k, f"{n.path}.privacy"): v for k, v in _shares(n, "privacy").items()} \
        if "privacy" in n.data else {PrivacyLevel.PUBLIC: 1.0}
    priority = _shares(n, "priority", int) if "priority" in n.data else {1: 1.0}
    tenant = Tenant(n.text("name"), n.num("share", 1.0, 0.0), mix, privacy, priority)
    n.done()
    return tenant


def _workflow(n: _Node, tasks: set[str]) -> WorkflowTruth:
    routes = tuple(_route(r, tasks) for r in n.items("routes"))
    if not routes or len({r.name for r in routes}) != len(routes):
        raise ScenarioError(f"{n.path}.routes: need at least one route, with unique names")
    variants = []
    for v in n.items("variants", []):
        variants.append(VariantTruth(v.text("name"), v.num("effect", 0.0, -1.0, 1.0), bool(v.raw("is_control", False))))
        v.done()
    obj = n.child("objective", {})
    objective = Objective(**{f.name: obj.num(f.name, f.default, 0.0) for f in fields(Objective)})
    obj.done()
    wf = WorkflowTruth(n.text("name"), n.text("version", "v1"), n.num("share", 1.0, 0.0), routes,
                       tuple(_tenant(t, tasks) for t in n.items("tenants")), tuple(variants), objective,
                       n.num("budget_usd_per_hour", None, 0.0), n.text("fallback_route", None), n.text("experiment", None),
                       n.dur("feedback_window", 3600.0), n.text("budget_mode", "soft"))
    n.done()
    return wf


def _event(n: _Node) -> TimelineEvent:
    kind = n.text("kind")
    if kind not in _EVENT_KINDS:
        raise ScenarioError(f"{n.path}.kind: unknown event kind {kind!r}; one of {', '.join(_EVENT_KINDS)}")
    target, start = n.text("target"), n.dur("start")
    duration = n.dur("duration", None)
    params: dict[str, Any] = {}
    for key in list(n.data):
        if key in ("kind", "target", "start", "duration"):
            continue
        params[key] = tuple(n.raw(key)) if key == "steps" else (n.text(key) if key == "version" else
                                                                   (n.dur(key) if key in ("ramp", "step_duration", "delay") else n.num(key)))
    n.done()
    return TimelineEvent(kind, target, start, None if duration is None else start + duration, params)  # type: ignore[arg-type]


def _feedback(n: _Node) -> FeedbackModel:
    kinds = {}
    kinds_node = n.child("kinds", {})
    for kind in list(kinds_node.data):
        if kind not in FEEDBACK_KINDS:
            raise ScenarioError(f"{kinds_node.path}.{kind}: unknown feedback kind; one of {', '.join(FEEDBACK_KINDS)}")
        k = kinds_node.child(kind)
        delay = k.child("delay", {})
        kinds[kind] = FeedbackKindSpec(k.num("rate", low=0.0, high=1.0), delay.dur("median", 60.0), delay.num("sigma", 1.0, 0.0))
        delay.done()
        k.done()
    kinds_node.done()
    model = FeedbackModel(kinds, n.num("quality_noise", 0.05, 0.0, 1.0))
    n.done()
    return model


def parse_scenario(data: Mapping[str, Any]) -> Scenario:
    """Validate a scenario mapping (already merged with its parent) into a ``Scenario``."""
    root = _Node(data, "")
    tasks = []
    for name, spec in (root.raw("tasks") or {}).items():
        t = _Node(spec, f"tasks.{name}")
        tasks.append(TaskSpec(str(name), t.num("tokens_in", low=1.0), t.num("tokens_out", low=1.0), t.num("tokens_sigma", 0.4, 0.0)))
        t.done()
    names = {t.name for t in tasks}
    load = root.child("load", {})
    spikes = []
    for s in load.items("spikes", []):
        spikes.append(Spike(s.dur("start"), s.dur("duration"), s.num("multiplier", low=0.0)))
        s.done()
    arrival = load.text("arrival", "poisson")
    if arrival not in ("poisson", "even"):
        raise ScenarioError(f"load.arrival: expected poisson or even, got {arrival!r}")
    load_model = LoadModel(arrival, load.num("daily_amplitude", 0.0, 0.0, 1.0), load.num("peak_hour", 14.0, 0.0, 24.0), tuple(spikes))  # type: ignore[arg-type]
    load.done()
    start = root.text("start", "2026-01-05T00:00:00Z")
    try:
        start_ms = int(datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError as exc:
        raise ScenarioError(f"start: expected an ISO-8601 time, got {start!r}") from exc
    scenario = Scenario(
        root.text("name"), root.text("description", ""), start_ms, root.dur("duration", 3600.0),
        root.num("rate", 100.0, 0.001), tuple(tasks), tuple(_workflow(w, names) for w in root.items("workflows")),
        load_model, _feedback(root.child("feedback", {})), tuple(_event(e) for e in root.items("timeline", [])),
        int(root.num("slice_ms", 1000, 10, 60000)), root.dur("load_window", 5.0), root.dur("metrics_interval", 10.0),
        root.num("jobs_per_hour", 6.0, 0.0))
    root.done()
    if not scenario.workflows:
        raise ScenarioError("workflows: need at least one workflow")
    return scenario
