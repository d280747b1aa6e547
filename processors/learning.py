"""``LearningCore``: the deciding loop of one share of the workflows, as one object with one snapshot.

Outcomes, anomalies and circuit commands go in; routing policies and experiment
decisions come out. The ``learn`` stage keeps one core per partition of its
repartition topic (each partition holds a share of the workflows) and writes
the core's snapshot to its changelog; the simulator drives the same class in
memory. Everything it learned is in ``snapshot()``, plain JSON-able data, so a
restored core decides exactly as the one that stopped: it never publishes
prior-based decisions over learned ones.

>>> from processors.workflows import WorkflowRegistry
>>> core = LearningCore(WorkflowRegistry())
>>> core.decisions()
([], [])
>>> LearningCore.restore(WorkflowRegistry(), core.snapshot()).snapshot() == core.snapshot()
True
"""

from __future__ import annotations

from typing import Any

from processors.experiments import ExperimentEngine
from processors.lifecycle import AccuracyMeter
from processors.routing import Router
from processors.routing.policy import RouterConfig
from processors.routing.segments import SegmentState, WorkflowState
from processors.workflows import WorkflowRegistry
from schemas.records import Anomaly, Command, ExperimentDecision, Outcome, RoutingPolicy, WorkflowDefinition

#: Event time between two recorded versions of one workflow's model (each published change is not one).
MODEL_EVERY_MS = 300_000

#: Bumped when the snapshot's layout changes.
SNAPSHOT_FORMAT = 1


class LearningCore:
    """Router and experiment engines of the workflows one partition holds, and its event-time clock.

    Args:
        registry: Workflow definitions (read only); a workflow is taken on at its first record.
        seed: Seeds the router (decisions are a function of the seed and the input).
        config: Router settings (defaults when None).
    """

    def __init__(self, registry: WorkflowRegistry, seed: int = 1, config: RouterConfig | None = None) -> None:
        self.registry = registry
        self.router = Router(config, seed)
        self.experiments: dict[str, ExperimentEngine] = {}
        self.watermark_ms = 0
        #: Records taken since the last ``decisions()`` (whether anything could have changed).
        self.fresh = 0
        self.accuracy = AccuracyMeter()
        #: Anomalies found while learning (a drift of the model's error), to publish.
        self.found: list[Anomaly] = []
        #: Per workflow: [version of its model, event time it was recorded].
        self.model_versions: dict[str, list[int]] = {}

    @property
    def workflows(self) -> list[str]:
        """The workflows this core has taken on."""
        return sorted(self.router.workflows)

    def take_workflow(self, definition: WorkflowDefinition) -> None:
        """A new or changed definition: the router follows it; a new experiment starts (a running one goes on)."""
        self.router.update_workflow(definition)
        engine = ExperimentEngine.for_workflow(definition)
        if engine is not None and engine.spec.name not in self.experiments:
            self.experiments[engine.spec.name] = engine
        self.fresh += 1

    def knows(self, workflow: str) -> bool:
        return workflow in self.router.workflows

    def observe_outcome(self, outcome: Outcome) -> None:
        """Learn from one outcome (provisional: latency, cost, errors; final: quality and experiments)."""
        if not self.knows(outcome.workflow):
            definition = self.registry.get(outcome.workflow)
            if definition is None:
                return
            self.take_workflow(definition)
        self.watermark_ms = max(self.watermark_ms, outcome.ts_ms)
        if outcome.is_final and outcome.quality is not None:
            self._score(outcome)
        self.router.learn(outcome)
        for engine in self.experiments.values():
            if engine.workflow == outcome.workflow:
                engine.observe(outcome)
        self.fresh += 1

    def _score(self, outcome: Outcome) -> None:
        """Before learning from it: how far the reward expected of the route was from the one observed."""
        seg = self.router.segments.get((outcome.workflow, outcome.segment))
        estimate = None if seg is None else seg.estimates.get(outcome.route)
        if estimate is None or estimate.n_eff <= 0:
            return
        found = self.accuracy.observe(outcome.workflow, estimate.mean, outcome.reward, outcome.ts_ms)
        if found is not None:
            self.found.append(found)

    def models_due(self, workflows: set[str]) -> list[tuple[str, int]]:
        """Workflows among ``workflows`` whose model is due a recorded version, with that version."""
        due = []
        for workflow in sorted(workflows):
            version, at_ms = self.model_versions.get(workflow, [0, -MODEL_EVERY_MS])
            if self.watermark_ms - at_ms >= MODEL_EVERY_MS:
                self.model_versions[workflow] = [version + 1, self.watermark_ms]
                due.append((workflow, version + 1))
        return due

    def export_workflow(self, workflow: str) -> dict[str, Any]:
        """One workflow's learned state (its estimates and every segment), plain data."""
        wf = self.router.workflows[workflow]
        return {"workflow": wf.to_dict(),
                "segments": [seg.to_dict() for (w, _), seg in sorted(self.router.segments.items()) if w == workflow]}

    def import_workflow(self, workflow: str, state: dict[str, Any]) -> int:
        """Replace one workflow's learned state by an exported one (a rollback); its policies republish.

        Returns the workflow's new model version (a rollback is a new version, not a rewrite of history).
        """
        router = self.router
        router.workflows[workflow] = WorkflowState.from_dict(state["workflow"])
        definition = self.registry.get(workflow)
        if definition is not None:
            router.update_workflow(definition)  # routes declared since stay known
        router.segments = {k: v for k, v in router.segments.items() if k[0] != workflow}
        for item in state["segments"]:
            seg = SegmentState.from_dict(item)
            seg.is_dirty, seg.published_shares = True, None  # republished at the next decisions()
            router.segments[(seg.workflow, seg.segment)] = seg
        version = self.model_versions.get(workflow, [0, 0])[0] + 1
        self.model_versions[workflow] = [version, self.watermark_ms]
        self.fresh += 1
        return version

    def observe_anomaly(self, anomaly: Anomaly) -> None:
        """A drift or critical anomaly of a route resets what the router knows of it."""
        if self.router.on_anomaly(anomaly):
            self.fresh += 1

    def observe_command(self, command: Command) -> None:
        """Obey a verified circuit command (the caller checks signature, expiry and replay)."""
        if self.router.on_command(command):
            self.fresh += 1

    def decisions(self, now_ms: int | None = None) -> tuple[list[RoutingPolicy], list[ExperimentDecision]]:
        """Policies that changed materially and experiment decisions due, at the core's event time
        (or at ``now_ms``, a caller's own clock, e.g. the simulator's request time)."""
        self.fresh = 0
        at_ms = self.watermark_ms if now_ms is None else now_ms
        if not at_ms:
            return [], []
        policies = self.router.changed_policies(at_ms)
        decided = [d for d in (e.decide(at_ms) for e in self.experiments.values()) if d is not None]
        return policies, decided

    def snapshot(self) -> dict[str, Any]:
        """Everything learned, as plain JSON-able data (never pickle)."""
        return {"format": SNAPSHOT_FORMAT, "watermark_ms": self.watermark_ms, "router": self.router.snapshot(),
                "experiments": {name: e.snapshot() for name, e in sorted(self.experiments.items())},
                "accuracy": self.accuracy.snapshot(), "models": dict(sorted(self.model_versions.items()))}

    @classmethod
    def restore(cls, registry: WorkflowRegistry, state: dict[str, Any]) -> "LearningCore":
        """A core that continues exactly where ``snapshot`` left off."""
        if state.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"unknown learning snapshot format {state.get('format')!r}")
        core = cls(registry)
        core.router = Router.restore(state["router"])
        core.experiments = {name: ExperimentEngine.restore(s) for name, s in state["experiments"].items()}
        core.watermark_ms = int(state["watermark_ms"])
        core.accuracy.restore(state["accuracy"])
        core.model_versions = {w: [int(v), int(t)] for w, (v, t) in state["models"].items()}
        return core
