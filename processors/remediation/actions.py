"""Declared remediation actions per workflow, their parameters, and escalation of incidents through them.

A workflow lists what loopwise may do for it in ``WorkflowDefinition.remediation``
(``ActionSpec(action, params)``), in escalation order. Only declared actions are
taken; a workflow that declares none gets ``DEFAULT_REMEDIATION``. Parameters
are strings on the wire; each action reads its own (see ``DEFAULT_REMEDIATION``).

Escalation: a firing incident starts at the first escalation action of its
workflow; if it still fires after that step's ``deadline_s``, the next one is
taken, until the sequence is exhausted.

>>> plan = plan_for(None)
>>> [s.action for s in plan.escalation]
['reroute', 'scale_up', 'restart', 'shed_load']
>>> plan.deadline_ms(plan.escalation[0]), plan.allows("rollback")
(120000, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from schemas.records import ActionSpec, WorkflowDefinition

ESCALATION_ACTIONS = ("reroute", "shed_load", "scale_up", "restart")
KNOWN_ACTIONS = ESCALATION_ACTIONS + ("open_circuit", "close_circuit", "scale_down", "rollback")

DEFAULT_REMEDIATION: tuple[ActionSpec, ...] = (
    ActionSpec("open_circuit", {"error_rate": "0.5", "min_requests": "20", "cooldown_s": "30",
                                "max_cooldown_s": "45", "probe_share": "0.05", "max_flaps_per_hour": "6", "ttl_s": "3600"}),
    ActionSpec("reroute", {"weight": "0.2", "deadline_s": "120", "ttl_s": "600"}),
    ActionSpec("scale_up", {"factor": "2", "delay_s": "60", "deadline_s": "300", "ttl_s": "600"}),
    ActionSpec("restart", {"deadline_s": "600", "ttl_s": "300"}),
    ActionSpec("scale_down", {"factor": "0.5", "delay_s": "60", "ttl_s": "600"}),
    ActionSpec("shed_load", {"queue_depth": "20", "sustain_s": "30", "fraction": "0.3", "max_priority": "1",
                             "ttl_s": "300"}),
    ActionSpec("rollback", {"max_regression": "0.05", "min_error_delta": "0.005", "z": "4", "min_samples": "500",
                            "ttl_s": "600"}),
)
_DEFAULT_TTL_S = 600.0
_DEFAULT_DEADLINE_S = 300.0


@dataclass(frozen=True, slots=True)
class ActionPlan:
    """What one workflow allows, with parameters; ``escalation`` in declared order."""

    workflow: str
    specs: Mapping[str, ActionSpec]
    escalation: tuple[ActionSpec, ...]

    def allows(self, action: str) -> bool:
        """Whether ``action`` is declared (or defaulted) for this workflow."""
        return action in self.specs

    def params(self, action: str) -> Mapping[str, str]:
        """The declared parameters of ``action`` (empty when not declared)."""
        spec = self.specs.get(action)
        return spec.params if spec is not None else {}

    def number(self, action: str, name: str, default: float) -> float:
        """A numeric parameter of ``action``; ``default`` when absent or unreadable."""
        try:
            return float(self.params(action).get(name, default))
        except ValueError:
            return default

    def ttl_ms(self, action: str) -> int:
        """How long a command of ``action`` stays valid (``ttl_s``)."""
        return int(self.number(action, "ttl_s", _DEFAULT_TTL_S) * 1000)

    def deadline_ms(self, spec: ActionSpec) -> int:
        """How long an escalation step is given to help (``deadline_s``)."""
        return int(self.number(spec.action, "deadline_s", _DEFAULT_DEADLINE_S) * 1000)

    def command_params(self, action: str) -> dict[str, str]:
        """Parameters sent with the command: the declared ones minus those only loopwise reads."""
        return {k: v for k, v in self.params(action).items() if k not in _INTERNAL_PARAMS}


_INTERNAL_PARAMS = frozenset({"deadline_s", "ttl_s", "error_rate", "min_requests", "cooldown_s", "window_s", "fast_window_s",
                              "latency_anomalies", "min_probe_requests", "close_error_rate", "max_flaps_per_hour", "max_cooldown_s",
                              "queue_depth", "sustain_s", "max_regression", "min_error_delta", "z", "min_samples"})


def plan_for(definition: WorkflowDefinition | None) -> ActionPlan:
    """The action plan of ``definition`` (defaults when it is unknown or declares nothing).

    Unknown action names are ignored rather than guessed at.
    """
    specs = definition.remediation if definition is not None and definition.remediation else DEFAULT_REMEDIATION
    known = [s for s in specs if s.action in KNOWN_ACTIONS]
    by_name: dict[str, ActionSpec] = {}
    for spec in known:
        by_name.setdefault(spec.action, spec)
    escalation = tuple(s for s in known if s.action in ESCALATION_ACTIONS)
    return ActionPlan(definition.workflow if definition is not None else "*", by_name, escalation)


@dataclass
class Escalation:
    """One incident's walk through its workflow's escalation sequence."""

    incident_id: str
    workflow: str
    route: str | None
    step: int
    step_started_ms: int
    is_open: bool = True
    actions: list[str] = field(default_factory=list)

    def target(self, action: str) -> str:
        """Where ``action`` is aimed: shedding at the workflow, the rest at the route when there is one."""
        if action == "shed_load" or self.route is None:
            return self.workflow
        return self.route

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able state."""
        return {"incident_id": self.incident_id, "workflow": self.workflow, "route": self.route, "step": self.step,
                "step_started_ms": self.step_started_ms, "is_open": self.is_open, "actions": list(self.actions)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Escalation":
        """An escalation from what ``to_dict`` returned."""
        return cls(data["incident_id"], data["workflow"], data["route"], int(data["step"]),
                   int(data["step_started_ms"]), bool(data["is_open"]), list(data["actions"]))


def due_step(escalation: Escalation, plan: ActionPlan, now_ms: int) -> ActionSpec | None:
    """The next escalation action if the current one has had its deadline, else ``None``.

    Step 0 is due at once; step ``k`` once step ``k-1``'s deadline has passed.
    """
    if not escalation.is_open or escalation.step >= len(plan.escalation):
        return None
    if escalation.step == 0:
        return plan.escalation[0]
    previous = plan.escalation[escalation.step - 1]
    if now_ms - escalation.step_started_ms < plan.deadline_ms(previous):
        return None
    return plan.escalation[escalation.step]
