"""Canary rollouts of workflow versions: the split each workflow runs, its steps and its verdicts.

``RolloutController`` owns, per workflow, the rollout in progress: which
version is the baseline and which the canary, the canary's share (the split),
the step of the plan, and what each version's requests did *since the canary
started* (``VersionSample``: both versions over the same window, so a change of
the platform around them moves both). In event time, every ``eval_every_ms``:

* a failure on any metric rolls back: the share drops to 0 and a signed
  ``rollback`` command says so (the platform's own remediation consumers obey it);
* a pass held for the step's duration moves to the next step; a pass at the
  last step below 100 % promotes (share 1.0, the canary becomes the baseline);
* marginal holds the step (said once per change); pending waits for samples.

Operators steer it with signed control commands (``pause``, ``resume``,
``promote``, ``abort``). Every step and verdict is a ``RolloutStep`` with the
per-metric evidence as JSON; the newest one of a workflow is its split.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Mapping

import orjson

from processors.rollout.verdict import Judgement, MetricVerdict, VerdictConfig, VersionSample, judge, overall
from schemas.records import Command, Outcome, RolloutStep, RolloutVerdict, WorkflowDefinition
from schemas.signing import sign

CONTROL_ACTIONS = ("pause", "resume", "promote", "abort")
_COMMAND_TTL_MS = 3_600_000


class RolloutStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"


@dataclass
class Rollout:
    """One workflow's rollout: versions, plan, where it stands, and the evidence gathered."""

    workflow: str
    baseline_version: str
    canary_version: str
    steps: tuple[float, ...]
    step_duration_ms: int
    max_regression: float
    started_ms: int
    step: int = 0
    status: RolloutStatus = RolloutStatus.RUNNING
    step_started_ms: int = 0
    passing_since_ms: int | None = None
    last_judgement: str = ""
    baseline: VersionSample = field(default_factory=VersionSample)
    canary: VersionSample = field(default_factory=VersionSample)

    @property
    def share(self) -> float:
        if self.status is RolloutStatus.ROLLED_BACK:
            return 0.0
        if self.status is RolloutStatus.PROMOTED:
            return 1.0
        return self.steps[min(self.step, len(self.steps) - 1)]

    @property
    def is_active(self) -> bool:
        return self.status in (RolloutStatus.RUNNING, RolloutStatus.PAUSED)

    def to_dict(self) -> dict[str, Any]:
        return {"workflow": self.workflow, "baseline_version": self.baseline_version,
                "canary_version": self.canary_version, "steps": list(self.steps),
                "step_duration_ms": self.step_duration_ms, "max_regression": self.max_regression,
                "started_ms": self.started_ms, "step": self.step, "status": str(self.status),
                "step_started_ms": self.step_started_ms, "passing_since_ms": self.passing_since_ms,
                "last_judgement": self.last_judgement, "baseline": self.baseline.to_dict(),
                "canary": self.canary.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rollout:
        return cls(str(data["workflow"]), str(data["baseline_version"]), str(data["canary_version"]),
                   tuple(float(s) for s in data["steps"]), int(data["step_duration_ms"]),
                   float(data["max_regression"]), int(data["started_ms"]), int(data["step"]),
                   RolloutStatus(data["status"]), int(data["step_started_ms"]),
                   None if data.get("passing_since_ms") is None else int(data["passing_since_ms"]),
                   str(data.get("last_judgement", "")), VersionSample.from_dict(data["baseline"]),
                   VersionSample.from_dict(data["canary"]))


@dataclass(frozen=True, slots=True)
class RolloutOutput:
    """What one call decided: steps to publish (each also the workflow's new split) and commands to send."""

    steps: tuple[RolloutStep, ...] = ()
    commands: tuple[Command, ...] = ()


class RolloutController:
    """Every workflow's rollout, advanced in event time.

    >>> from schemas.records import RolloutPlan, RouteSpec, PrivacyLevel
    >>> route = RouteSpec("a", "p", False, PrivacyLevel.PUBLIC, 0.001, 0.001)
    >>> c = RolloutController(b"k" * 32, "test")
    >>> v1 = WorkflowDefinition("wf", "v1", 0, (route,))
    >>> c.on_definition(v1, 0).steps                      # no plan: nothing to roll out
    ()
    >>> v2 = WorkflowDefinition("wf", "v2", 1, (route,), previous_version="v1", rollout=RolloutPlan())
    >>> [(s.version, s.baseline_version, s.traffic_share, str(s.verdict)) for s in c.on_definition(v2, 1_000).steps]
    [('v2', 'v1', 0.05, 'continue')]
    """

    def __init__(self, signing_key: bytes, issuer: str, config: VerdictConfig = VerdictConfig(),
                 eval_every_ms: int = 5_000) -> None:
        self._key, self._issuer, self.config, self._eval_every_ms = signing_key, issuer, config, eval_every_ms
        self.rollouts: dict[str, Rollout] = {}
        self._live: dict[str, str] = {}  # workflow -> version serving 100 % outside a rollout
        self._last_eval_ms: dict[str, int] = {}
        self.changed: set[str] = set()

    # ------------------------------------------------------------------ inputs

    def on_definition(self, definition: WorkflowDefinition, now_ms: int) -> RolloutOutput:
        """A new version: a canary when it has a plan, else it is live at once."""
        wf, version = definition.workflow, definition.version
        current = self.rollouts.get(wf)
        if current is not None and version in (current.canary_version, current.baseline_version):
            return RolloutOutput()
        if self._live.get(wf) == version:
            return RolloutOutput()
        baseline = self._baseline_of(wf, definition)
        if definition.rollout is None or baseline is None or baseline == version:
            self._live[wf] = version
            self.changed.add(wf)
            if current is None:
                return RolloutOutput()
            # A split was published before: replace it, or clients would keep serving its versions.
            self.rollouts.pop(wf)
            return RolloutOutput((RolloutStep(wf, version, now_ms, 0, 1.0, RolloutVerdict.PROMOTE,
                                              f"{version} has no rollout plan: live at once", "{}",
                                              baseline_version=version),))
        plan = definition.rollout
        steps = tuple(s for s in plan.steps if 0.0 < s) or (1.0,)
        rollout = Rollout(wf, baseline, version, steps, int(plan.step_duration_s * 1000), plan.max_regression,
                          now_ms, step_started_ms=now_ms)
        self.rollouts[wf] = rollout
        self.changed.add(wf)
        return RolloutOutput((self._step(rollout, now_ms, RolloutVerdict.CONTINUE,
                                         f"canary of {version} against {baseline} started", []),))

    def _baseline_of(self, workflow: str, definition: WorkflowDefinition) -> str | None:
        current = self.rollouts.get(workflow)
        if current is not None:
            # The version serving most traffic now is the one a newer canary is compared with.
            return current.canary_version if current.status is RolloutStatus.PROMOTED else current.baseline_version
        return self._live.get(workflow) or definition.previous_version

    def observe(self, outcome: Outcome) -> None:
        """Fold in an outcome of a workflow in rollout (other workflows and versions are ignored)."""
        rollout = self.rollouts.get(outcome.workflow)
        if rollout is None or not rollout.is_active or outcome.request_ts_ms < rollout.started_ms:
            return
        if outcome.workflow_version == rollout.canary_version:
            rollout.canary.observe(outcome)
        elif outcome.workflow_version == rollout.baseline_version:
            rollout.baseline.observe(outcome)
        else:
            return
        self.changed.add(outcome.workflow)

    def control(self, command: Command, now_ms: int) -> RolloutOutput:
        """Obey an operator's (already verified) control command for ``command.target``."""
        rollout = self.rollouts.get(command.target)
        if rollout is None or not rollout.is_active or command.action not in CONTROL_ACTIONS:
            return RolloutOutput()
        self.changed.add(rollout.workflow)
        who = f"operator {command.issuer}: {command.reason}".rstrip(": ")
        if command.action == "pause":
            rollout.status = RolloutStatus.PAUSED
            return RolloutOutput((self._step(rollout, now_ms, RolloutVerdict.HOLD, f"paused by {who}", []),))
        if command.action == "resume":
            if rollout.status is not RolloutStatus.PAUSED:
                return RolloutOutput()
            rollout.status, rollout.step_started_ms, rollout.passing_since_ms = RolloutStatus.RUNNING, now_ms, None
            return RolloutOutput((self._step(rollout, now_ms, RolloutVerdict.CONTINUE, f"resumed by {who}", []),))
        if command.action == "promote":
            return self._promote(rollout, now_ms, f"promoted by {who}", [])
        return self._rollback(rollout, now_ms, f"aborted by {who}", [])

    # ------------------------------------------------------------------ decisions

    def advance(self, now_ms: int) -> RolloutOutput:
        """Judge every active rollout due for it; step, hold, promote or roll back."""
        steps: list[RolloutStep] = []
        commands: list[Command] = []
        for wf, rollout in sorted(self.rollouts.items()):
            if not rollout.is_active or now_ms - self._last_eval_ms.get(wf, -(1 << 62)) < self._eval_every_ms:
                continue
            self._last_eval_ms[wf] = now_ms
            out = self._judge(rollout, now_ms)
            steps.extend(out.steps)
            commands.extend(out.commands)
        return RolloutOutput(tuple(steps), tuple(commands))

    def _judge(self, rollout: Rollout, now_ms: int) -> RolloutOutput:
        verdicts = judge(rollout.baseline, rollout.canary, rollout.max_regression, self.config)
        result = overall(verdicts)
        if result is Judgement.FAIL:
            failed = ", ".join(v.metric for v in verdicts if v.judgement is Judgement.FAIL)
            return self._rollback(rollout, now_ms, f"canary {rollout.canary_version} worse than "
                                  f"{rollout.baseline_version} on {failed}", verdicts)
        previous, rollout.last_judgement = rollout.last_judgement, str(result)
        if result is not Judgement.PASS:
            rollout.passing_since_ms = None
            if result is Judgement.MARGINAL and previous != str(result):
                self.changed.add(rollout.workflow)
                marginal = ", ".join(v.metric for v in verdicts if v.judgement is Judgement.MARGINAL)
                return RolloutOutput((self._step(rollout, now_ms, RolloutVerdict.HOLD,
                                                 f"holding at {rollout.share:.0%}: marginal on {marginal}", verdicts),))
            return RolloutOutput()
        if rollout.passing_since_ms is None:
            rollout.passing_since_ms = now_ms
        self.changed.add(rollout.workflow)
        if rollout.status is RolloutStatus.PAUSED or now_ms - rollout.step_started_ms < rollout.step_duration_ms:
            return RolloutOutput()
        nxt = rollout.step + 1
        if nxt >= len(rollout.steps) or rollout.steps[nxt] >= 1.0:
            return self._promote(rollout, now_ms, f"passed every step; {rollout.canary_version} promoted", verdicts)
        rollout.step, rollout.step_started_ms = nxt, now_ms
        return RolloutOutput((self._step(rollout, now_ms, RolloutVerdict.CONTINUE,
                                         f"passed step {nxt - 1}; canary now at {rollout.share:.0%}", verdicts),))

    def _promote(self, rollout: Rollout, now_ms: int, reason: str, verdicts: list[MetricVerdict]) -> RolloutOutput:
        rollout.status = RolloutStatus.PROMOTED
        self._live[rollout.workflow] = rollout.canary_version
        self.changed.add(rollout.workflow)
        return RolloutOutput((self._step(rollout, now_ms, RolloutVerdict.PROMOTE, reason, verdicts),))

    def _rollback(self, rollout: Rollout, now_ms: int, reason: str, verdicts: list[MetricVerdict]) -> RolloutOutput:
        share_before = rollout.share
        rollout.status = RolloutStatus.ROLLED_BACK
        self._live[rollout.workflow] = rollout.baseline_version
        self.changed.add(rollout.workflow)
        step = self._step(rollout, now_ms, RolloutVerdict.ROLLBACK, reason, verdicts)
        command_id = hashlib.blake2b(f"rollback|{rollout.workflow}|{rollout.canary_version}|{rollout.started_ms}"
                                     .encode(), digest_size=12).hexdigest()
        command = sign(Command(command_id, now_ms, rollout.workflow, "rollback", reason, step.evidence,
                               now_ms + _COMMAND_TTL_MS, self._issuer, "",
                               {"version": rollout.canary_version, "to_version": rollout.baseline_version,
                                "canary_share_before": f"{share_before:.4f}"}), self._key)
        return RolloutOutput((step,), (command,))

    def _step(self, rollout: Rollout, now_ms: int, verdict: RolloutVerdict, reason: str,
              verdicts: list[MetricVerdict]) -> RolloutStep:
        evidence = {"status": str(rollout.status), "since_ms": rollout.started_ms,
                    "metrics": [v.to_dict() for v in verdicts]}
        return RolloutStep(rollout.workflow, rollout.canary_version, now_ms, rollout.step, rollout.share, verdict,
                           reason, orjson.dumps(evidence).decode(), baseline_version=rollout.baseline_version)

    # ------------------------------------------------------------------ views and state

    def split(self, workflow: str) -> RolloutStep | None:
        """The workflow's current split as a step record (``None`` when no rollout ever ran)."""
        rollout = self.rollouts.get(workflow)
        if rollout is None:
            return None
        return replace(self._step(rollout, rollout.step_started_ms, RolloutVerdict.CONTINUE, "split", []),
                       evidence="{}")

    def snapshot(self, workflow: str) -> dict[str, Any] | None:
        """Plain JSON-able state of one workflow (``None`` when it has none)."""
        rollout, live = self.rollouts.get(workflow), self._live.get(workflow)
        if rollout is None and live is None:
            return None
        return {"rollout": None if rollout is None else rollout.to_dict(), "live": live,
                "last_eval_ms": self._last_eval_ms.get(workflow)}

    def restore(self, workflow: str, data: Mapping[str, Any]) -> None:
        """Rebuild one workflow's state from ``snapshot``'s output."""
        if data.get("rollout") is not None:
            self.rollouts[workflow] = Rollout.from_dict(data["rollout"])
        if data.get("live") is not None:
            self._live[workflow] = str(data["live"])
        if data.get("last_eval_ms") is not None:
            self._last_eval_ms[workflow] = int(data["last_eval_ms"])

    def drain_changed(self) -> list[str]:
        """Workflows whose state changed since the last call (their snapshots go to the changelog)."""
        out, self.changed = sorted(self.changed), set()
        return out
