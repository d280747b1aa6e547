"""Canary rollouts: outcomes repartitioned by workflow, and the stage that owns every workflow's split.

``RolloutFeedStage`` forwards the outcomes of workflows that have a rollout plan
to ``repartition.rollout``, keyed by workflow. That topic has ONE partition
(as has ``rollouts.control``), so the ``RolloutStage`` of one worker sees every
request of a workflow, both versions in the same window, and its operators'
commands (the range assignor gives partition 0 of both topics to the same
member). Rollout traffic is a small share of outcomes (only workflows in a
rollout), which is what makes one partition enough.

``RolloutStage`` calls ``processors.rollout.RolloutController``: a new version
with a plan (seen in the shared workflow registry) starts a canary; every step
and verdict goes to ``lw.rollouts`` and, being the workflow's new split, to the
compacted ``lw.rollouts.splits`` that route answers and ``RoutingClient`` follow;
a rollback also sends a signed ``rollback`` command on
``lw.commands.remediation``. Its state, per workflow, goes to its changelog.
"""

from __future__ import annotations

from typing import Any, Iterable

import orjson

from processors.rollout import RolloutController, RolloutOutput
from schemas.records import Command, Outcome
from schemas.signing import SignatureError, verify
from streams.edge import RawMessage
from streams.stages.base import Outgoing, Stage, StageEnv

_PREFIX = b"wf:"


class RolloutFeedStage(Stage):
    """outcomes of workflows with a rollout plan → repartition.rollout, keyed by workflow (bytes unchanged)."""

    name = "rollout-feed"
    inputs = ("outcomes",)
    is_gate_deduplicating = False  # provisional and final outcomes share a request id; both are needed

    def on_record(self, logical: str, message: RawMessage, record: Any, out: list[Outgoing]) -> None:
        assert isinstance(record, Outcome)
        registry = self.env.registry
        latest, own = registry.get(record.workflow), registry.get(record.workflow, record.workflow_version)
        if (latest is not None and latest.rollout is not None) or (own is not None and own.rollout is not None):
            assert message.value is not None
            out.append(Outgoing(self.env.topic("repartition.rollout"), record.workflow.encode(), message.value))


class RolloutStage(Stage):
    """repartitioned outcomes + signed control commands → rollout steps, splits and rollback commands."""

    name = "rollout"
    inputs = ("repartition.rollout", "rollouts.control")
    has_state = True
    companions = ("rollout-feed",)  # its feed runs wherever it runs
    is_gate_deduplicating = False

    def __init__(self, env: StageEnv) -> None:
        super().__init__(env)
        self.controller = RolloutController(env.settings.signing_key_bytes, f"{env.settings.app_id}.rollout")
        self._watermark_ms = 0
        self._pending: list[RolloutOutput] = []

    def on_record(self, logical: str, message: RawMessage, record: Any, out: list[Outgoing]) -> bool | None:
        if isinstance(record, Outcome):
            self._watermark_ms = max(self._watermark_ms, record.ts_ms)
            self.controller.observe(record)
            return True
        assert isinstance(record, Command)
        try:
            verify(record, self.env.settings.signing_key_bytes)
        except SignatureError as exc:
            return self.reject(message, f"signature_{exc.reason}", str(exc), out)
        now_ms = self._watermark_ms or record.ts_ms
        if record.is_dry_run or record.expires_ts_ms < record.ts_ms:
            return True
        self._start_new_versions()
        self._pending.append(self.controller.control(record, now_ms))
        return True

    def _start_new_versions(self) -> None:
        if not self._watermark_ms:
            return
        for definition in self.env.registry:
            self._pending.append(self.controller.on_definition(definition, self._watermark_ms))

    def after_batch(self) -> list[Outgoing]:
        if self._watermark_ms:
            self._start_new_versions()
            self._pending.append(self.controller.advance(self._watermark_ms))
        out: list[Outgoing] = []
        for result in self._pending:
            for step in result.steps:
                out.append(self.env.encode("rollouts", step.workflow, step))
                out.append(self.env.encode("rollouts.splits", step.workflow, step))
            for command in result.commands:
                out.append(self.env.encode("commands.remediation", command.target, command))
        self._pending.clear()
        return out

    def state_changes(self) -> list[tuple[int, bytes, bytes | None]]:
        changes: list[tuple[int, bytes, bytes | None]] = []
        for workflow in self.controller.drain_changed():
            snapshot = self.controller.snapshot(workflow)
            changes.append((0, _PREFIX + workflow.encode(), None if snapshot is None else orjson.dumps(snapshot)))
        if self._watermark_ms:
            changes.append((0, b"~watermark", orjson.dumps(self._watermark_ms)))
        return changes

    def restore(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        for key, value in records:
            if value is None:
                continue
            if key.startswith(_PREFIX):
                self.controller.restore(key[len(_PREFIX):].decode(), orjson.loads(value))
            elif key == b"~watermark":
                self._watermark_ms = max(self._watermark_ms, int(orjson.loads(value)))
        self.controller.drain_changed()

    def forget(self, partition: int) -> None:
        self.controller = RolloutController(self.env.settings.signing_key_bytes, f"{self.env.settings.app_id}.rollout")
        self._watermark_ms = 0
