"""True incidents of a run and how fast a policy detected and mitigated them.

Incidents come from the scenario's timeline (degradation, outage, capacity
squeeze, a worse canary) and its traffic spikes. Detection is the first
``Detection`` on one of the incident's entities inside its window; mitigation
is the first command that targets one of them. A command whose target is in no
active incident is a false action.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from infra.simulator.scenario import Scenario

_KIND_OF_EVENT = {"degradation": "degradation", "outage": "outage", "capacity_squeeze": "capacity"}


@dataclass
class TrueIncident:
    """One incident the scenario causes, with the policy's reaction filled in as it happens."""

    kind: str
    entity: str
    targets: frozenset[str]
    start_ms: int
    end_ms: int | None
    detected_ms: int | None = None
    mitigated_ms: int | None = None
    resolved_ms: int | None = None

    def is_active(self, ts_ms: int) -> bool:
        """Whether the incident is under way at ``ts_ms``."""
        end = self.resolved_ms if self.resolved_ms is not None else self.end_ms
        return self.start_ms <= ts_ms and (end is None or ts_ms < end)


@dataclass
class IncidentBook:
    """The run's incidents, detections, mitigations and false actions."""

    incidents: list[TrueIncident]
    false_actions: int = 0
    commands: list[tuple[int, str, str]] = field(default_factory=list)

    @classmethod
    def from_scenario(cls, scenario: Scenario, duration_s: float) -> "IncidentBook":
        """List the incidents ``scenario`` will cause within ``duration_s``."""
        start, out = scenario.start_ms, []
        for event in scenario.timeline:
            if event.start_s >= duration_s:
                continue
            end = None if event.end_s is None else start + int(event.end_s * 1000)
            if event.kind in _KIND_OF_EVENT:
                workflows = {wf.name for wf in scenario.workflows if any(r.name == event.target for r in wf.routes)}
                out.append(TrueIncident(_KIND_OF_EVENT[event.kind], event.target, frozenset({event.target} | workflows),
                                        start + int(event.start_s * 1000), end))
            elif event.kind == "canary" and (float(event.params.get("quality_delta", 0.0)) < 0  # type: ignore[arg-type]
                                             or float(event.params.get("error_rate_add", 0.0)) > 0):  # type: ignore[arg-type]
                out.append(TrueIncident("bad_version", event.target, frozenset({event.target}),
                                        start + int(event.start_s * 1000), end))
        for spike in scenario.load.spikes:
            if spike.start_s < duration_s and spike.multiplier > 1.0:
                names = {wf.name for wf in scenario.workflows} | {r.name for wf in scenario.workflows for r in wf.routes}
                out.append(TrueIncident("traffic_spike", "gateway", frozenset(names | {"gateway"}),
                                        start + int(spike.start_s * 1000),
                                        start + int((spike.start_s + spike.duration_s) * 1000)))
        return cls(sorted(out, key=lambda i: i.start_ms))

    def notify_detected(self, entity: str, ts_ms: int) -> None:
        """Record that the policy flagged ``entity`` at ``ts_ms``."""
        for incident in self.incidents:
            if incident.detected_ms is None and entity in incident.targets and incident.is_active(ts_ms):
                incident.detected_ms = ts_ms

    def record_command(self, target: str, action: str, ts_ms: int) -> None:
        """Count a command: it mitigates the active incidents on its target, or is a false action."""
        self.commands.append((ts_ms, target, action))
        hit = False
        for incident in self.incidents:
            if target in incident.targets and incident.is_active(ts_ms):
                hit = True
                if incident.mitigated_ms is None:
                    incident.mitigated_ms = ts_ms
                if incident.kind == "bad_version" and action == "rollback":
                    incident.resolved_ms = ts_ms
        self.false_actions += 0 if hit else 1

    def close(self, end_ms: int) -> None:
        """Fill in resolution times at the end of a run (``None`` when still going)."""
        for incident in self.incidents:
            if incident.resolved_ms is None and incident.end_ms is not None and incident.end_ms <= end_ms:
                incident.resolved_ms = incident.end_ms

    def summary(self) -> tuple[list[dict[str, Any]], float | None, float | None]:
        """The scorecard's incident list, mean time to detect and to mitigate (seconds)."""
        rows = [{"kind": i.kind, "entity": i.entity, "start": i.start_ms, "detected_at": i.detected_ms,
                 "mitigated_at": i.mitigated_ms, "resolved_at": i.resolved_ms} for i in self.incidents]
        ttd = [(i.detected_ms - i.start_ms) / 1000.0 for i in self.incidents if i.detected_ms is not None]
        ttm = [(i.mitigated_ms - i.start_ms) / 1000.0 for i in self.incidents if i.mitigated_ms is not None]
        return rows, (sum(ttd) / len(ttd) if ttd else None), (sum(ttm) / len(ttm) if ttm else None)
